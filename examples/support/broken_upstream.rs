//! A deliberately broken upstream on loopback, shared by the examples: one fault
//! per path, plus a refusing port and a port where connecting hangs.
//!
//! The integration tests include this file too (`tests/it/support/upstreams.rs`)
//! and build their upstreams on the same primitives: [`serve_raw`] (raw bytes,
//! then a close, a reset or silence), [`RefusedPort`] and [`BlackholePort`].

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The faults, by path.
pub const PATHS: &[(&str, &str)] = &[
    ("/ok", "a healthy 200"),
    ("/close", "closes before answering"),
    ("/reset", "resets before answering"),
    ("/garbage", "answers something that is not HTTP"),
    ("/no-colon", "a header line without a colon"),
    ("/half-head", "the head cut off halfway"),
    ("/huge-header", "a 1 MiB header"),
    ("/silent", "never answers"),
    ("/leaky-500", "a 500 with a stack trace"),
    ("/too-large", "announces a 2 MiB body"),
    ("/short-body", "a body shorter than its Content-Length"),
    ("/stall-body", "a body that stalls mid-way"),
    ("/slow-body", "a steady body that takes 1.5 s"),
    ("/bad-chunk", "an invalid chunk size"),
];

/// The broken upstream and the two addresses that fail at connect time.
pub struct BrokenUpstream {
    /// Serves the faults in [`PATHS`].
    pub addr: SocketAddr,
    /// Refuses connections (bound, never listening).
    pub refused: SocketAddr,
    /// Connecting hangs (a listener that never accepts, its queue full).
    pub blackhole: SocketAddr,
    _ports: (RefusedPort, BlackholePort),
}

impl BrokenUpstream {
    /// One started when `wanted` (a program given no upstream of its own).
    pub async fn start_if(wanted: bool) -> std::io::Result<Option<Self>> {
        match wanted {
            true => Self::start().await.map(Some),
            false => Ok(None),
        }
    }

    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(serve_raw(listener, |head| match request_path(head) {
            Some(path) => fault(&path),
            None => Reply::nothing(After::Close),
        }));
        let refused = RefusedPort::bind()?;
        let blackhole = BlackholePort::bind().await?;
        Ok(Self {
            addr,
            refused: refused.addr,
            blackhole: blackhole.addr,
            _ports: (refused, blackhole),
        })
    }

    /// Prints how to try each fault through a proxy at `proxy`.
    pub fn print_paths(&self, proxy: SocketAddr) {
        println!("built-in broken upstream; try:");
        for (path, what) in PATHS {
            println!("  curl -i http://{proxy}{path:<14} # {what}");
        }
    }

    /// The URL of the faults.
    pub fn url(&self) -> http::Uri {
        format!("http://{}", self.addr)
            .parse()
            .expect("a valid URI")
    }
}

/// The reply of the fault at `path`.
fn fault(path: &str) -> Reply {
    let answer = |bytes: &'static [u8]| Reply::once(Bytes::from_static(bytes), After::Close);
    match path {
        "/ok" => answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
        "/close" => Reply::nothing(After::Close),
        "/reset" => Reply::nothing(After::Reset),
        "/garbage" => answer(b"SSH-2.0-OpenSSH_9.6\r\n"),
        "/no-colon" => answer(b"HTTP/1.1 200 OK\r\nthis line has no colon\r\n\r\n"),
        "/half-head" => answer(b"HTTP/1.1 200 OK\r\nContent-Ty"),
        "/huge-header" => {
            let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 1 << 20));
            r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            Reply::once(r, After::Close)
        }
        "/silent" => Reply::nothing(After::Hang),
        "/leaky-500" => answer(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 32\r\n\r\nNullPointerException at db:5432\n",
        ),
        "/too-large" => answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2097152\r\n\r\n"),
        "/short-body" => answer(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b"),
        "/stall-body" => Reply::once(
            Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part"),
            After::Hang,
        ),
        "/slow-body" => {
            // The head, then one byte every 100 ms.
            let mut parts = vec![Bytes::from_static(
                b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n",
            )];
            parts.extend(std::iter::repeat_n(Bytes::from_static(b"."), 15));
            Reply {
                parts,
                pause: Duration::from_millis(100),
                after: After::Close,
            }
        }
        "/bad-chunk" => answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        _ => answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
    }
}

/// The path of the request target in `head`, without its query.
fn request_path(head: &[u8]) -> Option<String> {
    let line_end = head.iter().position(|b| *b == b'\r')?;
    let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    let target = line.split(' ').nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_owned())
}

/// What a broken upstream does once it has sent its reply.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST, via SO_LINGER 0).
    Reset,
    /// Keep the connection open and silent (30 s, then close it), reading nothing
    /// more: a request body still being sent fills the socket buffers and stalls.
    Hang,
}

/// A raw reply: `parts` written with `pause` between them, then `after`.
#[derive(Clone, Debug)]
pub struct Reply {
    pub parts: Vec<Bytes>,
    pub pause: Duration,
    pub after: After,
}

impl Reply {
    /// `bytes` at once, then `after`.
    pub fn once(bytes: impl Into<Bytes>, after: After) -> Self {
        Self {
            parts: vec![bytes.into()],
            pause: Duration::ZERO,
            after,
        }
    }

    /// Not a byte, just `after`.
    pub fn nothing(after: After) -> Self {
        Self {
            parts: Vec::new(),
            pause: Duration::ZERO,
            after,
        }
    }
}

/// Serves on `listener` until its task ends: on each connection, reads a request
/// head and sends `reply(head)`, raw. One request per connection.
pub async fn serve_raw<F>(listener: TcpListener, reply: F)
where
    F: Fn(&[u8]) -> Reply + Send + Sync + 'static,
{
    let reply = Arc::new(reply);
    while let Ok((mut stream, _)) = listener.accept().await {
        let reply = reply.clone();
        tokio::spawn(async move {
            let Some(head) = read_head(&mut stream).await else {
                return;
            };
            send(stream, reply(&head)).await;
        });
    }
}

/// Reads until the end of a request head; `None` if the peer went away first (or
/// sent more than 1 MiB without ending one). May read past the head's end.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return None;
        }
    }
    Some(buf)
}

async fn send(mut stream: TcpStream, reply: Reply) {
    for (i, part) in reply.parts.iter().enumerate() {
        if i > 0 && !reply.pause.is_zero() {
            tokio::time::sleep(reply.pause).await;
        }
        if stream.write_all(part).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    match reply.after {
        After::Close => {
            let _ = stream.shutdown().await;
        }
        After::Reset => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        After::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

/// A port on 127.0.0.1 that refuses connections: bound, never listening, so
/// nothing else can take it while this guard lives.
pub struct RefusedPort {
    pub addr: SocketAddr,
    _socket: TcpSocket,
}

impl RefusedPort {
    pub fn bind() -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().expect("a valid address"))?;
        Ok(Self {
            addr: socket.local_addr()?,
            _socket: socket,
        })
    }
}

/// A port on 127.0.0.1 where connecting hangs: a listener that never accepts,
/// whose accept queue is already full, so the kernel drops further SYNs.
pub struct BlackholePort {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackholePort {
    pub async fn bind() -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().expect("a valid address"))?;
        let listener = socket.listen(1)?;
        let addr = listener.local_addr()?;
        let mut fillers = Vec::new();
        // Fill the queue until a connect no longer completes.
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        Ok(Self {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }
}
