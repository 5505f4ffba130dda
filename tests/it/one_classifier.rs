//! One classifier for the whole stack, and statuses that say what was answered:
//! a classifier set on the outermost layer decides for every layer below it
//! (retries, endpoint health), and the status in a `GatewayError` is always the
//! status the client got. Real hyper-util clients against real loopback ports.

use crate::support::{Counting, Upload, hyper_client, refused_port};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use std::sync::{Arc, Mutex};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::classify::{Classifier, chain};
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy, UpstreamsLayer};
use tower_bad_gateway::{BadGatewayLayer, BoxError, ErrorKind, GatewayError};

/// A user's rule: a refused connection means the service is switched off here,
/// which is not retried and says nothing of the endpoint's health.
fn refused_means_switched_off() -> Classifier {
    Classifier::new().rule(|err, _phase| {
        chain(err)
            .any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
            })
            .then_some(ErrorKind::DestinationUnavailable)
    })
}

/// `BadGateway(outer) → Retry(inner, no backoff) → counting hyper-util client`
/// against a refused port: the answer's error, and how many calls the client got.
async fn refused_through(
    outer: Classifier,
    inner: Classifier,
) -> (Response<impl Sized>, GatewayError, usize) {
    let port = refused_port();
    let client = Counting::new(hyper_client::<ReplayBody<Upload>>());
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new().classifier(outer))
        .layer(RetryLayer::new(
            RetryPolicy::new().no_backoff().classifier(inner),
        ))
        .service(client.clone());
    let req = Request::get(format!("http://{}/", port.addr))
        .body(Upload::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let err = res.extensions().get::<GatewayError>().unwrap().clone();
    (res, err, client.calls())
}

/// `BadGateway(outer) → Retry(1 attempt) → Upstreams(one endpoint, ejected after
/// one failure) → hyper-util client` against a refused port: the status, and the
/// endpoint's health after.
async fn refused_endpoint(outer: Classifier) -> (StatusCode, Health) {
    let port = refused_port();
    let set = EndpointSet::from_urls([format!("http://{}", port.addr)])
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(1));
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new().classifier(outer))
        .layer(RetryLayer::new(RetryPolicy::new().max_attempts(1)))
        .layer(UpstreamsLayer::new(set.clone()))
        .service(hyper_client::<ReplayBody<Upload>>());
    let res = svc
        .oneshot(Request::get("/").body(Upload::empty()).unwrap())
        .await
        .unwrap();
    (res.status(), set.health().remove(0).1)
}

/// Before: the retry layer classified with its own default classifier, retried the
/// refusal three times, and the outer layer kept that inner `connection_refused`.
#[tokio::test]
async fn a_classifier_on_the_outer_layer_decides_what_the_retry_layer_below_does() {
    let (res, err, calls) = refused_through(refused_means_switched_off(), Classifier::new()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=destination_unavailable"
    );
    assert_eq!(err.kind(), ErrorKind::DestinationUnavailable);
    assert_eq!(calls, 1, "the user's kind is not retried");
}

/// Before: the endpoint set judged with its default classifier, counted the
/// refusal, and ejected the endpoint the user's rule says is not at fault.
#[tokio::test]
async fn a_classifier_on_the_outer_layer_decides_what_counts_against_an_endpoint() {
    let (status, health) = refused_endpoint(refused_means_switched_off()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        matches!(health, Health::Healthy),
        "not the endpoint's fault: {health:?}"
    );

    // The control: without the rule, the same refusal ejects it.
    let (status, health) = refused_endpoint(Classifier::new()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(matches!(health, Health::Ejected { .. }), "{health:?}");
}

/// Rules given to two layers both apply, the outer layer's first.
#[tokio::test]
async fn rules_on_two_layers_both_apply_the_outer_first() {
    // The inner rule alone would say `ConnectionLimitReached` (retried); the outer
    // one decides first.
    let inner_rule = || Classifier::new().rule(|_, _| Some(ErrorKind::ConnectionLimitReached));
    let (_, err, calls) = refused_through(refused_means_switched_off(), inner_rule()).await;
    assert_eq!(err.kind(), ErrorKind::DestinationUnavailable);
    assert_eq!(calls, 1);

    // The inner rule still decides what the outer one passes on.
    let unrelated = Classifier::new().rule(|_, _| None);
    let (_, err, calls) = refused_through(unrelated, inner_rule()).await;
    assert_eq!(err.kind(), ErrorKind::ConnectionLimitReached);
    assert_eq!(calls, 3, "retried as the inner rule says");
}

type Refused = Response<http_body_util::Empty<Bytes>>;

fn refusing()
-> impl Service<Request<()>, Response = Refused, Error = BoxError, Future: Send> + Clone {
    tower::service_fn(|_req: Request<()>| async {
        Err::<Refused, BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
    })
}

/// Before: the hook saw 502 while the custom renderer answered 503.
#[tokio::test]
async fn the_hook_sees_the_status_a_custom_renderer_answered() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let renderer = Renderer::custom(|_err, _info| {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Bytes::from_static(b"later"))
            .unwrap()
    });
    let svc = ServiceBuilder::new()
        .layer(
            BadGatewayLayer::new()
                .renderer(renderer)
                .on_failure(move |err| log.lock().unwrap().push(err.status())),
        )
        .service(refusing());
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<GatewayError>().unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(*seen.lock().unwrap(), [StatusCode::SERVICE_UNAVAILABLE]);
}

/// Before: `with_status` was overwritten by every render.
#[tokio::test]
async fn a_status_given_to_the_error_is_the_status_answered() {
    let given = tower::service_fn(|_req: Request<()>| async {
        let err = GatewayError::new(ErrorKind::ConnectionRefused)
            .with_status(tower_bad_gateway::ErrorStatus::TOO_MANY_REQUESTS);
        Err::<Refused, BoxError>(err.into())
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = BadGatewayLayer::new().on_failure(move |err| log.lock().unwrap().push(err.status()));
    let res = tower::Layer::layer(&svc, given)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(*seen.lock().unwrap(), [StatusCode::TOO_MANY_REQUESTS]);
}

/// A per-kind status is what the hook and the extension say too.
#[tokio::test]
async fn a_per_kind_status_is_what_the_error_says() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(
            BadGatewayLayer::new()
                .renderer(Renderer::new().status(
                    ErrorKind::ConnectionRefused,
                    tower_bad_gateway::ErrorStatus::GATEWAY_TIMEOUT,
                ))
                .on_failure(move |err| log.lock().unwrap().push(err.status())),
        )
        .service(refusing());
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(*seen.lock().unwrap(), [StatusCode::GATEWAY_TIMEOUT]);
}
