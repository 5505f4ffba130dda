//! A client that goes away cancels the upstream exchange: through the
//! `reverse_proxy` example, the upstream sees its connection closed (HTTP/1.1) or
//! its stream reset (HTTP/2) soon after, whether the gateway was waiting for the
//! head, streaming the body, or waiting out a retry's backoff; and nothing is held
//! for it afterwards.

use crate::reverse_proxy::reverse_proxy::{self, Options};
use crate::support::{Recorder, Script};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How soon after the client left the upstream must know: generous for a loaded
/// 2-core machine, far below "never".
const SOON: Duration = Duration::from_secs(2);

async fn proxy(upstream: SocketAddr, options: Options) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uri = format!("http://{upstream}").parse().unwrap();
    let app = reverse_proxy::app(&options, &[uri]).unwrap();
    tokio::spawn(reverse_proxy::serve(listener, app, std::future::pending()));
    addr
}

/// An HTTP/1.1 upstream that reads a request head, then answers with `reply`
/// (possibly nothing) and, if `drip`, a body byte every 50 ms for ever. Records when
/// it saw each connection close.
async fn upstream(reply: &'static str, drip: bool) -> (SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(reply.as_bytes()).await;
                let (mut read, mut write) = stream.into_split();
                let dripping = async {
                    if !drip {
                        return std::future::pending::<()>().await;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if write.write_all(b"x").await.is_err() {
                            return;
                        }
                    }
                };
                let eof = async { while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {} };
                tokio::select! {
                    () = eof => {}
                    () = dripping => {}
                }
                log.lock().unwrap().push(Instant::now());
            });
        }
    });
    (addr, closed)
}

/// Sends a GET over a raw connection, reads `read` bytes of the answer (0: none),
/// then closes the connection after `wait`. Returns when it closed.
async fn leave_after(gateway: SocketAddr, read: usize, wait: Duration) -> Instant {
    let mut client = TcpStream::connect(gateway).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0; read];
    client.read_exact(&mut got).await.unwrap();
    tokio::time::sleep(wait).await;
    drop(client);
    Instant::now()
}

async fn closed_within(closed: &Mutex<Vec<Instant>>, left: Instant) -> Duration {
    let deadline = Instant::now() + SOON + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Some(at) = closed.lock().unwrap().first() {
            return at.saturating_duration_since(left);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream never saw its connection closed");
}

#[tokio::test]
async fn a_client_leaving_while_the_gateway_waits_for_the_head_closes_the_upstream_connection() {
    let (addr, closed) = upstream("", false).await;
    let gateway = proxy(addr, Options::default()).await;
    let left = leave_after(gateway, 0, Duration::from_millis(200)).await;
    let after = closed_within(&closed, left).await;
    assert!(
        after < SOON,
        "the upstream learnt {after:?} after the client left"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_body_closes_the_upstream_connection() {
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
    let (addr, closed) = upstream(head, true).await;
    let gateway = proxy(addr, Options::default()).await;
    // Read the head and a little of the body, then go.
    let left = leave_after(gateway, 40, Duration::from_millis(200)).await;
    let after = closed_within(&closed, left).await;
    assert!(
        after < SOON,
        "the upstream learnt {after:?} after the client left"
    );
}

#[tokio::test]
async fn a_client_leaving_during_a_retry_backoff_stops_the_retry() {
    use tower::Layer;
    use tower_bad_gateway::GatewayLayer;
    use tower_bad_gateway::retry::RetryPolicy;
    // 503 with Retry-After: 1, which the policy honours: the retry waits a second.
    let upstream = Recorder::start(vec![Script::Respond(
        503,
        vec![("retry-after", "1")],
        "busy",
    )])
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<tower_bad_gateway::UpstreamBody<axum::body::Body>>();
    let target = upstream.addr;
    let gateway = tower::ServiceBuilder::new()
        .map_request(move |mut req: axum::extract::Request| {
            *req.uri_mut() = format!("http://{target}/").parse().unwrap();
            req
        })
        .service(
            GatewayLayer::new()
                .retry_policy(RetryPolicy::new().retry_on(http::StatusCode::SERVICE_UNAVAILABLE))
                .layer(client),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback_service(gateway)).await
    });
    leave_after(addr, 0, Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen: Vec<Bytes> = upstream.received().into_iter().map(|(_, b)| b).collect();
    assert_eq!(seen.len(), 1, "the retry went out after its client left");
}

#[tokio::test]
async fn a_client_leaving_resets_the_upstream_http2_stream() {
    // An h2 upstream that never answers and records when a stream is reset.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reset: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = reset.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let _ = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
                        log.lock().unwrap().push(Instant::now());
                    });
                }
            });
        }
    });
    let options = Options {
        http2: true,
        ..Options::default()
    };
    let gateway = proxy(addr, options).await;
    let left = leave_after(gateway, 0, Duration::from_millis(200)).await;
    let after = closed_within(&reset, left).await;
    assert!(
        after < SOON,
        "the stream was reset {after:?} after the client left"
    );
}
