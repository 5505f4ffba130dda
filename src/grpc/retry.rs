//! The retry metadata of gRFC A6 ("gRPC Retry Design"), on the wire:
//! `grpc-retry-pushback-ms`, a server's word on when (or whether) to try again,
//! and `grpc-previous-rpc-attempts`, how many attempts came before this one.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// `grpc-retry-pushback-ms`: "an ASCII encoded signed 32-bit integer ... that
/// represents how many milliseconds to wait before sending a retry" (A6, Pushback).
pub(crate) const GRPC_RETRY_PUSHBACK_MS: HeaderName =
    HeaderName::from_static("grpc-retry-pushback-ms");

/// `grpc-previous-rpc-attempts`: absent on the first attempt, 1 on the second, ...
/// (A6, Exposed Retry Metadata).
pub(crate) const GRPC_PREVIOUS_RPC_ATTEMPTS: HeaderName =
    HeaderName::from_static("grpc-previous-rpc-attempts");

/// What a server's pushback asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// Retry after exactly this long.
    After(Duration),
    /// Do not retry at all: the value was negative or could not be parsed (or
    /// the header came more than once, which no value can make sense of).
    Stop,
}

/// The pushback in `headers` (a trailers-only answer's), `None` without one.
pub(crate) fn pushback(headers: &HeaderMap) -> Option<Pushback> {
    let mut values = headers.get_all(GRPC_RETRY_PUSHBACK_MS).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Pushback::Stop);
    }
    Some(parse_pushback(value.as_bytes()))
}

/// Parses a pushback value: an optional `-` and decimal digits within the signed
/// 32-bit range. Negative means stop; so does anything else that is not such a
/// number (A6: "negative or unparseable"). Leading zeros are read, as every gRPC
/// implementation reads them; the surrounding whitespace of a field is no part
/// of its value (RFC 9110 §5.5).
fn parse_pushback(value: &[u8]) -> Pushback {
    let value = value.trim_ascii();
    let (negative, digits) = match value {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Pushback::Stop;
    }
    let ms = digits.iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    });
    match ms {
        Some(0) => Pushback::After(Duration::ZERO),
        Some(ms) if !negative && ms <= i32::MAX as u32 => {
            Pushback::After(Duration::from_millis(u64::from(ms)))
        }
        // Negative, or past the 32-bit range.
        _ => Pushback::Stop,
    }
}

/// The pushback the gateway sends for a wait of `after`: whole milliseconds,
/// rounded up (a pushback never invites a retry before the wait is over), at
/// least 1, at most `i32::MAX`.
pub(crate) fn format_pushback(after: Duration) -> HeaderValue {
    let ms = after.as_millis() + u128::from(after.subsec_nanos() % 1_000_000 > 0);
    let ms = u32::try_from(ms.clamp(1, i32::MAX as u128)).unwrap_or(i32::MAX as u32);
    HeaderValue::from(ms)
}

/// The attempts before this one that a request already says it had: a valid
/// `grpc-previous-rpc-attempts` from the caller (a client that retries through
/// the gateway), else 0.
pub(crate) fn previous_attempts(headers: &HeaderMap) -> u32 {
    let Some(value) = headers.get(GRPC_PREVIOUS_RPC_ATTEMPTS) else {
        return 0;
    };
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    digits
        .iter()
        .try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_pushback(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn a_non_negative_pushback_is_a_wait_in_milliseconds() {
        for (value, ms) in [
            ("0", 0),
            ("1", 1),
            ("250", 250),
            ("007", 7),
            ("-0", 0),
            (" 40 ", 40),
            ("2147483647", 2_147_483_647),
        ] {
            assert_eq!(
                pushback(&with_pushback(&[value])),
                Some(Pushback::After(Duration::from_millis(ms))),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_negative_or_malformed_pushback_means_do_not_retry() {
        for value in [
            "-1",
            "-2147483648",
            "",
            "-",
            "+5",
            "1.5",
            "10ms",
            "1e3",
            "2147483648",
            "99999999999999999999",
            "0x10",
            "1 0",
        ] {
            assert_eq!(
                pushback(&with_pushback(&[value])),
                Some(Pushback::Stop),
                "{value:?}"
            );
        }
        assert_eq!(
            pushback(&with_pushback(&["10", "20"])),
            Some(Pushback::Stop),
            "two values"
        );
        assert_eq!(pushback(&HeaderMap::new()), None);
    }

    #[test]
    fn the_gateways_pushback_is_whole_milliseconds_rounded_up() {
        for (after, value) in [
            (Duration::from_millis(1500), "1500"),
            (Duration::from_micros(1500), "2"),
            (Duration::from_nanos(1), "1"),
            (Duration::ZERO, "1"),
            (Duration::from_secs(30), "30000"),
            (Duration::MAX, "2147483647"),
        ] {
            assert_eq!(format_pushback(after), value, "{after:?}");
            assert!(matches!(
                parse_pushback(format_pushback(after).as_bytes()),
                Pushback::After(_)
            ));
        }
    }

    #[test]
    fn previous_attempts_are_read_only_when_valid() {
        let mut headers = HeaderMap::new();
        assert_eq!(previous_attempts(&headers), 0);
        for (value, n) in [
            ("2", 2),
            ("x", 0),
            ("-1", 0),
            ("", 0),
            ("99999999999", u32::MAX),
        ] {
            headers.insert(GRPC_PREVIOUS_RPC_ATTEMPTS, HeaderValue::from_static(value));
            assert_eq!(previous_attempts(&headers), n, "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn every_i32_parses_to_its_meaning(n in any::<i32>()) {
            let expected = if n < 0 {
                Pushback::Stop
            } else {
                Pushback::After(Duration::from_millis(n as u64))
            };
            prop_assert_eq!(parse_pushback(n.to_string().as_bytes()), expected);
        }

        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_pushback(&bytes);
        }
    }
}
