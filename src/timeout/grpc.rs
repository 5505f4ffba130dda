//! The `grpc-timeout` header (gRPC `PROTOCOL-HTTP2.md`): `TimeoutValue TimeoutUnit`,
//! at most 8 digits, units `H M S m u n`.

use http::HeaderValue;
use std::time::Duration;

/// Parses a `grpc-timeout` value; `None` if malformed.
pub(crate) fn parse(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (digits, unit) = bytes.split_at(bytes.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value in the finest unit that fits in
/// 8 digits, rounding down (the upstream never gets more time than there is).
pub(crate) fn format(timeout: Duration) -> HeaderValue {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|(scale, unit)| (nanos / scale, *unit))
        .find(|(value, _)| *value <= 99_999_999)
        .unwrap_or((99_999_999, 'H'));
    HeaderValue::from_str(&format!("{value}{unit}"))
        .unwrap_or(HeaderValue::from_static("99999999H"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_unit_and_rejects_the_malformed() {
        let p = |s: &'static str| parse(&HeaderValue::from_static(s));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("2M"), Some(Duration::from_secs(120)));
        assert_eq!(p("3S"), Some(Duration::from_secs(3)));
        assert_eq!(p("200m"), Some(Duration::from_millis(200)));
        assert_eq!(p("5u"), Some(Duration::from_micros(5)));
        assert_eq!(p("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "100", "123456789m", "1.5S", "-1S", "10s", "1 S"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits() {
        assert_eq!(format(Duration::from_millis(199)), "199000u");
        assert_eq!(format(Duration::from_nanos(5)), "5n");
        assert_eq!(format(Duration::from_secs(30)), "30000000u");
        assert_eq!(format(Duration::from_secs(86_400 * 365)), "31536000S");
        assert_eq!(format(Duration::from_secs(86_400 * 3650)), "5256000M");
        assert_eq!(format(Duration::MAX), "99999999H");
    }

    proptest! {
        #[test]
        fn format_then_parse_never_grows_and_loses_under_a_thousandth(nanos in 0u64..u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            let round = parse(&format(d)).unwrap();
            prop_assert!(round <= d);
            prop_assert!(d - round <= d / 1000 + Duration::from_nanos(1));
        }

        #[test]
        fn parse_never_panics(s in "[0-9HMSmun]{0,12}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let _ = parse(&v);
            }
        }
    }
}
