//! Deliberately broken upstreams on loopback: raw bytes then a close, a reset or
//! silence ([`Upstream`]); a real hyper server that records what it is sent and
//! follows a script ([`Recorder`]); ports where connecting fails or hangs.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// What a broken upstream does after it has read a request head.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST, via SO_LINGER 0).
    Reset,
    /// Keep the connection open and silent.
    Hang,
}

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
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    if !read_head(&mut stream).await {
                        return;
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let (parts, after) = &script[n.min(script.len() - 1)];
                    for (i, part) in parts.iter().enumerate() {
                        if i > 0 && !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        if stream.write_all(part).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.flush().await;
                    finish(stream, *after).await;
                });
            }
        });
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

/// Reads until the end of a request head; false if the peer went away first.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
        if buf.len() > 1 << 20 {
            return false;
        }
    }
}

async fn finish(stream: TcpStream, after: After) {
    match after {
        After::Close => {
            let mut stream = stream;
            let _ = stream.shutdown().await;
        }
        After::Reset => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        After::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(stream);
        }
    }
}

/// A port on 127.0.0.1 that refuses connections: bound, never listening, so no
/// other test can take it while this guard lives.
pub struct RefusedPort {
    pub addr: SocketAddr,
    _socket: TcpSocket,
}

pub fn refused_port() -> RefusedPort {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    RefusedPort {
        addr,
        _socket: socket,
    }
}

/// A port on 127.0.0.1 where connecting hangs: a listener that never accepts, whose
/// accept queue is already full, so the kernel drops further SYNs.
pub struct BlackholePort {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

pub async fn blackhole_port() -> BlackholePort {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    // Fill the queue until a connect no longer completes.
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    BlackholePort {
        addr,
        _listener: listener,
        _fillers: fillers,
    }
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
