//! The client side: a service that calls a flaky API with reqwest 0.13 (feature
//! `reqwest013`), behind this crate's retry and timeout layers, and prints the
//! typed errors it got.
//!
//! ```text
//! cargo run --example reqwest_client
//! ```

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::{ServiceBuilder, ServiceExt};
use tower_bad_gateway::reqwest013::ReqwestService;
use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{Attempts, ErrorKind};

#[tokio::main]
async fn main() {
    let api = flaky_api().await;
    let down = TcpSocket::new_v4().unwrap();
    down.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let down_addr = down.local_addr().unwrap();

    // The stack a client of a flaky API wants: up to 3 attempts of 300 ms each,
    // retrying timeouts and 503s (honouring Retry-After) for idempotent calls.
    let api_client = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::new()
                .retry_on(ErrorKind::ResponseHeaderTimeout)
                .retry_on(StatusCode::SERVICE_UNAVAILABLE),
        ))
        .layer(TimeoutLayer::new().attempt_timeout(Duration::from_millis(300)))
        .service(ReqwestService::new(reqwest::Client::new()));

    let calls = [
        ("GET", format!("http://{api}/flaky"), "503 twice, then 200"),
        ("GET", format!("http://{api}/slow"), "never answers"),
        (
            "POST",
            format!("http://{api}/orders"),
            "reads the order, then resets",
        ),
        (
            "POST",
            format!("http://{down_addr}/orders"),
            "nothing listening",
        ),
        (
            "GET",
            "http://api.nonexistent.invalid/".to_owned(),
            "a name that does not resolve",
        ),
    ];
    println!("{:<6} {:<30} {:<32} result", "method", "path", "upstream");
    println!("{}", "─".repeat(110));
    for (method, url, what) in calls {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&url)
            .body(Full::new(Bytes::from_static(b"{\"sku\":42}")))
            .unwrap();
        let start = Instant::now();
        let result = api_client.clone().oneshot(req).await;
        let took = start.elapsed().as_millis();
        let path = url.split_once("//").map_or(url.as_str(), |(_, rest)| rest);
        let outcome = match result {
            Ok(res) => {
                let attempts = Attempts::of(&res);
                let status = res.status();
                let body = res
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                format!(
                    "{status} {:?} after {attempts} attempt(s), {took} ms",
                    String::from_utf8_lossy(&body)
                )
            }
            Err(err) => format!(
                "{} ({}) after {} attempt(s), {took} ms; not retried: {}",
                err.kind(),
                err.phase(),
                err.attempts(),
                err.retry_denied().map_or("-", |r| r.as_str()),
            ),
        };
        println!("{method:<6} {path:<30} {what:<32} {outcome}");
    }
    drop(down);
}

/// An API on loopback that misbehaves by path.
async fn flaky_api() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, flaky_calls.clone()));
        }
    });
    addr
}

async fn answer(mut stream: TcpStream, flaky_calls: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = stream.read(&mut buf).await else {
        return;
    };
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/");
    let reply: &[u8] = match path {
        "/flaky" if flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 => {
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 4\r\n\r\nbusy"
        }
        "/flaky" => b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nin stock",
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        "/orders" => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    };
    let _ = stream.write_all(reply).await;
}
