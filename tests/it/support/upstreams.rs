//! Deliberately broken upstreams on loopback: raw bytes then a close, a reset or
//! silence ([`Upstream`]); a real hyper server that records what it is sent and
//! follows a script ([`Recorder`]); ports where connecting fails or hangs.
//!
//! The raw faults are the examples' own (`examples/support/broken_upstream.rs`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// Its per-path fault table is the examples'; the tests script their own replies.
// The reverse_proxy example, compiled into the reverse_proxy tests, loads it too.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../examples/support/broken_upstream.rs"]
mod broken_upstream;

pub use broken_upstream::After;
use broken_upstream::{BlackholePort, RefusedPort, Reply, serve_raw};

/// An upstream on 127.0.0.1 that answers every request with fixed raw bytes.
pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Answers each request (after reading its head) with `reply`, then does `after`.
    pub async fn raw(reply: impl Into<Bytes>, after: After) -> Self {
        Self::raw_parts(vec![reply.into()], Duration::ZERO, after).await
    }

    /// Sends `parts` with `pause` between them, then does `after`.
    pub async fn raw_parts(parts: Vec<Bytes>, pause: Duration, after: After) -> Self {
        Self::scripted(vec![(parts, after)], pause).await
    }

    /// Request n (counted over all connections) gets `script[n]`; the last entry
    /// repeats.
    pub async fn scripted(script: Vec<(Vec<Bytes>, After)>, pause: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(serve_raw(listener, move |_head| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (parts, after) = script[n.min(script.len() - 1)].clone();
            Reply {
                parts,
                pause,
                after,
            }
        }));
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Answers every request `200 OK` with `body`.
    pub async fn ok(body: &'static str) -> Self {
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Self::raw(reply, After::Hang).await
    }

    /// How many request heads it has read.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:port`, as a next hop is named.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.1 that refuses connections: bound, never listening, so no
/// other test can take it while the guard lives.
pub fn refused_port() -> RefusedPort {
    RefusedPort::bind().unwrap()
}

/// A port on 127.0.0.1 where connecting hangs: a listener that never accepts, whose
/// accept queue is already full, so the kernel drops further SYNs.
pub async fn blackhole_port() -> BlackholePort {
    BlackholePort::bind().await.unwrap()
}

/// What a [`Recorder`] does with its nth request.
#[derive(Clone, Debug)]
pub enum Script {
    /// Answer with this status, headers and body.
    Respond(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// Read the whole request, then close the connection without answering.
    Drop,
}

/// A real hyper HTTP/1.1 upstream that reads every request in full, records it,
/// and follows a script: request n gets `script[n]` (the last entry repeats).
pub struct Recorder {
    pub addr: SocketAddr,
    received: Log,
    headers: Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start(script: Vec<Script>) -> Self {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Log = Arc::default();
        let log = received.clone();
        let headers: Arc<std::sync::Mutex<Vec<http::HeaderMap>>> = Arc::default();
        let header_log = headers.clone();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, script, header_log) = (log.clone(), script.clone(), header_log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        header_log.lock().unwrap().push(req.headers().clone());
                        record(req, log.clone(), script.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            headers,
            task,
        }
    }

    /// The headers of every request received so far.
    pub fn headers(&self) -> Vec<http::HeaderMap> {
        self.headers.lock().unwrap().clone()
    }

    /// Every request received so far: method and full body.
    pub fn received(&self) -> Vec<(http::Method, Bytes)> {
        self.received.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

type Log = Arc<std::sync::Mutex<Vec<(http::Method, Bytes)>>>;

async fn record(
    req: http::Request<hyper::body::Incoming>,
    log: Log,
    script: Arc<Vec<Script>>,
) -> Result<http::Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let method = req.method().clone();
    let body = req.into_body().collect().await?.to_bytes();
    let n = {
        let mut log = log.lock().unwrap();
        log.push((method, body));
        log.len() - 1
    };
    match script[n.min(script.len() - 1)].clone() {
        Script::Respond(status, headers, body) => {
            let mut res = http::Response::builder().status(status);
            for (k, v) in headers {
                res = res.header(k, v);
            }
            Ok(res.body(Full::new(Bytes::from_static(body.as_bytes())))?)
        }
        Script::Drop => Err("scripted drop".into()),
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real hyper HTTP/1.1 replica that answers `200` with its name, counts the
/// requests it receives by their `x-id` header, and can be killed (its listener and
/// every connection closed: connecting is refused) and started again on the same
/// port.
pub struct Replica {
    pub addr: SocketAddr,
    pub name: &'static str,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    hosts: Arc<std::sync::Mutex<Vec<String>>>,
    delay: Duration,
    tasks: std::sync::Mutex<Option<tokio::task::JoinSet<()>>>,
}

impl Replica {
    pub async fn start(name: &'static str) -> Arc<Self> {
        Self::start_slow(name, Duration::ZERO).await
    }

    /// Replicas listening on one port at each of `ips` (loopback addresses), as
    /// the addresses of a name would: their names in order.
    pub async fn start_at(names: &[&'static str], ips: &[std::net::Ipv4Addr]) -> Vec<Arc<Self>> {
        'port: loop {
            let first = TcpListener::bind((ips[0], 0)).await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for ip in &ips[1..] {
                match TcpListener::bind((*ip, port)).await {
                    Ok(l) => listeners.push(l),
                    Err(_) => continue 'port,
                }
            }
            return names
                .iter()
                .zip(listeners)
                .map(|(name, listener)| {
                    let replica = Arc::new(Self {
                        addr: listener.local_addr().unwrap(),
                        name,
                        seen: Arc::default(),
                        hosts: Arc::default(),
                        delay: Duration::ZERO,
                        tasks: std::sync::Mutex::new(None),
                    });
                    replica.serve(listener);
                    replica
                })
                .collect();
        }
    }

    /// Answers each request after `delay`.
    pub async fn start_slow(name: &'static str, delay: Duration) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let replica = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            name,
            seen: Arc::default(),
            hosts: Arc::default(),
            delay,
            tasks: std::sync::Mutex::new(None),
        });
        replica.serve(listener);
        replica
    }

    fn serve(&self, listener: TcpListener) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let mut set = tokio::task::JoinSet::new();
        let (seen, name, delay) = (self.seen.clone(), self.name, self.delay);
        let hosts = self.hosts.clone();
        let conns = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accept_conns = conns.clone();
        set.spawn(async move {
            let _conns = ConnsGuard(accept_conns.clone());
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, hosts) = (seen.clone(), hosts.clone());
                accept_conns.lock().unwrap().spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        let host = req.headers().get("host").and_then(|v| v.to_str().ok());
                        hosts.lock().unwrap().push(host.unwrap_or("").to_owned());
                        async move {
                            let id = req.headers().get("x-id").and_then(|v| v.to_str().ok());
                            let id = id.unwrap_or("").to_owned();
                            let _ = req.into_body().collect().await;
                            seen.lock().unwrap().push(id);
                            tokio::time::sleep(delay).await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from_static(name.as_bytes()),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.tasks.lock().unwrap() = Some(set);
    }

    /// Closes the listener and every connection: from now on connecting is refused.
    pub fn kill(&self) {
        // Dropping the JoinSet aborts the accept loop, whose guard aborts the connections.
        drop(self.tasks.lock().unwrap().take());
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(1024).unwrap());
    }

    /// The `Host` of every request received so far.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }

    /// The `x-id` of every request received so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Aborts a replica's connections when its accept loop ends (killed).
struct ConnsGuard(Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>);

impl Drop for ConnsGuard {
    fn drop(&mut self) {
        self.0.lock().unwrap().abort_all();
    }
}
