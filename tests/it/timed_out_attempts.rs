//! A timed-out attempt counts against its endpoint whichever way `Timeout` and
//! `Upstreams` are composed; a cancelled one never does. Over a real hyper-util
//! client and a real loopback upstream that reads each request and never answers.

use crate::support::{After, TestBody, Upstream, hyper_client};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_bad_gateway::BadGatewayLayer;
use tower_bad_gateway::deadline::SetDeadlineLayer;
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy, UpstreamsLayer};

const ATTEMPT: Duration = Duration::from_millis(100);

/// A set of the one silent upstream, ejected for a minute after `failures`.
fn set_of(upstream: &Upstream, failures: u32) -> EndpointSet {
    EndpointSet::from_urls([upstream.url("").as_str()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .consecutive_failures(failures)
                .base_ejection(Duration::from_secs(60)),
        )
}

fn health(set: &EndpointSet) -> Health {
    set.health()[0].1
}

async fn status<S, B>(svc: &S) -> StatusCode
where
    S: tower::Service<Request<TestBody>, Response = Response<B>, Error = Infallible> + Clone,
{
    let req = Request::get("/slow").body(Full::default()).unwrap();
    svc.clone().oneshot(req).await.unwrap().status()
}

/// Three timed-out attempts in a row eject the endpoint (for a set that ejects
/// after three); the next request fails fast without reaching it.
async fn three_timeouts_eject<S, B>(svc: S, set: &EndpointSet, upstream: &Upstream, order: &str)
where
    S: tower::Service<Request<TestBody>, Response = Response<B>, Error = Infallible> + Clone,
{
    for i in 1..=3 {
        assert_eq!(health(set), Health::Healthy, "{order}: before timeout {i}");
        assert_eq!(status(&svc).await, 504, "{order}: attempt {i} times out");
        assert_eq!(set.in_flight(), 0, "{order}");
    }
    assert!(
        matches!(health(set), Health::Ejected { .. }),
        "{order}: three timeouts eject it: {:?}",
        health(set)
    );
    assert_eq!(
        status(&svc).await,
        503,
        "{order}: nothing healthy, fail fast"
    );
    assert_eq!(
        upstream.requests(),
        3,
        "{order}: the fourth never reached it"
    );
}

#[tokio::test]
async fn a_silent_endpoint_is_ejected_with_timeout_above_or_below_upstreams() {
    // BadGateway → Upstreams → Timeout → client: the order GatewayLayer builds.
    let upstream = Upstream::raw("", After::Hang).await;
    let set = set_of(&upstream, 3);
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(UpstreamsLayer::new(set.clone()))
        .layer(TimeoutLayer::new().attempt_timeout(ATTEMPT))
        .service(hyper_client::<TestBody>());
    three_timeouts_eject(svc, &set, &upstream, "upstreams above timeout").await;

    // BadGateway → Timeout → Upstreams → client: the Timeout drops the Upstreams
    // future, which still counts the attempt as the timeout it was.
    let upstream = Upstream::raw("", After::Hang).await;
    let set = set_of(&upstream, 3);
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(TimeoutLayer::new().attempt_timeout(ATTEMPT))
        .layer(UpstreamsLayer::new(set.clone()))
        .service(hyper_client::<TestBody>());
    three_timeouts_eject(svc, &set, &upstream, "timeout above upstreams").await;
}

#[tokio::test]
async fn an_attempt_ended_by_the_deadline_above_upstreams_counts_against_the_endpoint() {
    // No attempt timeout: the request's deadline ends the wait for the head.
    let upstream = Upstream::raw("", After::Hang).await;
    let set = set_of(&upstream, 3);
    let svc = ServiceBuilder::new()
        .layer(SetDeadlineLayer::new(ATTEMPT))
        .layer(BadGatewayLayer::new())
        .layer(TimeoutLayer::new())
        .layer(UpstreamsLayer::new(set.clone()))
        .service(hyper_client::<TestBody>());
    three_timeouts_eject(svc, &set, &upstream, "deadline above upstreams").await;
}

/// Callers that leave before the attempt's timeout (a client gone, a hedge that
/// lost) say nothing about the endpoint: however many, it stays healthy, even
/// with a set that ejects after one failure. The timeout that follows still counts.
async fn cancelled_attempts_do_not_count<S, B>(svc: S, set: &EndpointSet, order: &str)
where
    S: tower::Service<Request<TestBody>, Response = Response<B>, Error = Infallible> + Clone,
{
    for i in 1..=3 {
        let gone = tokio::time::timeout(Duration::from_millis(30), status(&svc)).await;
        assert!(gone.is_err(), "{order}: caller {i} left first");
        assert_eq!(health(set), Health::Healthy, "{order}: after cancel {i}");
        assert_eq!(
            set.in_flight(),
            0,
            "{order}: the cancelled attempt is not in flight"
        );
    }
    // Past the attempt's timeout, the same silence is the endpoint's failure.
    tokio::time::sleep(ATTEMPT).await;
    assert_eq!(
        health(set),
        Health::Healthy,
        "{order}: time alone counts nothing"
    );
    assert_eq!(status(&svc).await, 504, "{order}");
    assert!(
        matches!(health(set), Health::Ejected { .. }),
        "{order}: {:?}",
        health(set)
    );
}

/// On tokio's paused clock (it advances to the next timer whenever the runtime
/// is idle): a caller leaving 30 ms in is 30 ms in, whatever the machine's load,
/// never late enough to pass the attempt's 100 ms.
#[tokio::test(start_paused = true)]
async fn an_attempt_cancelled_before_its_timeout_never_counts_against_the_endpoint() {
    let upstream = Upstream::raw("", After::Hang).await;
    let set = set_of(&upstream, 1);
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(TimeoutLayer::new().attempt_timeout(ATTEMPT))
        .layer(UpstreamsLayer::new(set.clone()))
        .service(hyper_client::<TestBody>());
    cancelled_attempts_do_not_count(svc, &set, "timeout above upstreams").await;

    let upstream = Upstream::raw("", After::Hang).await;
    let set = set_of(&upstream, 1);
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(UpstreamsLayer::new(set.clone()))
        .layer(TimeoutLayer::new().attempt_timeout(ATTEMPT))
        .service(hyper_client::<TestBody>());
    cancelled_attempts_do_not_count(svc, &set, "upstreams above timeout").await;
}
