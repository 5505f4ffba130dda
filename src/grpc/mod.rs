//! Everything this crate knows of gRPC, in one place: which requests are gRPC
//! calls, the header names, `grpc-timeout` (gRPC `PROTOCOL-HTTP2.md`), reading a
//! `grpc-status`, and the percent-encoding of `grpc-message`. The status codes are
//! [`GrpcCode`], and which code answers which failure is a column of the
//! [`ErrorKind`](crate::ErrorKind) table. The retry metadata of gRFC A6
//! (`grpc-retry-pushback-ms`, `grpc-previous-rpc-attempts`) is in `retry`.

mod retry;
mod web;

pub(crate) use self::retry::{
    GRPC_PREVIOUS_RPC_ATTEMPTS, GRPC_RETRY_PUSHBACK_MS, Pushback, format_pushback,
    previous_attempts, pushback,
};
pub(crate) use self::web::{Framing, trailer_frame};

use crate::error::GrpcCode;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version, header};
use std::time::Duration;

/// `grpc-status`.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`: the caller's deadline for the whole call.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The content type a gRPC answer falls back to.
pub(crate) const CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");

/// Whether a request is a gRPC call: a `POST` (gRPC never uses another method,
/// so other requests skip the header lookup) with a gRPC content type.
pub(crate) fn is_grpc_request<B>(req: &Request<B>) -> bool {
    is_grpc_call(req.method(), req.headers())
}

/// [`is_grpc_request`] from a request's method and headers.
pub(crate) fn is_grpc_call(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::POST
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(is_grpc_content_type)
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web`, ...
pub(crate) fn is_grpc_content_type(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
}

/// Whether a gRPC content type is gRPC-Web, and then whether it is its base64
/// `-text` form.
pub(crate) fn web_kind(content_type: &HeaderValue) -> Option<bool> {
    let v = content_type.as_bytes();
    let web = v.len() >= 20 && v[..20].eq_ignore_ascii_case(b"application/grpc-web");
    web.then(|| v.len() >= 25 && v[20..25].eq_ignore_ascii_case(b"-text"))
}

/// Whether a gRPC call can be answered with trailers: over HTTP/2 always; over
/// HTTP/1.1 only when it sent `TE: trailers` (hyper drops trailers otherwise).
pub(crate) fn can_receive_trailers(version: Version, headers: &HeaderMap) -> bool {
    version >= Version::HTTP_2
        || headers.get_all(header::TE).iter().any(|te| {
            te.as_bytes()
                .split(|&b| b == b',')
                .map(|member| member.split(|&b| b == b';').next().unwrap_or_default())
                .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        })
}

/// The `grpc-status` in `headers`, if there is a valid one.
pub(crate) fn status(headers: &HeaderMap) -> Option<GrpcCode> {
    let value = headers.get(GRPC_STATUS)?.as_bytes();
    match value {
        [d] if d.is_ascii_digit() => GrpcCode::from_u8(d - b'0'),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            GrpcCode::from_u8((a - b'0') * 10 + (b - b'0'))
        }
        _ => None,
    }
}

/// Parses a `grpc-timeout` value; `None` if malformed.
pub(crate) fn parse_timeout(value: &HeaderValue) -> Option<Duration> {
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
pub(crate) fn format_timeout(timeout: Duration) -> HeaderValue {
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

/// Percent-encodes a `grpc-message`: every byte outside `0x20..=0x7E`, and `%`
/// itself, becomes `%XX` (uppercase hex), as the gRPC spec requires.
pub(crate) fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("plain text"), "plain text");
        assert_eq!(percent_encode("100% \r\n"), "100%25 %0D%0A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn grpc_status_is_read_only_when_valid() {
        let mut headers = HeaderMap::new();
        for (value, code) in [
            ("14", Some(GrpcCode::Unavailable)),
            ("0", Some(GrpcCode::Ok)),
            ("17", None),
            ("x", None),
            ("014", None),
            ("", None),
        ] {
            headers.insert(GRPC_STATUS, HeaderValue::from_static(value));
            assert_eq!(status(&headers), code, "{value:?}");
        }
    }

    #[test]
    fn trailers_reach_http2_callers_and_http1_callers_that_ask() {
        let te = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::TE, HeaderValue::from_static(value));
            headers
        };
        assert!(can_receive_trailers(Version::HTTP_2, &HeaderMap::new()));
        assert!(!can_receive_trailers(Version::HTTP_11, &HeaderMap::new()));
        assert!(can_receive_trailers(Version::HTTP_11, &te("trailers")));
        assert!(can_receive_trailers(
            Version::HTTP_11,
            &te("gzip;q=0.5, Trailers")
        ));
        assert!(!can_receive_trailers(Version::HTTP_11, &te("gzip")));
    }

    #[test]
    fn only_a_post_with_a_grpc_content_type_is_a_grpc_call() {
        let call = |method: Method, ct: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc_call(&method, &headers)
        };
        assert!(call(Method::POST, "application/grpc"));
        assert!(call(Method::POST, "application/GRPC-web+proto"));
        assert!(!call(Method::GET, "application/grpc"));
        assert!(!call(Method::POST, "application/json"));
    }

    #[test]
    fn parses_every_unit_and_rejects_the_malformed() {
        let p = |s: &'static str| parse_timeout(&HeaderValue::from_static(s));
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
        assert_eq!(format_timeout(Duration::from_millis(199)), "199000u");
        assert_eq!(format_timeout(Duration::from_nanos(5)), "5n");
        assert_eq!(format_timeout(Duration::from_secs(30)), "30000000u");
        assert_eq!(
            format_timeout(Duration::from_secs(86_400 * 365)),
            "31536000S"
        );
        assert_eq!(
            format_timeout(Duration::from_secs(86_400 * 3650)),
            "5256000M"
        );
        assert_eq!(format_timeout(Duration::MAX), "99999999H");
    }

    proptest! {
        #[test]
        fn format_then_parse_never_grows_and_loses_under_a_thousandth(nanos in 0u64..u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            let round = parse_timeout(&format_timeout(d)).unwrap();
            prop_assert!(round <= d);
            prop_assert!(d - round <= d / 1000 + Duration::from_nanos(1));
        }

        #[test]
        fn parse_never_panics(s in "[0-9HMSmun]{0,12}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let _ = parse_timeout(&v);
            }
        }
    }
}
