//! A client that goes away cancels the upstream exchange: through the
//! `reverse_proxy` example, the upstream sees its connection closed (HTTP/1.1) or
//! its stream reset (HTTP/2) soon after, whether the gateway was waiting for the
//! head, streaming the body, or waiting out a retry's backoff; and nothing is held
//! for it afterwards.
//!
//! Each test waits for events, not for time: the client leaves once the upstream
//! has the request (or the gateway is streaming, or in its backoff), and the
//! upstream's close is awaited with a bound far below the gateway's own timeouts,
//! which are set to ten minutes so that only the client leaving can explain it.

use crate::reverse_proxy::reverse_proxy::{self, Options};
use crate::support::{Frozen, Recorder, Script, within};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The proxy's options with no timer that could close an upstream connection
/// during a test: whatever closes it is the client's leaving.
fn patient(options: Options) -> Options {
    Options {
        timeout: Duration::from_secs(600),
        body_idle: Duration::from_secs(600),
        ..options
    }
}

async fn proxy(upstream: SocketAddr, options: Options) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uri = format!("http://{upstream}").parse().unwrap();
    let app = reverse_proxy::app(&patient(options), &[uri]).unwrap();
    tokio::spawn(tower_bad_gateway::proxy::serve(
        listener,
        app,
        std::future::pending(),
    ));
    addr
}

/// What an upstream saw, as events: a request (head read, or stream accepted),
/// and the end of it (connection closed, or stream reset).
#[derive(Clone, Default)]
struct Seen {
    request: Arc<Notify>,
    ended: Arc<Notify>,
}

/// An HTTP/1.1 upstream that reads a request head, then answers with `reply`
/// (possibly nothing) and, if `drip`, a body byte every 50 ms for ever.
async fn upstream(reply: &'static str, drip: bool) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let events = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                events.request.notify_one();
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
                events.ended.notify_one();
            });
        }
    });
    (addr, seen)
}

/// Sends a GET over a raw connection and returns it.
async fn ask(gateway: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(gateway).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await
        .unwrap();
    client
}

/// Reads an answer's head and then `body` bytes of its body.
async fn read_head_and(client: &mut TcpStream, body: usize) {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(client.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let mut got = vec![0; body];
    client.read_exact(&mut got).await.unwrap();
}

#[tokio::test]
async fn a_client_leaving_while_the_gateway_waits_for_the_head_closes_the_upstream_connection() {
    let (addr, seen) = upstream("", false).await;
    let gateway = proxy(addr, Options::default()).await;
    let client = ask(gateway).await;
    within("the request reaching the upstream", seen.request.notified()).await;
    drop(client);
    within(
        "the upstream seeing its connection closed after the client left",
        seen.ended.notified(),
    )
    .await;
}

#[tokio::test]
async fn a_client_leaving_mid_body_closes_the_upstream_connection() {
    // The head and a first body byte at once, then a byte every 50 ms.
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nx";
    let (addr, seen) = upstream(head, true).await;
    let gateway = proxy(addr, Options::default()).await;
    // Read the head and some of the body, then go.
    let mut client = ask(gateway).await;
    within("the head and 3 body bytes", read_head_and(&mut client, 3)).await;
    drop(client);
    within(
        "the upstream seeing its connection closed after the client left",
        seen.ended.notified(),
    )
    .await;
}

/// On a frozen clock: the backoff (Retry-After: 1) cannot run out while the test
/// works, however slow the machine; the client leaves once the first attempt's
/// 503 is back; the proof that no retry follows is the gateway dropping the
/// request, then the clock moved well past the backoff with no second attempt.
#[tokio::test(start_paused = true)]
async fn a_client_leaving_during_a_retry_backoff_stops_the_retry() {
    use tower::Layer;
    use tower_bad_gateway::GatewayLayer;
    use tower_bad_gateway::retry::RetryPolicy;
    let clock = Frozen::hold();
    // 503 with Retry-After: 1, which the policy honours: the retry waits a second.
    let upstream = Recorder::start(vec![Script::Respond(
        503,
        vec![("retry-after", "1")],
        "busy",
    )])
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<tower_bad_gateway::UpstreamBody<axum::body::Body>>();
    // The client, counting the attempts and telling when one is answered.
    let (attempts, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let client = tower::ServiceBuilder::new()
        .map_request({
            let attempts = attempts.clone();
            move |req| {
                attempts.fetch_add(1, Ordering::SeqCst);
                req
            }
        })
        .map_future({
            let answered = answered.clone();
            move |attempt| {
                let answered = answered.clone();
                async move {
                    let result = attempt.await;
                    answered.notify_one();
                    result
                }
            }
        })
        .service(client);
    // The gateway, telling when it drops (or ends) a request.
    let dropped = Arc::new(Notify::new());
    let target = upstream.addr;
    let gateway = tower::ServiceBuilder::new()
        .map_future({
            let dropped = dropped.clone();
            move |answer| {
                let guard = NotifyOnDrop(dropped.clone());
                async move {
                    let _guard = guard;
                    answer.await
                }
            }
        })
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

    let client = ask(addr).await;
    within("the first attempt's 503", answered.notified()).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    // The gateway is in its backoff now: the clock has not moved.
    drop(client);
    within(
        "the gateway dropping the request after its client left",
        dropped.notified(),
    )
    .await;
    // Well past the Retry-After: a retry that outlived its request would go now.
    clock.advance(Duration::from_secs(5)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the retry went out after its client left"
    );
    let seen: Vec<Bytes> = upstream.received().into_iter().map(|(_, b)| b).collect();
    assert_eq!(seen.len(), 1, "the retry went out after its client left");
}

/// Notifies when dropped.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn a_client_leaving_resets_the_upstream_http2_stream() {
    // An h2 upstream that never answers and tells when a stream is reset.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let events = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let events = events.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let events = events.clone();
                    events.request.notify_one();
                    tokio::spawn(async move {
                        let _ = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
                        events.ended.notify_one();
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
    let client = ask(gateway).await;
    within("the stream reaching the upstream", seen.request.notified()).await;
    drop(client);
    within(
        "the upstream stream reset after the client left",
        seen.ended.notified(),
    )
    .await;
}
