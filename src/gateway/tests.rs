//! The order of `GatewayLayer`'s setters never changes the stack it builds.
//!
//! Every pair of setters is applied in both orders, and the two stacks are run
//! through the same probes (a refused connection, a stalled upstream, a stalled
//! body, a success) on Tokio's paused clock. Each probe records what a client sees
//! and how many attempts reached the upstream; the two orders must agree.

use super::GatewayLayer;
use crate::bad_gateway::BadGatewayLayer;
use crate::classify::Classifier;
use crate::error::{Attempts, BoxError, ErrorKind, GatewayError};
use crate::render::Renderer;
use crate::retry::{ReplayBody, RetryPolicy};
use crate::write_timeout::UploadBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

type Setter = (&'static str, fn(GatewayLayer) -> GatewayLayer);

const SETTERS: &[Setter] = &[
    ("max_attempts", |g| g.max_attempts(2)),
    ("attempt_timeout", |g| {
        g.attempt_timeout(Duration::from_millis(100))
    }),
    ("retry_timeouts", |g| g.retry_timeouts(false)),
    ("body_idle_timeout", |g| {
        g.body_idle_timeout(Duration::from_millis(50))
    }),
    ("body_total_timeout", |g| {
        g.body_total_timeout(Duration::from_millis(500))
    }),
    ("write_timeout", |g| g.write_timeout(Duration::from_secs(1))),
    ("deadline", |g| g.deadline(Duration::from_secs(30))),
    ("retry_policy", |g| {
        g.retry_policy(
            RetryPolicy::new()
                .max_attempts(4)
                .retry_on(ErrorKind::ResponseHeaderTimeout)
                .backoff(Duration::ZERO, Duration::ZERO)
                .no_budget(),
        )
    }),
    ("bad_gateway", |g| {
        g.bad_gateway(BadGatewayLayer::new().renderer(Renderer::new().proxy_name("edge")))
    }),
    ("upstreams", |g| {
        let set = crate::upstreams::EndpointSet::from_urls(["http://10.0.0.1:8080"]);
        g.upstreams(set.expect("a valid URL"))
    }),
    ("classifier", |g| {
        g.classifier(Classifier::new().rule(|err, _| {
            crate::classify::chain(err)
                .any(|e| e.to_string() == "stall")
                .then_some(ErrorKind::ConnectionLimitReached)
        }))
    }),
];

/// What a client sees of one probe, and how many attempts reached the upstream.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    proxy_status: Option<String>,
    kind: Option<ErrorKind>,
    attempts: u32,
    upstream_calls: usize,
    body: Result<Bytes, String>,
}

type ClientBody = UploadBody<ReplayBody<Empty<Bytes>>>;
type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

async fn upstream(req: Request<ClientBody>) -> Result<Response<UpstreamBody>, BoxError> {
    match req.uri().path() {
        "/refused" => Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
        "/stall-head" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(Response::new(
                Full::new(Bytes::from("late"))
                    .map_err(Into::into)
                    .boxed_unsync(),
            ))
        }
        "/stall-error" => Err(std::io::Error::other("stall").into()),
        "/stall-body" => Ok(Response::new(OneThenStall(false).boxed_unsync())),
        _ => Ok(Response::new(
            Full::new(Bytes::from("ok"))
                .map_err(Into::into)
                .boxed_unsync(),
        )),
    }
}

/// A body that sends one frame, then nothing for ever.
struct OneThenStall(bool);

impl http_body::Body for OneThenStall {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if self.0 {
            return std::task::Poll::Pending;
        }
        self.0 = true;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from("first")))))
    }
}

async fn probe(layer: &GatewayLayer, path: &str) -> Seen {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = layer.layer(tower::service_fn(move |req| {
        counted.fetch_add(1, Ordering::SeqCst);
        upstream(req)
    }));
    let req = Request::get(format!("http://upstream.test{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res: Response<_> = svc
        .oneshot(req)
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    let status = res.status().as_u16();
    let proxy_status = res
        .headers()
        .get("proxy-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let kind = res
        .extensions()
        .get::<GatewayError>()
        .map(GatewayError::kind);
    let attempts = Attempts::of(&res);
    // A body no timeout cuts would stall for ever: a minute of (paused) time
    // stands for that.
    let body = match tokio::time::timeout(Duration::from_secs(60), res.into_body().collect()).await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(e.kind().as_str().to_owned()),
        Err(_) => Err("stalled".to_owned()),
    };
    Seen {
        status,
        proxy_status,
        kind,
        attempts,
        upstream_calls: calls.load(Ordering::SeqCst),
        body,
    }
}

async fn behaviour(layer: &GatewayLayer) -> Vec<Seen> {
    let mut seen = Vec::new();
    for path in [
        "/ok",
        "/refused",
        "/stall-head",
        "/stall-error",
        "/stall-body",
    ] {
        seen.push(probe(layer, path).await);
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn every_pair_of_setters_gives_the_same_stack_in_either_order() {
    for (i, (a_name, a)) in SETTERS.iter().enumerate() {
        for (b_name, b) in &SETTERS[i + 1..] {
            let ab = b(a(GatewayLayer::new()));
            let ba = a(b(GatewayLayer::new()));
            assert_eq!(
                behaviour(&ab).await,
                behaviour(&ba).await,
                "{a_name} then {b_name}, against {b_name} then {a_name}"
            );
        }
    }
}

/// The three cases a user hit: each setter's effect survives a later call that
/// replaces a part.
#[tokio::test(start_paused = true)]
async fn gateway_settings_survive_replacing_a_part() {
    // `retry_timeouts(false)` before `attempt_timeout` keeps timeouts unretried.
    let layer = GatewayLayer::new()
        .retry_timeouts(false)
        .attempt_timeout(Duration::from_millis(100));
    let seen = probe(&layer, "/stall-head").await;
    assert_eq!((seen.status, seen.upstream_calls), (504, 1));

    // `max_attempts` before `retry_policy` still counts.
    let layer = GatewayLayer::new().max_attempts(1).retry_policy(
        RetryPolicy::new()
            .max_attempts(5)
            .backoff(Duration::ZERO, Duration::ZERO),
    );
    assert_eq!(probe(&layer, "/refused").await.upstream_calls, 1);

    // `classifier` before `bad_gateway` or `retry_policy` still classifies.
    let unavailable = Classifier::custom(|_, _| ErrorKind::DestinationUnavailable);
    for layer in [
        GatewayLayer::new()
            .classifier(unavailable.clone())
            .bad_gateway(BadGatewayLayer::new()),
        GatewayLayer::new()
            .classifier(unavailable.clone())
            .retry_policy(RetryPolicy::new()),
    ] {
        let seen = probe(&layer, "/refused").await;
        assert_eq!(seen.kind, Some(ErrorKind::DestinationUnavailable));
        assert_eq!(
            seen.upstream_calls, 1,
            "DestinationUnavailable is not retried"
        );
    }
}

/// A hand-composed stack and a `GatewayLayer` treat a timed-out attempt alike:
/// neither tries it again unless told to.
#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_only_when_opted_in() {
    let layer = GatewayLayer::new().attempt_timeout(Duration::from_millis(100));
    let seen = probe(&layer, "/stall-head").await;
    assert_eq!((seen.status, seen.upstream_calls), (504, 1));
    let seen = probe(&layer.retry_timeouts(true), "/stall-head").await;
    assert_eq!((seen.status, seen.upstream_calls), (504, 3));
}

/// Every elapsed time comes from Tokio's clock, so a paused clock drives them:
/// a stall of 1 s of virtual time is reported as 1 s, not as the microseconds
/// the test really took.
#[tokio::test(start_paused = true)]
async fn elapsed_times_follow_the_paused_clock() {
    let layer = GatewayLayer::new()
        .max_attempts(1)
        .attempt_timeout(Duration::from_secs(3))
        .deadline(Duration::from_secs(10));
    let svc = layer.layer(tower::service_fn(|_req: Request<ClientBody>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Err::<Response<UpstreamBody>, BoxError>(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
        )
    }));
    let res = svc
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.elapsed(), Duration::from_secs(1));
}

/// Upstreams sits right above Timeout here and sees every timeout as an error, so
/// the stack pays for no mark meant for an `Upstreams` below a `Timeout`.
#[tokio::test]
async fn the_client_gets_no_head_deadline_mark() {
    let layer = GatewayLayer::new()
        .attempt_timeout(Duration::from_secs(3))
        .deadline(Duration::from_secs(10))
        .upstreams(crate::upstreams::EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap());
    let svc = layer.layer(tower::service_fn(|req: Request<ClientBody>| async move {
        assert!(
            req.extensions()
                .get::<crate::timeout::HeadDeadline>()
                .is_none()
        );
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    }));
    let res = svc
        .oneshot(Request::new(Empty::<Bytes>::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
