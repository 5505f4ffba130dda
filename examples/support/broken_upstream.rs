//! A deliberately broken upstream on loopback, shared by the examples: one fault
//! per path, plus a refusing port and a port where connecting hangs.

use std::net::SocketAddr;
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
    _refused: TcpSocket,
    _blackhole: (TcpListener, Vec<TcpStream>),
}

impl BrokenUpstream {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(misbehave(stream));
            }
        });
        let refused = TcpSocket::new_v4()?;
        refused.bind("127.0.0.1:0".parse().expect("a valid address"))?;
        let blackhole = TcpSocket::new_v4()?;
        blackhole.bind("127.0.0.1:0".parse().expect("a valid address"))?;
        let blackhole = blackhole.listen(1)?;
        let blackhole_addr = blackhole.local_addr()?;
        let mut fillers = Vec::new();
        while let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(100),
            TcpStream::connect(blackhole_addr),
        )
        .await
        {
            fillers.push(stream);
            if fillers.len() > 16 {
                break;
            }
        }
        Ok(Self {
            addr,
            refused: refused.local_addr()?,
            blackhole: blackhole_addr,
            _refused: refused,
            _blackhole: (blackhole, fillers),
        })
    }
}

async fn misbehave(mut stream: TcpStream) {
    let Some(path) = read_request_path(&mut stream).await else {
        return;
    };
    let reply: Vec<u8> = match path.as_str() {
        "/ok" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec(),
        "/close" => return drop(stream.shutdown().await),
        "/reset" => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return;
        }
        "/garbage" => b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
        "/no-colon" => b"HTTP/1.1 200 OK\r\nthis line has no colon\r\n\r\n".to_vec(),
        "/half-head" => b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec(),
        "/huge-header" => {
            let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 1 << 20));
            r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            r
        }
        "/silent" => return hang(stream).await,
        "/leaky-500" => {
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 32\r\n\r\nNullPointerException at db:5432\n"
                .to_vec()
        }
        "/too-large" => b"HTTP/1.1 200 OK\r\ncontent-length: 2097152\r\n\r\n".to_vec(),
        "/short-body" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec(),
        "/stall-body" => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part")
                .await;
            return hang(stream).await;
        }
        "/slow-body" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n").await;
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b".").await.is_err() {
                    return;
                }
            }
            return;
        }
        "/bad-chunk" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec()
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

async fn hang(stream: TcpStream) {
    tokio::time::sleep(Duration::from_secs(30)).await;
    drop(stream);
}

async fn read_request_path(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    let line_end = buf.iter().position(|b| *b == b'\r')?;
    let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
    let target = line.split(' ').nth(1)?;
    Some(target.split('?').next().unwrap_or(target).to_owned())
}
