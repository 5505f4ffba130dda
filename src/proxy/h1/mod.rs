//! A small HTTP/1.1 client for plain `http://` upstreams, with a pool of idle
//! connections per authority.
//!
//! A request without a body (most of a gateway's: `GET`, `HEAD`, `DELETE`, a
//! `POST` with `Content-Length: 0`) takes this crate's own path ([`conn`],
//! [`codec`]): its head is written and the answer read in the request's own
//! task, and a small answer's connection goes back to the pool as soon as its
//! head and body have been read. Everything else (a body to stream up,
//! an upgrade, CONNECT, HTTP/1.0) goes through hyper's connection
//! (`hyper::client::conn::http1`), over the same pool: an idle connection of
//! either kind serves either path.
//!
//! Idle connections expire after the pool's idle timeout: one is dropped when it
//! would be handed out, and every pool is swept as connections come back (so an
//! authority no longer asked for lets its connections and its pool go).
//!
//! Each [`UpstreamClient`](super::UpstreamClient) has its own pool; under
//! [`serve_threads`](super::serve_threads) each thread builds its own client,
//! so a pool's lock is never contended and a connection lives on the thread
//! that uses it.

mod codec;
mod conn;

pub use self::conn::UpstreamClientBody;

use self::conn::{Conn, Home, Plain};
use crate::error::BoxError;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, Uri, Version};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Idle connections kept per authority at most: more are closed when put back.
const MAX_IDLE: usize = 256;

/// The longest time between two sweeps of the idle connections.
const SWEEP_AT_MOST: Duration = Duration::from_secs(30);

pub(crate) struct H1<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for H1<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<B> {
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
enum Reused<B> {
    Hyper(SendRequest<B>),
    Own(Conn),
}

pub(crate) type H1Future =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamClientBody>, BoxError>> + Send>>;

/// An error of the client itself (hyper's errors pass through as they are):
/// connecting failed, or the URI names no upstream. Its message is what the
/// default classifier reads, the same as hyper-util's connector says.
#[derive(Debug)]
pub(crate) struct ClientError {
    message: &'static str,
    source: Option<BoxError>,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

fn error(message: &'static str, source: impl Into<BoxError>) -> BoxError {
    Box::new(ClientError {
        message,
        source: Some(source.into()),
    })
}

impl<B> H1<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(connect_timeout: Option<Duration>, idle_timeout: Duration) -> Self {
        Self::to(None, connect_timeout, idle_timeout)
    }

    /// A client whose connections all go to `address` (if given), the requests
    /// keeping their authority in `Host`.
    pub(crate) fn to(
        address: Option<std::net::SocketAddr>,
        connect_timeout: Option<Duration>,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                pools: Mutex::new(Pools {
                    by_authority: HashMap::default(),
                    next_sweep: None,
                }),
                connect_timeout,
                idle_timeout,
                address,
            }),
        }
    }

    pub(crate) fn request(&self, mut req: Request<B>) -> H1Future {
        let shared = self.shared.clone();
        let uri = req.uri();
        let authority = match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(authority)) => authority.clone(),
            _ => {
                let err = ClientError {
                    message: "invalid URL, scheme is not http or the authority is missing",
                    source: None,
                };
                return Box::pin(std::future::ready(Err(Box::new(err) as BoxError)));
            }
        };
        // The target is the path and query (the bytes shared, not copied).
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let own = is_plain(&req);
        let (host, reused) = shared.checkout(&authority, own);
        if let Some(host) = host {
            if !req.headers().contains_key(header::HOST) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        if own && !matches!(reused, Some(Reused::Hyper(_))) {
            // The body is empty: nothing of it is sent.
            let (parts, _empty) = req.into_parts();
            let plain = Plain {
                method: parts.method,
                target: path,
                headers: parts.headers,
            };
            return match reused {
                Some(Reused::Own(conn)) => Box::pin(conn::exchange(conn, plain, shared, authority)),
                _ => Box::pin(async move {
                    let conn = Conn::new(shared.connect(&authority).await?);
                    conn::exchange(conn, plain, shared, authority).await
                }),
            };
        }
        *req.uri_mut() = Uri::from(path);
        let sender = match reused {
            Some(Reused::Hyper(sender)) => Some(sender),
            Some(Reused::Own(conn)) => {
                return Box::pin(async move {
                    let sender = handshake(conn.into_io()).await?;
                    via_hyper(shared, authority, Some(sender), req).await
                });
            }
            None => None,
        };
        Box::pin(via_hyper(shared, authority, sender, req))
    }
}

/// Whether `req` can take the own path: no body, nothing hyper is needed for.
fn is_plain<B: http_body::Body>(req: &Request<B>) -> bool {
    let headers = req.headers();
    req.body().is_end_stream()
        && req.version() == Version::HTTP_11
        && req.method() != Method::CONNECT
        && !headers.contains_key(header::UPGRADE)
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length == "0")
}

/// Sends `req` through hyper: on `sender` if it can still take it, else on a
/// new connection.
async fn via_hyper<B>(
    shared: Arc<Shared<B>>,
    authority: Authority,
    sender: Option<SendRequest<B>>,
    mut req: Request<B>,
) -> Result<Response<UpstreamClientBody>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if let Some(mut sender) = sender {
        match sender.try_send_request(req).await {
            Ok(res) => {
                shared.put_back(authority, sender);
                return Ok(res.map(UpstreamClientBody::hyper));
            }
            Err(mut err) => match err.take_message() {
                // Closed before the request went out: a new connection.
                Some(back) => req = back,
                None => return Err(err.into_error().into()),
            },
        }
    }
    let mut sender = handshake(shared.connect(&authority).await?).await?;
    let res = sender.send_request(req).await?;
    shared.put_back(authority, sender);
    Ok(res.map(UpstreamClientBody::hyper))
}

/// hyper's HTTP/1.1 connection over `stream`, driven by a task of its own.
async fn handshake<B>(stream: tokio::net::TcpStream) -> Result<SendRequest<B>, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    drop(tokio::spawn(conn.with_upgrades()));
    sender.ready().await?;
    Ok(sender)
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
    /// The `Host` value for `authority` (made on its first request), and an idle
    /// connection to it that can take a request now, if any (one of the own
    /// path first if `own`, else one hyper drives first); closed and expired
    /// ones are dropped on the way.
    fn checkout(
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

    fn put_back(&self, authority: Authority, sender: SendRequest<B>) {
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

    async fn connect(&self, authority: &Authority) -> Result<tokio::net::TcpStream, BoxError> {
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
