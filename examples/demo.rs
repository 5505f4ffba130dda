//! A self-contained tour: a deliberately broken upstream and a gateway in front of
//! it, both on loopback in this process. One request per failure; each answer is
//! printed as a row of a table.
//!
//! ```text
//! cargo run --example demo
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::ServiceBuilder;
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, GatewayError, ResponsePolicy};

/// Each case: a label, the path asked of the gateway, and whether it is a gRPC call.
const CASES: &[(&str, &str, bool)] = &[
    ("healthy upstream", "/ok", false),
    ("connection refused", "/refused", false),
    ("DNS name does not resolve", "/dns", false),
    ("connect hangs (full backlog)", "/blackhole", false),
    ("closed before answering", "/close", false),
    ("reset before answering", "/reset", false),
    ("answer is not HTTP", "/garbage", false),
    ("header line without a colon", "/no-colon", false),
    ("head cut off halfway", "/half-head", false),
    ("1 MiB response header", "/huge-header", false),
    ("no answer at all", "/silent", false),
    ("500 leaking a stack trace", "/leaky-500", false),
    ("body larger than allowed", "/too-large", false),
    ("body shorter than announced", "/short-body", false),
    ("body stalls mid-way", "/stall-body", false),
    ("invalid chunk size", "/bad-chunk", false),
    ("gRPC call, upstream refused", "/refused", true),
    ("gRPC call, no answer", "/silent", true),
];

#[tokio::main]
async fn main() {
    let upstream = spawn_broken_upstream().await;
    let refused = refused_port();
    let blackhole = blackhole_port().await;
    let refused_addr = refused.local_addr().unwrap();
    let blackhole_addr = blackhole.0;

    // Every failure the gateway reports, as the typed error its hook receives.
    let reported: Arc<Mutex<Vec<GatewayError>>> = Arc::default();
    let hook = reported.clone();

    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(300)));
    let client = Client::builder(TokioExecutor::new()).build::<_, Body>(connector);

    let proxy = ServiceBuilder::new()
        // Pick the next hop: some faults live at other addresses.
        .map_request(move |mut req: Request| {
            let path = req.uri().path().to_owned();
            let target = match path.as_str() {
                "/refused" => format!("http://{refused_addr}{path}"),
                "/dns" => "http://upstream.nonexistent.invalid/".to_owned(),
                "/blackhole" => format!("http://{blackhole_addr}{path}"),
                _ => format!("http://{upstream}{path}"),
            };
            *req.uri_mut() = target.parse().unwrap();
            req
        })
        .layer(
            BadGatewayLayer::new()
                .with_response_policy(
                    ResponsePolicy::new()
                        .reject_status(StatusCode::INTERNAL_SERVER_ERROR)
                        .max_body_size(1 << 20),
                )
                .on_failure(move |err| hook.lock().unwrap().push(err.clone())),
        )
        .layer(
            TimeoutLayer::new()
                .attempt_timeout(Duration::from_millis(600))
                .body_idle_timeout(Duration::from_millis(400)),
        )
        .service(client);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback_service(proxy))
            .await
            .unwrap();
    });

    println!("tower-bad-gateway demo");
    println!("  upstream  http://{upstream}  (deliberately broken: one fault per path)");
    println!(
        "  gateway   http://{gateway}  (axum + BadGatewayLayer + TimeoutLayer + hyper-util Client)"
    );
    println!();
    println!(
        "{:<30} {:<20} {:<70} {:>7}",
        "case", "answer", "Proxy-Status (or what the body failed with)", "time"
    );
    println!("{}", "─".repeat(30 + 1 + 20 + 1 + 70 + 1 + 7));

    let http = reqwest::Client::new();
    for &(label, path, grpc) in CASES {
        reported.lock().unwrap().clear();
        let mut req = http.post(format!("http://{gateway}{path}"));
        if grpc {
            req = req.header("content-type", "application/grpc");
        }
        let start = Instant::now();
        let (answer, proxy_status) = match req.send().await {
            Ok(res) => {
                let status = res.status();
                let proxy_status = res
                    .headers()
                    .get("proxy-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let grpc_status = res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = res.bytes().await;
                let answer = match (grpc_status, body) {
                    (Some(code), _) => format!("{} grpc-status {code}", status.as_u16()),
                    (None, Ok(_)) => format!(
                        "{} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    ),
                    (None, Err(_)) => format!("{}, body cut", status.as_u16()),
                };
                (answer, proxy_status)
            }
            // The body failed before its first byte: the server aborted the
            // connection before its buffered head went out.
            Err(_) => ("connection aborted".to_owned(), None),
        };
        let took = start.elapsed();
        let what = match (proxy_status, reported.lock().unwrap().first()) {
            (Some(header), _) => header,
            (None, Some(err)) => format!("(body: {})", err.kind()),
            (None, None) => "-".to_owned(),
        };
        println!(
            "{label:<30} {answer:<20} {what:<70} {:>4} ms",
            took.as_millis()
        );
    }

    println!();
    println!("Every failure is a typed GatewayError (kind, phase, whether the request was sent),");
    println!("in the synthetic answer's extensions and in the on_failure hook. Nothing internal");
    println!("leaks unless `expose_details(true)`. Failures after the head went out cut the");
    println!("stream instead of ending it cleanly; gRPC calls get grpc-status instead.");
    drop((refused, blackhole));
}

/// The broken upstream: reads a request head, then misbehaves according to its path.
async fn spawn_broken_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream));
        }
    });
    addr
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
        "/leaky-500" => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 32\r\n\r\nNullPointerException at db:5432\n".to_vec(),
        "/too-large" => b"HTTP/1.1 200 OK\r\ncontent-length: 2097152\r\n\r\n".to_vec(),
        "/short-body" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec(),
        "/stall-body" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part").await;
            return hang(stream).await;
        }
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
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
    }
    let line = String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r')?]).into_owned();
    line.split(' ').nth(1).map(str::to_owned)
}

/// A port that refuses connections: bound, never listening.
fn refused_port() -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket
}

/// A port where connecting hangs: a listener that never accepts, its queue full.
async fn blackhole_port() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await
    {
        fillers.push(stream);
        if fillers.len() > 16 {
            break;
        }
    }
    (addr, listener, fillers)
}
