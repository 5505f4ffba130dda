//! gRPC's retry protocol (gRFC A6) over loopback, as a real tonic client and a
//! real HTTP/2 upstream see it: the upstream's `grpc-retry-pushback-ms` sets the
//! wait (or stops the retries), every further attempt carries
//! `grpc-previous-rpc-attempts`, a `RetryThrottle` stops retries when A6's
//! arithmetic says so, and the gateway's own `UNAVAILABLE` carries a pushback.

use crate::support::{self, Frozen, Recorder, Script, eventually, hyper_client, refused_port};

use bytes::Bytes;
use http::HeaderMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{ServiceBuilder, ServiceExt};
use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy, RetryThrottle};
use tower_bad_gateway::upstreams::{EndpointSet, HealthPolicy};
use tower_bad_gateway::{BadGatewayLayer, GatewayLayer, GrpcCode};

/// What the upstream answers a call with.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Trailers-only: this `grpc-status`, and this `grpc-retry-pushback-ms`.
    Status(u8, Option<&'static str>),
    /// `SERVING`: a head, one message, `grpc-status: 0` in the trailers.
    Serving,
}

/// `HealthCheckResponse { status: SERVING }`, framed.
const SERVING: &[u8] = b"\x00\x00\x00\x00\x02\x08\x01";

/// A raw HTTP/2 gRPC upstream on loopback that reads each call in full, records
/// its headers, and answers call n with `script[n]` (the last entry repeats).
struct GrpcUpstream {
    addr: std::net::SocketAddr,
    calls: Arc<Mutex<Vec<HeaderMap>>>,
    /// The script, and the call it starts at.
    script: Arc<Mutex<(usize, Vec<Answer>)>>,
}

impl GrpcUpstream {
    async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let script = Arc::new(Mutex::new((0, script)));
        let (log, plan) = (calls.clone(), script.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, plan) = (log.clone(), plan.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(stream).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        let answer = {
                            let mut log = log.lock().unwrap();
                            log.push(req.headers().clone());
                            let (from, script) = &*plan.lock().unwrap();
                            let n = log.len() - 1 - from;
                            script[n.min(script.len() - 1)]
                        };
                        tokio::spawn(answer_call(req, respond, answer));
                    }
                });
            }
        });
        Self {
            addr,
            calls,
            script,
        }
    }

    /// Answers the calls from now on by `script`.
    fn then(&self, script: Vec<Answer>) {
        let calls = self.calls.lock().unwrap().len();
        *self.script.lock().unwrap() = (calls, script);
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Each call's `grpc-previous-rpc-attempts`, as received.
    fn previous_attempts(&self) -> Vec<Option<String>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|h| {
                h.get("grpc-previous-rpc-attempts")
                    .map(|v| v.to_str().unwrap().to_owned())
            })
            .collect()
    }
}

async fn answer_call(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    answer: Answer,
) {
    let mut body = req.into_body();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    match answer {
        Answer::Status(code, pushback) => {
            let mut head = head.header("grpc-status", code.to_string());
            if let Some(p) = pushback {
                head = head.header("grpc-retry-pushback-ms", p);
            }
            let _ = respond.send_response(head.body(()).unwrap(), true);
        }
        Answer::Serving => {
            let Ok(mut stream) = respond.send_response(head.body(()).unwrap(), false) else {
                return;
            };
            let _ = stream.send_data(Bytes::from_static(SERVING), false);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let _ = stream.send_trailers(trailers);
        }
    }
}

/// The health service's methods are declared idempotent, so `UNAVAILABLE`
/// answers are retried; the backoff alone would wait up to 10 s.
fn policy() -> RetryPolicy {
    RetryPolicy::new()
        .retry_on(GrpcCode::Unavailable)
        .idempotent_if(|req| req.uri.path().starts_with("/grpc.health.v1.Health/"))
        .backoff(Duration::from_secs(10), Duration::from_secs(10))
}

/// One health check by a tonic client through BadGateway → Retry(policy) → a
/// tonic channel to `addr`.
async fn check(
    addr: std::net::SocketAddr,
    policy: RetryPolicy,
) -> Result<ServingStatus, tonic::Status> {
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(RetryLayer::new(policy))
        .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| {
            req.map(tonic::body::Body::new)
        })
        .service(channel(addr));
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(Duration::from_secs(60));
    let res = HealthClient::new(svc).check(req).await?;
    Ok(res.into_inner().status())
}

/// A lazily connecting tonic channel to `addr`.
fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// On a frozen clock: the retry goes exactly 120 ms after the pushback, not a
/// millisecond before, although the backoff would have waited up to 10 s.
#[tokio::test(start_paused = true)]
async fn a_pushback_of_120_ms_is_the_exact_wait_before_the_retry() {
    let events = crate::support::EventLog::install();
    let clock = Frozen::hold();
    let upstream =
        GrpcUpstream::start(vec![Answer::Status(14, Some("120")), Answer::Serving]).await;
    let call = tokio::spawn(check(upstream.addr, policy()));
    eventually("the first attempt", || upstream.calls() == 1).await;
    // The wait starts when the retry layer has read the answer, which reaches
    // it a moment after the upstream sent it: the retry event says when.
    let lines = events.lines();
    eventually("the retry decided", || {
        lines
            .messages()
            .iter()
            .any(|e| e.contains("retrying upstream request"))
    })
    .await;
    clock.advance(Duration::from_millis(119)).await;
    crate::support::real_sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream.calls(), 1, "no retry before the pushback's 120 ms");
    clock.advance(Duration::from_millis(1)).await;
    eventually("the retry at 120 ms", || upstream.calls() == 2).await;
    let served = clock.run("the call", call).await.unwrap();
    assert_eq!(served.unwrap(), ServingStatus::Serving);
}

/// Without a pushback the same answer is retried and the call served: it is the
/// pushback that stops the retry.
#[tokio::test]
async fn a_negative_pushback_stops_retries_and_the_client_gets_the_answer() {
    let retried = GrpcUpstream::start(vec![Answer::Status(14, None), Answer::Serving]).await;
    let served = check(retried.addr, policy().no_backoff()).await;
    assert_eq!(served.unwrap(), ServingStatus::Serving);
    assert_eq!(retried.calls(), 2);

    let upstream = GrpcUpstream::start(vec![Answer::Status(14, Some("-1")), Answer::Serving]).await;
    let status = check(upstream.addr, policy().no_backoff())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "-1"
    );
    assert_eq!(upstream.calls(), 1, "not retried");
}

#[tokio::test]
async fn a_malformed_pushback_stops_retries() {
    for malformed in ["soon", "1.5", "", "+20", "10ms"] {
        let upstream =
            GrpcUpstream::start(vec![Answer::Status(14, Some(malformed)), Answer::Serving]).await;
        let status = check(upstream.addr, policy().no_backoff())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{malformed:?}");
        assert_eq!(upstream.calls(), 1, "{malformed:?}: not retried");
    }
}

#[tokio::test]
async fn a_pushback_longer_than_max_retry_after_returns_the_answer_at_once() {
    let upstream =
        GrpcUpstream::start(vec![Answer::Status(14, Some("60000")), Answer::Serving]).await;
    let start = std::time::Instant::now();
    let status = check(upstream.addr, policy()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(upstream.calls(), 1);
    assert!(start.elapsed() < Duration::from_secs(3), "not waited for");
}

#[tokio::test]
async fn retried_attempts_tell_the_upstream_how_many_came_before_1_then_2() {
    let upstream = GrpcUpstream::start(vec![
        Answer::Status(14, None),
        Answer::Status(14, None),
        Answer::Serving,
    ])
    .await;
    let served = check(upstream.addr, policy().no_backoff()).await;
    assert_eq!(served.unwrap(), ServingStatus::Serving);
    assert_eq!(
        upstream.previous_attempts(),
        [None, Some("1".to_owned()), Some("2".to_owned())]
    );
}

/// A plain HTTP request retried the same way gets no gRPC metadata.
#[tokio::test]
async fn a_retried_http_request_gets_no_grpc_attempts_header() {
    let upstream = Recorder::start(vec![
        Script::Respond(503, vec![], "later"),
        Script::Respond(200, vec![], "ok"),
    ])
    .await;
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(RetryLayer::new(
            RetryPolicy::new().no_backoff().retry_on(503),
        ))
        .service(hyper_client::<ReplayBody<support::TestBody>>());
    let res = svc.oneshot(support::get(&upstream.url("/"))).await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = upstream.headers();
    assert_eq!(headers.len(), 2, "retried");
    assert!(
        headers
            .iter()
            .all(|h| !h.contains_key("grpc-previous-rpc-attempts"))
    );
}

/// A6's own example, `maxTokens` 10 and `tokenRatio` 0.1, two attempts per call,
/// every answer `UNAVAILABLE`: each attempt costs a token. 10 → 9, retried → 8;
/// → 7, retried → 6; → 5 (not above half), not retried; → 4, not retried. Then
/// 20 successes make 6.0, and a failure (→ 5.0) is still not retried; 11 more
/// make 6.1, and the next failure (→ 5.1) is.
#[tokio::test]
async fn the_throttle_stops_and_resumes_retries_exactly_as_a6_counts() {
    let throttle = RetryThrottle::new(10, 0.1);
    let policy = policy()
        .no_backoff()
        .max_attempts(2)
        .throttle(throttle.clone());
    let upstream = GrpcUpstream::start(vec![Answer::Status(14, None)]).await;
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let before = upstream.calls();
        let status = check(upstream.addr, policy.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        attempts.push(upstream.calls() - before);
    }
    assert_eq!(attempts, [2, 2, 1, 1]);
    assert_eq!(throttle.milli_tokens(), 4_000);

    let failing_call_attempts = |successes: usize| {
        let (policy, upstream) = (policy.clone(), &upstream);
        async move {
            upstream.then(vec![Answer::Serving]);
            for _ in 0..successes {
                let served = check(upstream.addr, policy.clone()).await;
                assert_eq!(served.unwrap(), ServingStatus::Serving);
            }
            upstream.then(vec![Answer::Status(14, None)]);
            let before = upstream.calls();
            check(upstream.addr, policy).await.unwrap_err();
            upstream.calls() - before
        }
    };
    assert_eq!(
        failing_call_attempts(20).await,
        1,
        "6.0 - 1 = 5.0: not retried"
    );
    assert_eq!(throttle.milli_tokens(), 5_000);
    assert_eq!(failing_call_attempts(11).await, 2, "6.1 - 1 = 5.1: retried");
    assert_eq!(throttle.milli_tokens(), 4_100);
}

/// The gateway's own `UNAVAILABLE` for a set with nothing healthy tells a tonic
/// client when to come back, in its metadata: `grpc-retry-pushback-ms` with the
/// time until the probe, to the millisecond (a frozen clock), beside the HTTP
/// answer's `Retry-After` in whole seconds.
#[tokio::test(start_paused = true)]
async fn the_gateways_unavailable_carries_a_pushback_a_tonic_client_reads() {
    let clock = Frozen::hold();
    let dead = refused_port();
    let set = EndpointSet::from_urls([format!("http://{}", dead.addr)])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .no_jitter()
                .consecutive_failures(1)
                .base_ejection(Duration::from_millis(1500)),
        );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let proxy = ServiceBuilder::new()
        .layer(GatewayLayer::new().upstreams(set).max_attempts(1))
        .service(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut client = HealthClient::new(channel(gateway));
    let call = || HealthCheckRequest {
        service: String::new(),
    };
    let refused = client.check(call()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.metadata().get("grpc-retry-pushback-ms").is_none(),
        "a refused connection knows no wait"
    );

    clock.advance(Duration::from_millis(250)).await;
    let ejected = client.check(call()).await.unwrap_err();
    assert_eq!(ejected.code(), Code::Unavailable);
    assert_eq!(
        ejected.message(),
        tower_bad_gateway::ErrorKind::DestinationUnavailable.description()
    );
    let metadata = ejected.metadata();
    assert_eq!(metadata.get("grpc-retry-pushback-ms").unwrap(), "1250");
    assert_eq!(metadata.get("retry-after").unwrap(), "2");
}
