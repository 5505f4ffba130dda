//! Exponential backoff with full jitter, and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

/// Exponential backoff with full jitter: before retry `n` (1-based), wait a
/// uniformly random time in `[0, min(cap, base × 2ⁿ⁻¹)]`.
///
/// The defaults are Envoy's: 25 ms base, 250 ms cap.
///
/// ```
/// use tower_bad_gateway::retry::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(250));
/// for retry in 1..10 {
///     assert!(backoff.delay(retry) <= backoff.ceiling(retry));
/// }
/// assert_eq!(backoff.ceiling(3), Duration::from_millis(100));
/// assert_eq!(backoff.ceiling(30), Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            cap: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// Backoff starting at `base`, never above `cap` (a `cap` below `base` is
    /// raised to `base`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
        }
    }

    /// No waiting between attempts.
    pub fn no_backoff() -> Self {
        Self {
            base: Duration::ZERO,
            cap: Duration::ZERO,
        }
    }

    /// The longest wait before retry `retry` (1-based): `min(cap, base × 2ʳᵉᵗʳʸ⁻¹)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A random wait before retry `retry` (1-based), in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, crate::random::next_u64())
    }

    /// The wait for a given random number: `ceiling × random / u64::MAX`.
    pub(crate) fn delay_with(&self, retry: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(retry).as_nanos();
        let nanos = ceiling * u128::from(random) / u128::from(u64::MAX);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date
/// (IMF-fixdate, and the obsolete RFC 850 and asctime forms). A date in the past
/// means no wait. Anything else is `None`.
///
/// ```
/// use tower_bad_gateway::retry::parse_retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after(b"120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after(b"Sun, 06 Nov 1994 08:50:07 GMT", now),
///     Some(Duration::from_secs(30)),
/// );
/// assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"soon", now), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        // Saturate absurdly long numbers instead of failing: they mean "not soon".
        let secs = value.iter().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)
                .and_then(|a| a.checked_add(u64::from(d - b'0')))
        });
        return Some(Duration::from_secs(secs.unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn all_three_http_date_forms_are_accepted() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for date in [
            "Sun, 06 Nov 1994 08:49:47 GMT",
            "Sunday, 06-Nov-94 08:49:47 GMT",
            "Sun Nov  6 08:49:47 1994",
        ] {
            assert_eq!(
                parse_retry_after(date.as_bytes(), now),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
    }

    #[test]
    fn malformed_values_are_none() {
        let now = SystemTime::now();
        for v in [
            "",
            " ",
            "-1",
            "1.5",
            "1e3",
            "12 s",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "\u{feff}1",
        ] {
            assert_eq!(parse_retry_after(v.as_bytes(), now), None, "{v:?}");
        }
        assert_eq!(parse_retry_after(b" 7 ", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn the_random_sequence_spreads() {
        let draws: Vec<u64> = (0..1000).map(|_| crate::random::next_u64()).collect();
        let high = draws.iter().filter(|d| **d > u64::MAX / 2).count();
        assert!(
            (350..650).contains(&high),
            "{high} of 1000 in the upper half"
        );
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), secs in 0u64..4_000_000_000) {
            let _ = parse_retry_after(&bytes, UNIX_EPOCH + Duration::from_secs(secs));
        }

        #[test]
        fn delay_seconds_round_trip(n in 0u64..u64::MAX / 2) {
            prop_assert_eq!(parse_retry_after(n.to_string().as_bytes(), SystemTime::now()), Some(Duration::from_secs(n)));
        }

        #[test]
        fn an_http_date_gives_the_time_until_it(now in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
            let now = UNIX_EPOCH + Duration::from_secs(now);
            let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            prop_assert_eq!(parse_retry_after(date.as_bytes(), now), Some(Duration::from_secs(ahead)));
        }

        #[test]
        fn backoff_stays_within_zero_and_min_of_cap_and_exponential(
            base_ms in 0u64..10_000,
            cap_ms in 0u64..100_000,
            retry in 0u32..200,
            random in any::<u64>(),
        ) {
            let backoff = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms));
            let ceiling = backoff.ceiling(retry);
            let expected = Duration::from_millis(base_ms)
                .checked_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX))
                .map_or(backoff.cap, |d| d.min(backoff.cap));
            prop_assert_eq!(ceiling, expected);
            prop_assert!(ceiling <= Duration::from_millis(cap_ms.max(base_ms)));
            prop_assert!(backoff.delay_with(retry, random) <= ceiling);
            prop_assert_eq!(backoff.delay_with(retry, u64::MAX), ceiling);
            prop_assert_eq!(backoff.delay_with(retry, 0), Duration::ZERO);
        }
    }
}
