//! HTTP/2 upstreams (the `h2` crate as a real server on loopback) behind the
//! hyper-util client with `http2_only`: a refused stream provably never reached
//! the upstream application; a GOAWAY after the request was read maybe did; a
//! reset stream (CANCEL, INTERNAL_ERROR) maybe did; a graceful GOAWAY under load
//! loses nothing; a full MAX_CONCURRENT_STREAMS never holds a request past its
//! attempt timeout.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, RequestSent};

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// `RST_STREAM(REFUSED_STREAM)` on every request.
    RefuseStreams,
    /// Read the request, then `GOAWAY(INTERNAL_ERROR)` and close.
    GoAwayAfterRequest,
}

/// An h2 server; counts the requests it received.
async fn h2_upstream(misbehaviour: Misbehaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match misbehaviour {
                        Misbehaviour::RefuseStreams => {
                            respond.send_reset(h2::Reason::REFUSED_STREAM)
                        }
                        Misbehaviour::GoAwayAfterRequest => {
                            conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                std::future::poll_fn(|cx| conn.poll_closed(cx)),
                            )
                            .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

async fn call(addr: SocketAddr) -> GatewayError {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(5)))
        .service(client);
    let req = http::Request::post(format!("http://{addr}/"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res: Response<_> = svc.ready().await.unwrap().call(req).await.unwrap();
    res.extensions()
        .get::<GatewayError>()
        .cloned()
        .expect("a synthetic answer")
}

#[tokio::test]
async fn a_refused_stream_is_refused_stream_and_provably_not_sent() {
    let (addr, _) = h2_upstream(Misbehaviour::RefuseStreams).await;
    let err = call(addr).await;
    assert_eq!(err.kind(), ErrorKind::RefusedStream, "{err:?}");
    assert_eq!(err.kind().as_str(), "connection_terminated");
    assert_eq!(err.request_sent(), RequestSent::No);
}

#[tokio::test]
async fn a_goaway_with_an_error_after_the_request_is_connection_terminated_maybe_sent() {
    let (addr, received) = h2_upstream(Misbehaviour::GoAwayAfterRequest).await;
    let err = call(addr).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        1,
        "the upstream saw the request"
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionTerminated, "{err:?}");
    assert_ne!(
        err.request_sent(),
        RequestSent::No,
        "it may have been processed"
    );
}

/// What an [`h2_server`] does with each stream.
#[derive(Clone, Copy, Debug)]
enum Stream {
    /// Read the request, then `RST_STREAM` with this reason.
    Reset(h2::Reason),
    /// Never answer.
    Stall,
}

/// An h2 server whose streams do `each`, allowing `max_streams` concurrent
/// streams. Returns its address and the `x-id`s it saw.
async fn h2_server(
    each: Stream,
    max_streams: u32,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::Builder::new()
                    .max_concurrent_streams(max_streams)
                    .handshake::<_, Bytes>(stream)
                    .await
                else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let id = req
                        .headers()
                        .get("x-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    log.lock().unwrap().push(id);
                    tokio::spawn(async move {
                        match each {
                            Stream::Reset(reason) => respond.send_reset(reason),
                            Stream::Stall => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                drop(respond);
                            }
                        }
                    });
                }
            });
        }
    });
    (addr, seen)
}

type GatewayBody = tower_bad_gateway::UpstreamBody<Full<Bytes>>;

type H2Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    GatewayBody,
>;

fn h2_client() -> H2Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<GatewayBody>()
}

fn h2_gateway(attempts: u32, attempt_timeout: Duration) -> tower_bad_gateway::Gateway<H2Client> {
    gateway_over(h2_client(), attempts, attempt_timeout)
}

fn gateway_over(
    client: H2Client,
    attempts: u32,
    attempt_timeout: Duration,
) -> tower_bad_gateway::Gateway<H2Client> {
    use tower::Layer;
    tower_bad_gateway::GatewayLayer::new()
        .max_attempts(attempts)
        .retry_policy(
            tower_bad_gateway::retry::RetryPolicy::new()
                .backoff(Duration::ZERO, Duration::ZERO)
                .no_budget(),
        )
        .attempt_timeout(attempt_timeout)
        .layer(client)
}

async fn send_h2<S, B>(
    svc: &S,
    addr: SocketAddr,
    method: http::Method,
    id: &str,
) -> (u16, String, String)
where
    S: Service<
            http::Request<Full<Bytes>>,
            Response = Response<B>,
            Error = std::convert::Infallible,
        > + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/"))
        .header("x-id", id)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let proxy_status = res
        .headers()
        .get("proxy-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        proxy_status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn a_reset_with_cancel_or_internal_error_may_have_been_processed_so_only_idempotent_requests_go_again()
 {
    for reason in [h2::Reason::CANCEL, h2::Reason::INTERNAL_ERROR] {
        let (addr, seen) = h2_server(Stream::Reset(reason), 100).await;
        let svc = h2_gateway(3, Duration::from_secs(5));
        let (status, proxy_status, _) = send_h2(&svc, addr, http::Method::POST, "post").await;
        assert_eq!(status, 502, "{reason:?}");
        assert!(
            proxy_status.ends_with("error=connection_terminated"),
            "{reason:?}: {proxy_status}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "{reason:?}: the POST went once"
        );
        let (status, _, _) = send_h2(&svc, addr, http::Method::GET, "get").await;
        assert_eq!(status, 502);
        let gets = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|id| *id == "get")
            .count();
        assert_eq!(gets, 3, "{reason:?}: the GET went three times");
    }
    // A refused stream was never processed: even a POST goes again.
    let (addr, seen) = h2_server(Stream::Reset(h2::Reason::REFUSED_STREAM), 100).await;
    let svc = h2_gateway(3, Duration::from_secs(5));
    let (status, _, _) = send_h2(&svc, addr, http::Method::POST, "post").await;
    assert_eq!(status, 502);
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the refused POST went three times"
    );
}

/// A raw HTTP/2 server that, on every connection, waits for the client's streams
/// (up to 40 ms after the first), then sends `GOAWAY(NO_ERROR)` naming the middle
/// one as its last: it answers the streams up to it and never processes those past
/// it (RFC 9113 §6.8). Returns its address and how many streams it processed.
async fn goaway_midway_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let processed = Arc::new(AtomicUsize::new(0));
    let count = processed.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let frame = |kind: u8, flags: u8, id: u32, payload: &[u8]| {
                    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
                    f.extend([kind, flags]);
                    f.extend(id.to_be_bytes());
                    f.extend(payload);
                    f
                };
                let mut preface = [0; 24];
                if stream.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let _ = stream.write_all(&frame(4, 0, 0, &[])).await; // SETTINGS
                let mut streams = Vec::new();
                let mut first_at = None;
                loop {
                    let wait = first_at.map_or(Duration::from_secs(5), |t: std::time::Instant| {
                        Duration::from_millis(40).saturating_sub(t.elapsed())
                    });
                    let mut head = [0; 9];
                    match tokio::time::timeout(wait, stream.read_exact(&mut head)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return,
                        Err(_) => break,
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let mut payload = vec![0; len];
                    if stream.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    match head[3] {
                        4 if head[4] & 1 == 0 => {
                            let _ = stream.write_all(&frame(4, 1, 0, &[])).await; // SETTINGS ACK
                        }
                        6 if head[4] & 1 == 0 => {
                            let _ = stream.write_all(&frame(6, 1, 0, &payload)).await; // PING ACK
                        }
                        1 => {
                            streams.push(id);
                            first_at.get_or_insert_with(std::time::Instant::now);
                        }
                        _ => {}
                    }
                }
                streams.sort_unstable();
                let keep = streams.len().div_ceil(2);
                let last = streams[keep - 1];
                let mut goaway = last.to_be_bytes().to_vec();
                goaway.extend(0u32.to_be_bytes()); // NO_ERROR
                let mut out = frame(7, 0, 0, &goaway);
                for &id in &streams[..keep] {
                    out.extend(frame(1, 4, id, &[0x88])); // HEADERS :status 200
                    out.extend(frame(0, 1, id, b"ok")); // DATA, END_STREAM
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let _ = stream.write_all(&out).await;
                // Let the client read it all, then close.
                let mut sink = [0; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
            });
        }
    });
    (addr, processed)
}

#[tokio::test]
async fn a_graceful_goaway_under_load_completes_the_streams_it_took_and_the_rest_go_again() {
    let (addr, processed) = goaway_midway_server().await;
    let svc = h2_gateway(10, Duration::from_secs(5));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let svc = svc.clone();
        calls.spawn(async move {
            // POSTs too: a stream past the GOAWAY's last id was never processed.
            let method = if i % 2 == 0 {
                http::Method::POST
            } else {
                http::Method::GET
            };
            (i, send_h2(&svc, addr, method, &i.to_string()).await)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (i, (status, proxy_status, body)) = done.unwrap();
        assert_eq!(status, 200, "request {i}: {proxy_status}");
        assert_eq!(body, "ok");
    }
    assert_eq!(
        processed.load(Ordering::SeqCst),
        40,
        "each request processed exactly once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_max_concurrent_streams_never_holds_a_request_past_its_attempt_timeout() {
    // One stream at a time, and it never answers.
    let (addr, seen) = h2_server(Stream::Stall, 1).await;
    // On a frozen clock: no timer fires while the sockets work, and the attempt
    // timeouts end when the test moves the clock.
    let clock = crate::support::Frozen::hold();
    // One connection: the first request holds its only stream for 2 s.
    let client = h2_client();
    let patient = gateway_over(client.clone(), 1, Duration::from_secs(2));
    let svc = gateway_over(client, 1, Duration::from_millis(300));
    let mut first =
        tokio::spawn(async move { send_h2(&patient, addr, http::Method::POST, "first").await });
    let first_arrived = || seen.lock().unwrap().contains(&"first".to_owned());
    crate::support::eventually("the first request holding the stream", first_arrived).await;
    let queued = clock.run("the queued request", async {
        let start = tokio::time::Instant::now();
        let answer = send_h2(&svc, addr, http::Method::POST, "queued").await;
        (answer, start.elapsed())
    });
    let ((status, proxy_status, _), took) = queued.await;
    assert!(took < Duration::from_millis(1500), "held {took:?}");
    assert!(!first.is_finished(), "the first is still waiting");
    // Queued in the client for a stream, then ended by the attempt timeout.
    assert_eq!(status, 504, "{proxy_status}");
    assert!(
        proxy_status.ends_with("error=http_response_timeout"),
        "{proxy_status}"
    );
    let first = clock.run("the first request", &mut first).await;
    assert_eq!(first.unwrap().0, 504);
    assert_eq!(
        *seen.lock().unwrap(),
        ["first"],
        "the queued request never reached it"
    );
}
