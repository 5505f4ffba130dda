//! `RetryLayer` between `BadGatewayLayer` and a real hyper-util client, against
//! upstreams on loopback that count (and record) what they receive.

use crate::support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{After, Recorder, Script, Upload, Upstream, collect, refused_port};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::retry::{ReplayBody, RetryBudget, RetryLayer, RetryPolicy};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{Attempts, BadGatewayLayer, ErrorKind, GatewayError, RetryDenied};

type UpstreamClient = Client<HttpConnector, ReplayBody<Upload>>;

/// What came back through the whole stack.
struct Answer {
    status: StatusCode,
    attempts: Option<u32>,
    error: Option<GatewayError>,
    body: Bytes,
    took: Duration,
}

/// BadGateway → Retry(policy) → 2 s attempt timeout → `inner`.
async fn send<S>(policy: RetryPolicy, inner: S, req: Request<Upload>) -> Answer
where
    S: Service<Request<ReplayBody<Upload>>, Response = http::Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<tower_bad_gateway::BoxError>,
    S::Future: Send,
{
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(RetryLayer::new(policy))
        .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)))
        .service(inner);
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let took = start.elapsed();
    let status = res.status();
    let attempts = Some(Attempts::of(&res));
    let error = res.extensions().get::<GatewayError>().cloned();
    let body = collect(res.into_body()).await.unwrap_or_default();
    Answer {
        status,
        attempts,
        error,
        body,
        took,
    }
}

fn client() -> UpstreamClient {
    support::hyper_client()
}

fn request(method: Method, url: &str, body: Upload) -> Request<Upload> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .unwrap()
}

/// Retries without waiting, so the tests measure behaviour, not backoff.
fn fast() -> RetryPolicy {
    RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO)
}

#[tokio::test]
async fn a_get_through_two_resets_then_success_is_200_after_three_requests() {
    let ok = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let upstream = Upstream::scripted(
        vec![
            (vec![], After::Reset),
            (vec![], After::Reset),
            (vec![ok], After::Hang),
        ],
        Duration::ZERO,
    )
    .await;
    let answer = send(
        RetryPolicy::new(),
        client(),
        request(Method::GET, &upstream.url("/"), Upload::empty()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ok");
    assert_eq!(answer.attempts, Some(3));
    assert_eq!(upstream.requests(), 3);
}

/// The head a retry sends is the first attempt's, field for field and in order:
/// repeated names, empty and non-ASCII values included (the retry layer keeps it
/// packed, not as a map).
#[tokio::test]
async fn a_retry_sends_the_first_attempts_header_fields_in_their_order() {
    let upstream = Recorder::start(vec![Script::Drop, Script::Respond(200, vec![], "ok")]).await;
    let mut req = request(Method::GET, &upstream.url("/q?a=1"), Upload::empty());
    for (name, value) in [
        ("accept", &b"text/html"[..]),
        ("x-tenant", b"acme"),
        ("accept", b"*/*"),
        ("x-empty", b""),
        ("x-tenant", b"beta"),
        ("x-latin", b"caf\xe9"),
        ("authorization", b"Bearer t0ken"),
    ] {
        let value = http::HeaderValue::from_bytes(value).unwrap();
        req.headers_mut().append(name, value);
    }
    let answer = send(fast(), client(), req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.attempts, Some(2));
    let fields = |m: &http::HeaderMap| {
        m.iter()
            .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
    };
    let seen = upstream.headers();
    assert_eq!(seen.len(), 2);
    assert_eq!(fields(&seen[1]), fields(&seen[0]));
    assert!(fields(&seen[1]).contains(&"x-tenant: beta".to_owned()));
    assert_eq!(seen[1]["x-latin"].as_bytes(), b"caf\xe9");
}

#[tokio::test]
async fn a_post_reset_after_upstream_read_it_is_502_and_sent_exactly_once() {
    let upstream = Recorder::start(vec![Script::Drop]).await;
    let body = Upload::pattern(1000, 100, true);
    let answer = send(
        fast(),
        client(),
        request(Method::POST, &upstream.url("/orders"), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let err = answer.error.unwrap();
    assert_eq!(err.kind(), ErrorKind::ConnectionTerminated);
    assert_eq!(err.retry_denied(), Some(RetryDenied::MaybeSent));
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        upstream.received().len(),
        1,
        "a POST that may have been processed is never sent twice"
    );
}

#[tokio::test]
async fn a_post_to_a_refused_port_is_retried_then_502_connection_refused() {
    let port = refused_port();
    let answer = send(
        fast(),
        client(),
        request(
            Method::POST,
            &format!("http://{}/", port.addr),
            Upload::empty(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let err = answer.error.unwrap();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(
        err.attempts(),
        3,
        "never reached upstream: retried whatever the method"
    );
    assert_eq!(err.retry_denied(), Some(RetryDenied::AttemptsExhausted));
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_when_opted_in() {
    let upstream = Recorder::start(vec![
        Script::Drop,
        Script::Drop,
        Script::Respond(201, vec![], "created"),
    ])
    .await;
    let req = || {
        let mut req = request(
            Method::POST,
            &upstream.url("/orders"),
            Upload::pattern(100, 10, true),
        );
        req.headers_mut()
            .insert("idempotency-key", "4b3f-77".parse().unwrap());
        req
    };
    let answer = send(fast().idempotency_key(true), client(), req()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(upstream.received().len(), 3);
    assert!(
        upstream
            .received()
            .iter()
            .all(|(_, body)| body.len() == 100)
    );

    let upstream = Recorder::start(vec![Script::Drop]).await;
    let answer = send(fast(), client(), {
        let mut r = request(Method::POST, &upstream.url("/orders"), Upload::empty());
        r.headers_mut()
            .insert("idempotency-key", "4b3f-78".parse().unwrap());
        r
    })
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        upstream.received().len(),
        1,
        "without the opt-in the key is not trusted"
    );
}

/// The first attempt is refused (a real refused connection), the second reaches a
/// real upstream: it must receive the whole 1 MiB body, byte for byte. The body's
/// length is known and over the 64 KiB replay bound, so it is never buffered: it
/// can be retried because no attempt had read any of it.
#[tokio::test]
async fn a_one_mib_post_survives_a_refused_connection_byte_for_byte() {
    let port = refused_port();
    let upstream = Recorder::start(vec![Script::Respond(200, vec![], "stored")]).await;
    let (refused, good) = (port.addr, upstream.addr);
    let calls = Arc::new(AtomicUsize::new(0));
    let client = client();
    let router = tower::service_fn(move |mut req: Request<ReplayBody<Upload>>| {
        let target = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            refused
        } else {
            good
        };
        *req.uri_mut() = format!("http://{target}/upload").parse().unwrap();
        client.request(req)
    });
    let body = Upload::pattern(1 << 20, 16 * 1024, true);
    let answer = send(
        fast(),
        router,
        request(Method::POST, "http://upstream/upload", body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.attempts, Some(2));
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    let expected: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    assert!(
        received[0].1 == expected,
        "the upstream got a different body"
    );
}

#[tokio::test]
async fn a_streamed_body_within_the_bound_is_replayed_byte_for_byte() {
    let upstream = Recorder::start(vec![Script::Drop, Script::Respond(200, vec![], "ok")]).await;
    let body = Upload::pattern(32 * 1024, 1000, false);
    let answer = send(
        fast(),
        client(),
        request(Method::PUT, &upstream.url("/doc"), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    let expected: Vec<u8> = (0..32 * 1024).map(|i| (i % 251) as u8).collect();
    assert!(
        received.iter().all(|(_, b)| *b == expected),
        "a replay differs from the original"
    );
}

#[tokio::test]
async fn a_body_over_the_bound_is_not_retried_and_never_sent_truncated() {
    let upstream = Recorder::start(vec![Script::Drop]).await;
    let body = Upload::pattern(128 * 1024, 4096, false);
    let answer = send(
        fast(),
        client(),
        request(Method::PUT, &upstream.url("/doc"), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let err = answer.error.unwrap();
    assert_eq!(err.retry_denied(), Some(RetryDenied::BodyNotReplayable));
    let received = upstream.received();
    assert_eq!(received.len(), 1, "no second, truncated copy");
    assert_eq!(received[0].1.len(), 128 * 1024);
}

#[tokio::test]
async fn a_503_with_retry_after_1_waits_about_a_second_then_succeeds() {
    let upstream = Recorder::start(vec![
        Script::Respond(503, vec![("retry-after", "1")], "busy"),
        Script::Respond(200, vec![], "ok"),
    ])
    .await;
    let policy = fast().retry_on(StatusCode::SERVICE_UNAVAILABLE);
    let answer = send(
        policy,
        client(),
        request(Method::GET, &upstream.url("/"), Upload::empty()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.attempts, Some(2));
    assert!(
        answer.took >= Duration::from_secs(1),
        "retried after {:?}",
        answer.took
    );
}

#[tokio::test]
async fn a_503_with_retry_after_3600_comes_straight_back() {
    let upstream = Recorder::start(vec![Script::Respond(
        503,
        vec![("retry-after", "3600")],
        "busy",
    )])
    .await;
    let policy = fast().retry_on(StatusCode::SERVICE_UNAVAILABLE);
    let answer = send(
        policy,
        client(),
        request(Method::GET, &upstream.url("/"), Upload::empty()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.body, "busy", "the upstream's own answer");
    assert_eq!(answer.attempts, Some(1));
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn statuses_are_not_retried_unless_opted_in() {
    let upstream = Recorder::start(vec![Script::Respond(503, vec![], "busy")]).await;
    let answer = send(
        fast(),
        client(),
        request(Method::GET, &upstream.url("/"), Upload::empty()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.received().len(), 1);
}

/// A full outage: every attempt fails. With a 20% budget and a floor of 1 retry a
/// second over a 10 s window, 300 requests may make at most 300 + 60 + 10 attempts,
/// where an unbudgeted 3-attempt policy would make 900.
#[tokio::test]
async fn under_a_full_outage_the_budget_bounds_upstream_attempts() {
    let upstream = Recorder::start(vec![Script::Drop]).await;
    let policy = RetryPolicy::new()
        .backoff(Duration::ZERO, Duration::ZERO)
        .budget(RetryBudget::new(0.2, 1, Duration::from_secs(10)));
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(RetryLayer::new(policy))
        .service(client());
    let mut denied_by_budget = 0;
    for _ in 0..300 {
        let req = request(Method::GET, &upstream.url("/"), Upload::empty());
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
        let err = res.extensions().get::<GatewayError>().unwrap();
        denied_by_budget += usize::from(err.retry_denied() == Some(RetryDenied::BudgetExhausted));
    }
    let attempts = upstream.received().len();
    assert!(
        attempts <= 370,
        "{attempts} attempts: the budget was exceeded"
    );
    assert!(
        attempts >= 360,
        "{attempts} attempts: the budget was not used"
    );
    assert!(
        denied_by_budget > 200,
        "{denied_by_budget} requests were refused a retry by the budget"
    );
}

#[tokio::test]
async fn every_retry_emits_a_tracing_event_with_kind_attempt_and_delay() {
    let events = support::EventLog::install();
    let port = refused_port();
    let policy = RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1));
    let answer = send(
        policy,
        client(),
        request(
            Method::GET,
            &format!("http://{}/", port.addr),
            Upload::empty(),
        ),
    )
    .await;
    assert_eq!(
        answer.attempts,
        Some(3),
        "the synthetic answer carries the attempt count too"
    );
    let retries: Vec<String> = events
        .messages()
        .into_iter()
        .filter(|e| e.contains("retrying"))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:#?}");
    for (i, event) in retries.iter().enumerate() {
        assert!(event.contains("error.type=connection_refused"), "{event}");
        assert!(event.contains(&format!("attempt={}", i + 1)), "{event}");
        assert!(event.contains("delay_ms="), "{event}");
    }
}

/// Every attempt, retries included, carries the request's deadline and its other
/// extensions (retries rebuild them from the parts kept aside).
#[tokio::test]
async fn every_attempt_carries_the_deadline_and_the_extensions() {
    use std::sync::Mutex;
    use tower_bad_gateway::deadline::Deadline;
    use tower_bad_gateway::proxy::ClientAddr;

    #[derive(Clone, PartialEq, Debug)]
    struct Tenant(&'static str);

    type Seen = Vec<(Option<Deadline>, Option<ClientAddr>, Option<Tenant>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let refusing = tower::service_fn(move |req: Request<ReplayBody<Upload>>| {
        log.lock().unwrap().push((
            req.extensions().get::<Deadline>().copied(),
            req.extensions().get::<ClientAddr>().copied(),
            req.extensions().get::<Tenant>().cloned(),
        ));
        std::future::ready(Err::<http::Response<http_body_util::Empty<Bytes>>, _>(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))
    });
    let deadline = Deadline::after(Duration::from_secs(60));
    let client = ClientAddr("192.0.2.7:50123".parse().unwrap());
    // The deadline and the client's address alone are kept without a copy of
    // the map, and put back; any other extension makes the map copied.
    for (client, tenant) in [
        (None, None),
        (Some(client), None),
        (None, Some(Tenant("acme"))),
        (Some(client), Some(Tenant("acme"))),
    ] {
        seen.lock().unwrap().clear();
        let mut req = request(Method::GET, "http://upstream/", Upload::empty());
        req.extensions_mut().insert(deadline);
        if let Some(client) = client {
            req.extensions_mut().insert(client);
        }
        if let Some(tenant) = tenant.clone() {
            req.extensions_mut().insert(tenant);
        }
        let svc = RetryLayer::new(fast()).layer(refusing.clone());
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(err.attempts(), 3);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(Some(deadline), client, tenant); 3]
        );
    }
}

/// On its own, `Retry` gives up with an error that is timed over all its attempts
/// and names the upstream, although the last attempt took the request head.
#[tokio::test]
async fn retry_alone_times_its_error_and_names_the_next_hop() {
    let upstream = Upstream::scripted(vec![(vec![], After::Hang); 3], Duration::ZERO).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            fast().retry_on(ErrorKind::ResponseHeaderTimeout),
        ))
        .layer(TimeoutLayer::new().attempt_timeout(Duration::from_millis(60)))
        .service(client());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::GET, &upstream.url("/"), Upload::empty()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseHeaderTimeout);
    assert_eq!(err.attempts(), 3);
    // Three attempts of 60 ms each.
    assert!(
        err.elapsed() >= Duration::from_millis(180),
        "{:?}",
        err.elapsed()
    );
    assert_eq!(err.next_hop().unwrap().as_str(), upstream.authority());
}

/// In `GatewayLayer`, where `Retry` and `BadGateway` both time from the start, the error
/// in the answer still covers every attempt and names the upstream.
#[tokio::test]
async fn the_gateway_layer_error_is_timed_over_all_attempts_and_names_the_next_hop() {
    let upstream = Upstream::scripted(vec![(vec![], After::Hang); 2], Duration::ZERO).await;
    let mut svc = tower_bad_gateway::GatewayLayer::new()
        .retry_policy(fast())
        .max_attempts(2)
        .attempt_timeout(Duration::from_millis(100))
        .retry_timeouts(true)
        .layer(support::hyper_client::<
            tower_bad_gateway::write_timeout::UploadBody<ReplayBody<Upload>>,
        >());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(request(Method::GET, &upstream.url("/"), Upload::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.attempts(), 2);
    // Two attempts of 100 ms each.
    assert!(
        err.elapsed() >= Duration::from_millis(200),
        "{:?}",
        err.elapsed()
    );
    assert_eq!(err.next_hop().unwrap().as_str(), upstream.authority());
}
