//! The header rules of a proxy hop: hop-by-hop fields (RFC 9110 §7.6.1),
//! forwarding fields (`X-Forwarded-*`, RFC 7239 `Forwarded`) and `Via` (§7.6.3).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use std::net::IpAddr;

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const FORWARDED: HeaderName = header::FORWARDED;
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the hop-by-hop pass found in a message.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hop {
    /// `Connection` named `upgrade` and an `Upgrade` field was there.
    pub(crate) upgrade: bool,
    /// A `TE` member was `trailers`.
    pub(crate) trailers: bool,
}

/// Whether `value`, a comma-separated list, has the member `token` (case
/// insensitive; parameters after `;` ignored).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.as_bytes().split(|b| *b == b',').any(|member| {
        let name = member.split(|b| *b == b';').next().unwrap_or(member);
        trim(name).eq_ignore_ascii_case(token.as_bytes())
    })
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether a request asks for a protocol upgrade: `Connection: upgrade` and an
/// `Upgrade` field, over HTTP/1.1 (HTTP/1.0 has no upgrades, HTTP/2 its own).
pub(crate) fn wants_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

/// Removes the hop-by-hop fields: every field `Connection` names, `Connection`
/// itself and the well-known ones (`Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `TE`, `Upgrade`, and `Proxy-Authorization` of a request,
/// `Proxy-Authenticate` of a response: credentials for this hop). `Upgrade` stays
/// when `keep_upgrade` and the message upgrades; `TE` is reduced to `trailers`
/// when it had that member (the only one a message may carry on). Then one
/// `Connection` field announces what stayed (`upgrade`, `te`, or `upgrade, te`)
/// when `announce` (an HTTP/1.1 next hop; HTTP/2 has no `Connection`).
pub(crate) fn strip_hop_by_hop(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    announce: bool,
    request: bool,
) -> Hop {
    let mut hop = Hop::default();
    // Most messages carry none, or one or two: one pass over the names
    // instead of a lookup each, and later only the fields seen are removed.
    const CONNECTION: u8 = 1;
    const TE: u8 = 2;
    const UPGRADE: u8 = 4;
    const TRANSFER_ENCODING: u8 = 8;
    const PROXY_AUTH: u8 = 16;
    const KEEP_ALIVE_FIELD: u8 = 32;
    const PROXY_CONNECTION_FIELD: u8 = 64;
    let bit = |name: &HeaderName| {
        if name == header::CONNECTION {
            CONNECTION
        } else if name == header::TE {
            TE
        } else if name == header::UPGRADE {
            UPGRADE
        } else if name == header::TRANSFER_ENCODING {
            TRANSFER_ENCODING
        } else if name == header::PROXY_AUTHORIZATION || name == header::PROXY_AUTHENTICATE {
            PROXY_AUTH
        } else if name == KEEP_ALIVE {
            KEEP_ALIVE_FIELD
        } else if name == PROXY_CONNECTION {
            PROXY_CONNECTION_FIELD
        } else {
            0
        }
    };
    let seen = headers.keys().fold(0u8, |seen, name| seen | bit(name));
    if seen == 0 {
        return hop;
    }
    // The fields `Connection` names. One value is the usual case: no allocation
    // (a clone shares the value's bytes).
    let mut values = headers.get_all(header::CONNECTION).iter();
    let first = values.next().cloned();
    let rest: Vec<HeaderValue> = values.cloned().collect();
    if seen & CONNECTION != 0 {
        headers.remove(header::CONNECTION);
    }
    for value in first.iter().chain(rest.iter()) {
        for member in value.as_bytes().split(|b| *b == b',') {
            let name = trim(member);
            if name.eq_ignore_ascii_case(b"upgrade") {
                hop.upgrade = true;
            } else if name.eq_ignore_ascii_case(b"te")
                || name.eq_ignore_ascii_case(b"close")
                || name.eq_ignore_ascii_case(b"keep-alive")
                || name.is_empty()
            {
                // Handled below, or no field.
            } else if let Ok(name) = std::str::from_utf8(name) {
                // An invalid name names no field: nothing to remove.
                headers.remove(name);
            }
        }
    }
    hop.upgrade &= headers.contains_key(header::UPGRADE);
    let keep_upgrade = keep_upgrade && hop.upgrade;
    if !keep_upgrade && seen & UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
    if seen & TE != 0 && headers.contains_key(header::TE) {
        hop.trailers = request
            && headers
                .get_all(header::TE)
                .iter()
                .any(|v| has_token(v, "trailers"));
        let only_trailers = hop.trailers && {
            let mut all = headers.get_all(header::TE).iter();
            all.next().is_some_and(|v| v == "trailers") && all.next().is_none()
        };
        if !only_trailers {
            headers.remove(header::TE);
            if hop.trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    // A field named in `Connection` is gone already: removing it again is a
    // lookup, never a mistake.
    if seen & KEEP_ALIVE_FIELD != 0 {
        headers.remove(KEEP_ALIVE);
    }
    if seen & PROXY_CONNECTION_FIELD != 0 {
        headers.remove(PROXY_CONNECTION);
    }
    if seen & TRANSFER_ENCODING != 0 {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if seen & PROXY_AUTH != 0 {
        if request {
            headers.remove(header::PROXY_AUTHORIZATION);
        } else {
            headers.remove(header::PROXY_AUTHENTICATE);
        }
    }
    if announce {
        let connection = match (keep_upgrade, hop.trailers) {
            (true, true) => Some("upgrade, te"),
            (true, false) => Some("upgrade"),
            (false, true) => Some("te"),
            (false, false) => None,
        };
        if let Some(connection) = connection {
            headers.insert(header::CONNECTION, HeaderValue::from_static(connection));
        }
    }
    hop
}

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

/// Removes `Expect: 100-continue` from a request the server itself answers with
/// its own `100 Continue` (hyper's HTTP/1.1 server does, when the body is first
/// read): sent on, the upstream would say it again, to a client that already
/// heard it.
pub(crate) fn drop_expect_continue(headers: &mut HeaderMap, version: Version) {
    if version == Version::HTTP_11
        && headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        headers.remove(header::EXPECT);
    }
}

/// Whether a request is a CONNECT (a tunnel, or RFC 8441's extended CONNECT
/// carrying a `:protocol`): a gateway that does not tunnel refuses it.
pub(crate) fn is_connect(method: &Method) -> bool {
    method == Method::CONNECT
}

/// Rewrites a response for the client: hop-by-hop fields removed (a `101` keeps
/// its `Upgrade`, announced in `Connection`), `Via` appended.
pub(crate) fn tidy_response(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    via: Option<&Via>,
) {
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(headers, upgrade, upgrade, false);
    if upgrade && headers.contains_key(header::UPGRADE) && !headers.contains_key(header::CONNECTION)
    {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let Some(via) = via {
        headers.append(header::VIA, via.value(version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn every_field_connection_names_goes_and_te_trailers_stays_announced() {
        let mut headers = map(&[
            ("connection", "x-a, TE ,keep-alive"),
            ("connection", "X-B"),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("te", "trailers, gzip;q=0.5"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
        ]);
        let hop = strip_hop_by_hop(&mut headers, true, true, true);
        assert!(hop.trailers && !hop.upgrade);
        assert!(headers.get("x-a").is_none() && headers.get("x-b").is_none());
        assert_eq!(headers["x-c"], "3");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["connection"], "te");
        assert!(headers.get("keep-alive").is_none() && headers.get("proxy-connection").is_none());
    }

    #[test]
    fn an_upgrade_and_te_share_one_connection_value() {
        let mut headers = map(&[
            ("connection", "Upgrade, te"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
        ]);
        let hop = strip_hop_by_hop(&mut headers, true, true, true);
        assert!(hop.upgrade && hop.trailers);
        assert_eq!(headers.get_all("connection").iter().count(), 1);
        assert_eq!(headers["connection"], "upgrade, te");
        assert_eq!(headers["upgrade"], "websocket");
    }

    #[test]
    fn bad_names_in_connection_are_ignored_without_a_panic() {
        let mut headers = map(&[("connection", ",,  , bad name, x:y, \\"), ("x", "1")]);
        strip_hop_by_hop(&mut headers, false, true, true);
        assert_eq!(headers["x"], "1");
        assert!(headers.get("connection").is_none());
    }

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
