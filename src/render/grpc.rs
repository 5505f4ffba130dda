//! gRPC status codes and `grpc-message` encoding (gRPC `PROTOCOL-HTTP2.md`).

use crate::error::ErrorKind;

/// `UNAVAILABLE`: the upstream could not be reached or failed; clients may retry.
pub(crate) const UNAVAILABLE: u8 = 14;
/// `DEADLINE_EXCEEDED`: a timeout.
pub(crate) const DEADLINE_EXCEEDED: u8 = 4;
/// `INTERNAL`: the gateway itself is misconfigured.
pub(crate) const INTERNAL: u8 = 13;

/// The gRPC status for a kind: `DEADLINE_EXCEEDED` for timeouts, `INTERNAL` for a
/// misconfigured gateway, `UNAVAILABLE` otherwise (as gRPC's HTTP mapping does for
/// 502, 503 and 504).
pub(crate) fn code(kind: ErrorKind) -> u8 {
    if kind.is_timeout() {
        DEADLINE_EXCEEDED
    } else if kind == ErrorKind::ProxyConfigurationError {
        INTERNAL
    } else {
        UNAVAILABLE
    }
}

/// The decimal text of a code, without allocating.
pub(crate) fn code_str(code: u8) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    CODES.get(usize::from(code)).copied().unwrap_or("2")
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

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("plain text"), "plain text");
        assert_eq!(percent_encode("100% \r\n"), "100%25 %0D%0A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn codes() {
        assert_eq!(code(ErrorKind::ConnectionRefused), UNAVAILABLE);
        assert_eq!(code(ErrorKind::ResponseHeaderTimeout), DEADLINE_EXCEEDED);
        assert_eq!(code(ErrorKind::ProxyConfigurationError), INTERNAL);
        assert_eq!(code_str(14), "14");
    }
}
