//! The `Proxy-Status` field (RFC 9209), and just enough of RFC 8941 (Structured
//! Field Values) to write it.

use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use std::fmt::Write;

/// The `Proxy-Status` header (RFC 9209).
///
/// ```
/// assert_eq!(tower_bad_gateway::render::PROXY_STATUS, "proxy-status");
/// ```
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");

/// How much of an error's text goes into an answer with details exposed.
pub(crate) const MAX_DETAILS: usize = 512;

/// The member for an upstream's own answer passed on: `received-status` only
/// (RFC 9209 reserves `error` for answers the intermediary generated).
pub(crate) fn passed_through(proxy_name: &str, received: http::StatusCode) -> HeaderValue {
    let mut out = String::with_capacity(proxy_name.len() + 24);
    out.push_str(proxy_name);
    let _ = write!(out, "; received-status={}", received.as_u16());
    // Printable ASCII by construction, as above.
    HeaderValue::from_maybe_shared(Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static("tower-bad-gateway"))
}

/// A proxy name as it is written in the field: an sf-token when it is one, else an
/// sf-string with anything but printable ASCII replaced.
pub(crate) fn proxy_name(name: &str) -> String {
    let mut out = String::new();
    push_token_or_string(&mut out, name, 128);
    out
}

/// The member for `err`, named `proxy_name` (already written as [`proxy_name`]
/// makes it): always a valid structured-field list.
pub(crate) fn value(proxy_name: &str, err: &GatewayError, expose_details: bool) -> HeaderValue {
    let mut out = String::with_capacity(proxy_name.len() + 48);
    out.push_str(proxy_name);
    out.push_str("; error=");
    out.push_str(err.kind().as_str());
    if let Some(status) = err.received_status() {
        let _ = write!(out, "; received-status={}", status.as_u16());
    }
    // RFC 9209 §2.3.15: the alert's number always (it names no host and no
    // internal message), its name with the details. The name is a static registry
    // name, written as an sf-string.
    let alert = err
        .tls_alert()
        .filter(|_| err.kind() == ErrorKind::TlsAlertReceived);
    if let Some(alert) = alert {
        let _ = write!(out, "; alert-id={}", alert.id());
        if let Some(message) = alert.message().filter(|_| expose_details) {
            out.push_str("; alert-message=");
            push_string(&mut out, message, 64);
        }
    }
    if expose_details {
        if let Some(hop) = err.next_hop() {
            out.push_str("; next-hop=");
            push_string(&mut out, hop.as_str(), 256);
        }
        let chain = err.source_chain();
        if !chain.is_empty() {
            out.push_str("; details=");
            push_string(&mut out, &chain, MAX_DETAILS);
        }
    }
    // Every byte is printable ASCII by construction; the fallback is unreachable
    // but keeps this free of panics.
    HeaderValue::from_maybe_shared(Bytes::from(out)).unwrap_or_else(|_| {
        HeaderValue::from_static("tower-bad-gateway; error=proxy_internal_error")
    })
}

/// Whether `s` is an sf-token: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
fn is_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'*' => {}
        _ => return false,
    }
    bytes.all(|b| is_tchar(b) || b == b':' || b == b'/')
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends `s` as an sf-string: printable ASCII only, `"` and `\` escaped. Other
/// characters (controls, CR, LF, NUL, non-ASCII) become `?`; at most `max` source
/// characters are kept, then `...`.
pub(crate) fn push_string(out: &mut String, s: &str, max: usize) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

/// Appends `s` as an sf-token when it is one, else as an sf-string.
fn push_token_or_string(out: &mut String, s: &str, max: usize) {
    if is_token(s) && s.len() <= max {
        out.push_str(s);
    } else {
        push_string(out, s, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("tower-bad-gateway"));
        assert!(is_token("gw.example.com:8080"));
        assert!(is_token("*"));
        assert!(!is_token(""));
        assert!(!is_token("1proxy"));
        assert!(!is_token("my proxy"));
        assert!(!is_token("a\"b"));
    }

    #[test]
    fn strings_are_escaped_and_never_carry_controls() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\r\nd\0é", 100);
        assert_eq!(out, r#""a\"b\\c??d??""#);
        let mut out = String::new();
        push_string(&mut out, "abcdef", 3);
        assert_eq!(out, r#""abc...""#);
    }
}
