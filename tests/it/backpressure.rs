//! Large bodies meet slow readers, through the `reverse_proxy` example: the gateway
//! never buffers a body, so what is in flight between the two ends stays bounded
//! by the transport's buffers (the kernel's socket buffers, hyper's read buffer,
//! the retry layer's bounded replay buffer), however large the body.

use crate::reverse_proxy::reverse_proxy::{self, Options};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const BODY: u64 = 128 << 20;
/// The ends' sockets get small buffers; the gateway's own two sockets autotune up
/// to the system maximum (`tcp_rmem` and `tcp_wmem` here: 32 MiB and 4 MiB). So
/// at most about 40 MiB can be in flight without the gateway holding any; a
/// gateway that buffered the body would let all 128 MiB through.
const BOUND: u64 = 48 << 20;
const SMALL: u32 = 64 << 10;

async fn proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uri = format!("http://{upstream}").parse().unwrap();
    let app = reverse_proxy::app(&Options::default(), &[uri]).unwrap();
    tokio::spawn(tower_bad_gateway::proxy::serve(
        listener,
        app,
        std::future::pending(),
    ));
    addr
}

async fn connect_small(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SMALL).unwrap();
    socket.set_send_buffer_size(SMALL).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Waits until the writer counting into `count` is blocked (the count has not
/// moved for a quiet half second), failing as soon as the count passes [`BOUND`],
/// and gives up after `PATIENCE` (a machine too loaded to fill the buffers by
/// then still has less than `BOUND` in flight). Returns the count.
///
/// The quiet time is not a race the test can lose: a writer that was only slow
/// shows less in flight, never more.
async fn blocked(count: &AtomicU64, what: &str) -> u64 {
    const QUIET: Duration = Duration::from_millis(500);
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let (mut last, mut since) = (count.load(Ordering::SeqCst), std::time::Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count.load(Ordering::SeqCst);
        assert!(now < BOUND, "{} MiB {what} already", now >> 20);
        if now != last || now == 0 {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() >= QUIET || std::time::Instant::now() >= deadline {
            return now;
        }
    }
}

/// Reads an HTTP head off `stream`.
async fn read_head(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_slow_downstream_reader_holds_back_a_large_upstream_body() {
    let written = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let count = written.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(SMALL as usize)
            .unwrap();
        read_head(&mut stream).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 << 10];
        while count.load(Ordering::SeqCst) < BODY {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let gateway = proxy(upstream).await;
    let mut client = connect_small(gateway).await;
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The client stops reading; the upstream writes as fast as it can meanwhile,
    // until back-pressure reaches it.
    let in_flight = blocked(&written, "left the upstream while the client read none").await;
    eprintln!(
        "download: {} KiB in flight with the client reading none",
        in_flight >> 10
    );
    assert!(
        in_flight < BOUND,
        "{} MiB of the body left the upstream while the client read none",
        in_flight >> 20
    );
    // And it all arrives once the client reads.
    let mut total = 0u64;
    let mut buf = vec![0; 1 << 20];
    while total < BODY {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {total} bytes");
        total += n as u64;
    }
    assert_eq!(total, BODY);
}

#[tokio::test]
async fn a_slow_upstream_reader_holds_back_a_large_request_body() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let read = Arc::new(AtomicU64::new(0));
    let go = Arc::new(tokio::sync::Notify::new());
    let (count, start) = (read.clone(), go.clone());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&stream)
            .set_recv_buffer_size(SMALL as usize)
            .unwrap();
        read_head(&mut stream).await;
        // Reads nothing until told to, then all of it, then answers.
        start.notified().await;
        let mut buf = vec![0; 1 << 20];
        while count.load(Ordering::SeqCst) < BODY {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => count.fetch_add(n as u64, Ordering::SeqCst),
            };
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    });
    let gateway = proxy(upstream).await;
    let mut client = connect_small(gateway).await;
    let head = format!("POST /upload HTTP/1.1\r\nhost: gateway\r\ncontent-length: {BODY}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let (mut reader, mut writer) = client.into_split();
    let sending = tokio::spawn({
        let sent = sent.clone();
        async move {
            let chunk = vec![b'y'; 64 << 10];
            while sent.load(Ordering::SeqCst) < BODY {
                writer.write_all(&chunk).await.unwrap();
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            writer
        }
    });
    let in_flight = blocked(&sent, "sent by the client while the upstream read none").await;
    eprintln!(
        "upload: {} KiB in flight with the upstream reading none",
        in_flight >> 10
    );
    assert!(
        in_flight < BOUND,
        "the client sent {} MiB while the upstream read none",
        in_flight >> 20
    );
    go.notify_one();
    let _writer = sending.await.unwrap();
    let answer = read_head(&mut reader).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(read.load(Ordering::SeqCst), BODY);
}
