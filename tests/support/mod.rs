//! Real sockets on loopback: deliberately broken upstreams and the clients that call them.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let parts = parts.clone();
                tokio::spawn(async move {
                    if !read_head(&mut stream).await {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    for (i, part) in parts.iter().enumerate() {
                        if i > 0 && !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        if stream.write_all(part).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.flush().await;
                    finish(stream, after).await;
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

/// A hyper-util legacy client, HTTP/1.1, with a 150 ms connect timeout (shorter
/// than the tests' 300 ms call timeout, so a hanging connect is seen as one).
pub fn hyper_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(150)));
    Client::builder(TokioExecutor::new()).build(connector)
}

pub type TestBody = Full<Bytes>;

pub fn get(url: &str) -> http::Request<TestBody> {
    http::Request::get(url).body(Full::default()).unwrap()
}

/// Collects a body, giving up after five seconds so a bug cannot hang the suite.
pub async fn collect<B>(body: B) -> Result<Bytes, B::Error>
where
    B: http_body::Body,
{
    tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("body neither ended nor failed within 5 s")
        .map(|c| c.to_bytes())
}
