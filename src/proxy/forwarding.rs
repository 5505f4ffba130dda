//! The fields a proxy adds to what it forwards: `X-Forwarded-*`, RFC 7239
//! `Forwarded` (and who may have written what arrives in them) and `Via`
//! (RFC 9110 §7.6.3).

use http::Version;
use http::header::{self, HeaderName, HeaderValue};
use std::net::IpAddr;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const FORWARDED: HeaderName = header::FORWARDED;

/// The `Via` values of a proxy, one per protocol version received, made once.
#[derive(Debug, Clone)]
pub(crate) struct Via {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
    http3: HeaderValue,
}

impl Via {
    /// `name` is the pseudonym (a token: other characters are dropped).
    pub(crate) fn new(name: &str) -> Self {
        let name: String = name.chars().filter(|c| is_tchar(*c)).collect();
        let name = if name.is_empty() {
            "tower-bad-gateway".to_owned()
        } else {
            name
        };
        // A token is valid in a field value: these cannot fail.
        let value = |version: &str| {
            HeaderValue::try_from(format!("{version} {name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 tower-bad-gateway"))
        };
        Self {
            http10: value("1.0"),
            http11: value("1.1"),
            http2: value("2"),
            http3: value("3"),
        }
    }

    /// The value for a message received over `version`.
    pub(crate) fn value(&self, version: Version) -> HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => self.http10.clone(),
            Version::HTTP_2 => self.http2.clone(),
            Version::HTTP_3 => self.http3.clone(),
            _ => self.http11.clone(),
        }
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Who may have written the forwarding fields a request arrives with.
///
/// Whatever arrives in `X-Forwarded-For`, `X-Forwarded-Host`,
/// `X-Forwarded-Proto` and `Forwarded` was written by the client or by the
/// proxies before this one, and a client can write anything. The rule, the same
/// as nginx's `$proxy_add_x_forwarded_for` and Envoy's `xff_num_trusted_hops`:
/// **this gateway's member is always the last one**; an upstream that trusts N
/// proxies in front of it (this one included) trusts the last N members of each
/// list and nothing before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Trust {
    /// Keep what arrives and append this gateway's member (the default: a
    /// gateway behind a load balancer or CDN keeps their members).
    #[default]
    Append,
    /// This gateway is the edge: whatever the client sent in the forwarding
    /// fields is dropped, and the upstream sees this gateway's member alone.
    Edge,
}

/// The request facts the forwarding fields tell, read before any rewriting.
pub(crate) struct Forwarding {
    pub(crate) client: Option<IpAddr>,
    /// `client` as `X-Forwarded-For` writes it.
    pub(crate) client_value: Option<HeaderValue>,
    pub(crate) host: Option<HeaderValue>,
}

/// An address as field text, written on the stack (IPv4 digit by digit: the
/// formatting machinery costs more than the rest of the field).
pub(crate) fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64];
    let len = match ip {
        IpAddr::V4(ip) => {
            let mut len = 0;
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                for digit in &digits[skip..] {
                    buf[len] = b'0' + digit;
                    len += 1;
                }
            }
            len
        }
        IpAddr::V6(ip) => {
            use std::io::Write;
            let mut cursor = &mut buf[..];
            // 64 bytes hold any address.
            let _ = write!(cursor, "{ip}");
            64 - cursor.len()
        }
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// An RFC 7239 `Forwarded` element: `for=`, `host=`, `proto=`.
pub(crate) fn forwarded_value(
    client: Option<IpAddr>,
    host: Option<&HeaderValue>,
    https: bool,
) -> Option<HeaderValue> {
    let mut out = String::with_capacity(64);
    match client {
        // An IPv6 address is a quoted "[...]" (RFC 7239 §6).
        Some(IpAddr::V6(ip)) => {
            out.push_str("for=\"[");
            out.push_str(&ip.to_string());
            out.push_str("]\"");
        }
        Some(IpAddr::V4(ip)) => {
            out.push_str("for=");
            out.push_str(&ip.to_string());
        }
        None => out.push_str("for=unknown"),
    }
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        // `host:port` is no token: a quoted-string, `"` and `\` escaped.
        out.push_str(";host=\"");
        for c in host.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push_str(if https { ";proto=https" } else { ";proto=http" });
    // The value is visible ASCII: `HeaderValue` refuses CR, LF and NUL anyway.
    HeaderValue::try_from(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "100.200.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn a_forwarded_element_quotes_what_is_no_token() {
        let host = HeaderValue::from_static("a.example:8080");
        let v = forwarded_value(Some("::1".parse().unwrap()), Some(&host), false).unwrap();
        assert_eq!(v, "for=\"[::1]\";host=\"a.example:8080\";proto=http");
        let host = HeaderValue::from_static("we\"ird\\");
        let v = forwarded_value(Some("10.0.0.1".parse().unwrap()), Some(&host), true).unwrap();
        assert_eq!(v, "for=10.0.0.1;host=\"we\\\"ird\\\\\";proto=https");
    }

    #[test]
    fn a_via_name_keeps_only_token_characters() {
        assert_eq!(Via::new("edge\r\n1").value(Version::HTTP_2), "2 edge1");
        assert_eq!(
            Via::new("").value(Version::HTTP_10),
            "1.0 tower-bad-gateway"
        );
    }
}
