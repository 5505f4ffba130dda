use super::GatewayError;
use tokio::time::Instant;

/// The upstream's authority, copied inline so that capturing it per request costs
/// no allocation and no atomic operation (only failures build an `Authority`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextHop {
    buf: [u8; 64],
    len: u8,
}

/// Hashed by three words, not 64 bytes: the first sixteen bytes and the last
/// eight of the authority (where two endpoints' names or ports differ), and its
/// length. Equal ones hash alike; the rare two that share these are told apart
/// by `Eq`, which compares every byte.
impl std::hash::Hash for NextHop {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |at: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&self.buf[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let tail = usize::from(self.len).clamp(16, 64) - 8;
        state.write_u64(word(0));
        state.write_u64(word(8));
        state.write_u64(word(tail));
        state.write_u8(self.len);
    }
}

impl NextHop {
    pub(crate) fn of(uri: &http::Uri) -> Option<Self> {
        Self::of_authority(uri.authority()?)
    }

    pub(crate) fn of_authority(authority: &http::uri::Authority) -> Option<Self> {
        let authority = authority.as_str().as_bytes();
        if authority.len() > 64 {
            return None;
        }
        let mut buf = [0; 64];
        buf[..authority.len()].copy_from_slice(authority);
        Some(Self {
            buf,
            len: authority.len() as u8,
        })
    }

    /// The host alone (no user info, no port; an IPv6 address keeps its brackets).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn host(&self) -> Option<&str> {
        let authority = std::str::from_utf8(&self.buf[..usize::from(self.len)]).ok()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.find(']') {
            Some(end) if host.starts_with('[') => &host[..=end],
            _ => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        Some(host).filter(|h| !h.is_empty())
    }

    /// The port, when the authority has one.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn port(&self) -> Option<u16> {
        let authority = std::str::from_utf8(&self.buf[..usize::from(self.len)]).ok()?;
        let (_, port) = authority.rsplit_once(':')?;
        port.parse().ok()
    }

    pub(crate) fn authority(&self) -> Option<http::uri::Authority> {
        http::uri::Authority::try_from(&self.buf[..usize::from(self.len)]).ok()
    }
}

/// Sets the time since `start`, and the next hop unless the error already names one.
pub(crate) fn stamp(err: GatewayError, start: Instant, next_hop: Option<&NextHop>) -> GatewayError {
    let err = err.with_elapsed(start.elapsed());
    if err.next_hop().is_some() {
        return err;
    }
    match next_hop.and_then(NextHop::authority) {
        Some(hop) => err.with_next_hop(hop),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::NextHop;

    #[test]
    fn authorities_that_differ_only_in_the_middle_are_told_apart() {
        use std::collections::HashSet;
        // Same first sixteen bytes, same last eight, same length.
        let a = "api-0123456789ab-one-of-many.internal:8080";
        let b = "api-0123456789ab-two-of-many.internal:8080";
        let hops: HashSet<NextHop> = [a, b, a]
            .iter()
            .map(|s| NextHop::of_authority(&s.parse().unwrap()).unwrap())
            .collect();
        assert_eq!(hops.len(), 2);
    }

    #[test]
    fn host_drops_user_info_and_port() {
        for (uri, host) in [
            ("http://10.0.0.7:8080/", "10.0.0.7"),
            ("http://user:pw@api.internal/", "api.internal"),
            ("http://[::1]:9000/", "[::1]"),
        ] {
            let hop = NextHop::of(&uri.parse().unwrap()).unwrap();
            assert_eq!(hop.host(), Some(host), "{uri}");
        }
    }
}
