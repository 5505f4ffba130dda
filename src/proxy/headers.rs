//! The header rules of a proxy hop: hop-by-hop fields (RFC 9110 §7.6.1), and
//! what else a message is tidied of on its way through. The fields a proxy adds
//! (`X-Forwarded-*`, `Forwarded`, `Via`) are in `forwarding.rs`.

use super::forwarding::Via;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

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
/// insensitive; parameters after `;` ignored). The only whitespace a field
/// value can hold is SP and HTAB, so `trim_ascii` trims exactly the optional
/// whitespace around a member (RFC 9110 §5.6.3).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.as_bytes().split(|b| *b == b',').any(|member| {
        let name = member.split(|b| *b == b';').next().unwrap_or(member);
        name.trim_ascii().eq_ignore_ascii_case(token.as_bytes())
    })
}

/// Up to this many field lines a pass over the names costs less than a lookup
/// (which hashes the name and probes the map); past it, the lookups. The
/// client's own path reads a request's fields by the same rule.
pub(crate) const SCAN_AT_MOST: usize = 16;

/// Whether `headers` holds a `name` field: by a pass over a short list, by a
/// lookup past it.
pub(crate) fn has_field(headers: &HeaderMap, name: &HeaderName) -> bool {
    if headers.len() <= SCAN_AT_MOST {
        headers.keys().any(|n| n == name)
    } else {
        headers.contains_key(name)
    }
}

/// Whether a request asks for a protocol upgrade: `Connection: upgrade` and an
/// `Upgrade` field, over HTTP/1.1 (HTTP/1.0 has no upgrades, HTTP/2 its own).
pub(crate) fn wants_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && has_field(headers, &header::UPGRADE)
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
            let name = member.trim_ascii();
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
    hop.upgrade &= seen & UPGRADE != 0 && headers.contains_key(header::UPGRADE);
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
    fn has_token_reads_a_list_of_tokens_by_its_bytes() {
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).unwrap();
        for (bytes, token, found) in [
            (&b"close"[..], "close", true),
            (b"Keep-Alive", "keep-alive", true),
            (b"te, \t CLOSE \t", "close", true),
            (b",,close,,", "close", true),
            (b"closed, xclose", "close", false),
            (b"", "close", false),
            (b"trailers;q=0.5", "trailers", true),
            // Where the client's head reader, which read the value as text,
            // differed: a byte past ASCII elsewhere in the list leaves the
            // other members readable (obs-text, RFC 9110 §5.5).
            (b"close, caf\xe9", "close", true),
        ] {
            let got = has_token(&value(bytes), token);
            assert_eq!(
                got,
                found,
                "{:?} has {token:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn has_field_finds_a_field_in_a_short_list_and_in_a_long_one() {
        let mut headers = map(&[("host", "a"), ("Upgrade", "websocket")]);
        assert!(has_field(&headers, &header::UPGRADE));
        assert!(!has_field(&headers, &header::TE));
        for i in 0..SCAN_AT_MOST {
            headers.append(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert!(headers.len() > SCAN_AT_MOST);
        assert!(has_field(&headers, &header::UPGRADE));
        assert!(!has_field(&headers, &header::TE));
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
}
