//! The idle connections of an [`H1`](super::H1) client, per authority: of the
//! own path and hyper's, handed out fresh and open, put back, swept, and new
//! ones connected.

use super::conn::{Conn, Home, error};
use crate::error::BoxError;
use http::header::HeaderValue;
use http::uri::Authority;
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Idle connections kept per authority at most: more are closed when put back.
const MAX_IDLE: usize = 256;

/// The longest time between two sweeps of the idle connections.
const SWEEP_AT_MOST: Duration = Duration::from_secs(30);

pub(super) struct Shared<B> {
    pools: Mutex<Pools<B>>,
    connect_timeout: Option<Duration>,
    idle_timeout: Duration,
    /// The address every connection goes to, whatever the authority names (a
    /// client of one address of an endpoint set); `None`: the authority's.
    address: Option<std::net::SocketAddr>,
}

/// Every authority's pool, and when they are next swept.
struct Pools<B> {
    by_authority: HashMap<Key, Pool<B>, Fnv>,
    /// `None` until the first connection comes back.
    next_sweep: Option<Instant>,
}

impl<B> Pools<B> {
    /// Drops every idle connection that is closed or has been idle longer than
    /// `idle_timeout`, and the pools left without one (an authority the endpoint
    /// set no longer names, after DNS moved on, goes with them; one still in use
    /// is made again when its connection comes back).
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) {
        let fresh = |since: Instant| now.duration_since(since) <= idle_timeout;
        self.by_authority.retain(|_, pool| {
            pool.idle
                .retain(|entry| !entry.sender.is_closed() && fresh(entry.since));
            pool.conns
                .retain_mut(|entry| fresh(entry.since) && !entry.conn.is_stale());
            !pool.idle.is_empty() || !pool.conns.is_empty()
        });
    }

    /// The pool of `authority`, made (with its `Host` value) when it has none.
    fn pool(&mut self, authority: &Authority) -> &mut Pool<B> {
        // The key shares the authority's bytes: no allocation (a lookup that
        // finds one is by the borrowed text, with no clone at all).
        let key = Key(authority.clone());
        self.by_authority.entry(key).or_insert_with(|| Pool {
            host: host_value(authority),
            idle: Vec::new(),
            conns: Vec::new(),
        })
    }
}

/// An authority as a pool's key: hashed and compared as its text is (the
/// endpoint set writes each endpoint's authority the same way every time), not
/// case-folded as `Authority` itself is, byte by byte.
struct Key(Authority);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

/// Hashed and compared as its text is, so a lookup by text agrees.
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// The connections to one authority, and its `Host` value, made once.
struct Pool<B> {
    host: Option<HeaderValue>,
    /// Idle connections hyper drives.
    idle: Vec<Idle<B>>,
    /// Idle connections of the own path (no task of their own).
    conns: Vec<IdleConn>,
}

struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

struct IdleConn {
    conn: Conn,
    since: Instant,
}

/// An idle connection handed out.
pub(super) enum Reused<B> {
    Hyper(SendRequest<B>),
    Own(Conn),
}

impl<B> Home for Shared<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn put_back_conn(&self, authority: Authority, conn: Conn) {
        self.put_back_with(authority, |pool, since| {
            if pool.conns.len() < MAX_IDLE {
                pool.conns.push(IdleConn { conn, since });
            }
        });
    }
}

impl<B> Shared<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(
        address: Option<std::net::SocketAddr>,
        connect_timeout: Option<Duration>,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            pools: Mutex::new(Pools {
                by_authority: HashMap::default(),
                next_sweep: None,
            }),
            connect_timeout,
            idle_timeout,
            address,
        }
    }

    /// The `Host` value for `authority` (made on its first request), and an idle
    /// connection to it that can take a request now, if any (one of the own
    /// path first if `own`, else one hyper drives first); closed and expired
    /// ones are dropped on the way.
    pub(super) fn checkout(
        &self,
        authority: &Authority,
        own: bool,
    ) -> (Option<HeaderValue>, Option<Reused<B>>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        // Found by the borrowed text: no clone of the authority per request.
        let pool = match pools.by_authority.get_mut(authority.as_str()) {
            Some(pool) => pool,
            None => pools.pool(authority),
        };
        let host = pool.host.clone();
        let mut now = None;
        let reused = match own {
            true => self
                .own_conn(pool, &mut now)
                .or_else(|| self.hyper_conn(pool, &mut now)),
            false => self
                .hyper_conn(pool, &mut now)
                .or_else(|| self.own_conn(pool, &mut now)),
        };
        (host, reused)
    }

    /// An idle connection of the own path, if one is fresh and open.
    fn own_conn(&self, pool: &mut Pool<B>, now: &mut Option<Instant>) -> Option<Reused<B>> {
        while let Some(mut entry) = pool.conns.pop() {
            let now = *now.get_or_insert_with(Instant::now);
            if now.duration_since(entry.since) <= self.idle_timeout && !entry.conn.is_stale() {
                return Some(Reused::Own(entry.conn));
            }
        }
        None
    }

    /// An idle connection hyper drives, if one is fresh and can take a request.
    fn hyper_conn(&self, pool: &mut Pool<B>, now: &mut Option<Instant>) -> Option<Reused<B>> {
        let list = &mut pool.idle;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let entry = &list[i];
            if entry.sender.is_closed() {
                drop(list.swap_remove(i));
            } else if entry.sender.is_ready() {
                // Only an idle connection can have been idle too long.
                let now = *now.get_or_insert_with(Instant::now);
                let entry = list.swap_remove(i);
                if now.duration_since(entry.since) <= self.idle_timeout {
                    return Some(Reused::Hyper(entry.sender));
                }
            }
        }
        None
    }

    pub(super) fn put_back(&self, authority: Authority, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        self.put_back_with(authority, |pool, since| {
            if pool.idle.len() < MAX_IDLE {
                pool.idle.push(Idle { sender, since });
            }
        });
    }

    /// Puts a connection in `authority`'s pool with `put`, sweeping the pools
    /// first when it is time.
    fn put_back_with(&self, authority: Authority, put: impl FnOnce(&mut Pool<B>, Instant)) {
        let now = Instant::now();
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        // Every few seconds, as connections come back: an idle connection is
        // closed within about half the idle timeout after it expires, whether or
        // not its authority is asked for again.
        if pools.next_sweep.is_none_or(|at| now >= at) {
            pools.sweep(now, self.idle_timeout);
            let every = (self.idle_timeout / 2).clamp(Duration::from_secs(1), SWEEP_AT_MOST);
            pools.next_sweep = Some(now + every);
        }
        // Made again if a sweep let it go while this connection was out.
        let pool = match pools.by_authority.get_mut(authority.as_str()) {
            Some(pool) => pool,
            None => pools.pool(&authority),
        };
        put(pool, now);
    }

    pub(super) async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<tokio::net::TcpStream, BoxError> {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addresses: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
            _ if self.address.is_some() => self.address.into_iter().collect(),
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| error("dns error", e))?
                .collect(),
        };
        let mut last = None;
        for address in addresses {
            let connecting = tokio::net::TcpStream::connect(address);
            let connected = match self.connect_timeout {
                Some(timeout) => match tokio::time::timeout(timeout, connecting).await {
                    Ok(connected) => connected,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )),
                },
                None => connecting.await,
            };
            match connected {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(err) => last = Some(err),
            }
        }
        let err = last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotConnected, "no address to connect to")
        });
        Err(error("tcp connect error", err))
    }
}

/// FNV-1a: the keys are the endpoints' authorities, from the configuration, not
/// from clients; `Authority` hashes byte by byte, which SipHash makes slow.
#[derive(Clone, Copy, Default)]
struct Fnv;

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `Host` for `authority`: the port left out when it is HTTP's default.
fn host_value(authority: &Authority) -> Option<HeaderValue> {
    let text = match authority.port_u16() {
        Some(80) => authority.host(),
        _ => authority.as_str(),
    };
    HeaderValue::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_leaves_the_default_port_out() {
        let host = |a: &str| host_value(&a.parse().unwrap()).unwrap();
        assert_eq!(host("a.example:80"), "a.example");
        assert_eq!(host("a.example:8080"), "a.example:8080");
        assert_eq!(host("[::1]:81"), "[::1]:81");
        assert_eq!(host("a.example"), "a.example");
    }
}
