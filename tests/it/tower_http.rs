//! Composition with tower-http, served by axum on loopback: `TraceLayer` sees the
//! gateway's 502/504 as server errors and can log the `GatewayError`; request ids
//! set by `SetRequestIdLayer` appear in the gateway's answers.

use crate::support;

use axum::Router;
use axum::extract::Request;
use http::{HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{After, Upstream, refused_port};
use tower::ServiceBuilder;
use tower_bad_gateway::{ErrorKind, GatewayError, GatewayLayer};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Some(RequestId::new(
            HeaderValue::from_str(&format!("req-{n}")).unwrap(),
        ))
    }
}

#[derive(Default, Clone)]
struct Seen {
    failures: Arc<Mutex<Vec<String>>>,
    gateway_errors: Arc<Mutex<Vec<ErrorKind>>>,
}

async fn serve(upstream: SocketAddr, seen: Seen) -> SocketAddr {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let proxy = ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            *req.uri_mut() = format!("http://{upstream}/").parse().unwrap();
            req
        })
        .layer(
            GatewayLayer::new()
                .attempt_timeout(Duration::from_millis(200))
                .max_attempts(1),
        )
        .service(client);
    let (failures, errors) = (seen.failures.clone(), seen.gateway_errors.clone());
    let app = Router::new().fallback_service(proxy).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(Counter::default()))
            .layer(
                TraceLayer::new_for_http()
                    .on_response(
                        move |res: &http::Response<_>,
                              _latency: Duration,
                              _span: &tracing::Span| {
                            if let Some(err) = res.extensions().get::<GatewayError>() {
                                errors.lock().unwrap().push(err.kind());
                            }
                        },
                    )
                    .on_failure(
                        move |class: ServerErrorsFailureClass,
                              _latency: Duration,
                              _span: &tracing::Span| {
                            failures.lock().unwrap().push(class.to_string());
                        },
                    ),
            )
            .layer(PropagateRequestIdLayer::x_request_id()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn trace_layer_sees_502_and_504_as_failures_and_can_log_the_gateway_error() {
    let refused = refused_port();
    let stalled = Upstream::raw("", After::Hang).await;
    let seen = Seen::default();
    for (upstream, status) in [(refused.addr, 502), (stalled.addr, 504)] {
        let gateway = serve(upstream, seen.clone()).await;
        let res = reqwest::get(format!("http://{gateway}/")).await.unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
    assert_eq!(
        *seen.failures.lock().unwrap(),
        [
            "Status code: 502 Bad Gateway",
            "Status code: 504 Gateway Timeout"
        ]
    );
    assert_eq!(
        *seen.gateway_errors.lock().unwrap(),
        [
            ErrorKind::ConnectionRefused,
            ErrorKind::ResponseHeaderTimeout
        ]
    );
}

#[tokio::test]
async fn a_request_id_set_by_tower_http_is_in_the_answer() {
    let refused = refused_port();
    let gateway = serve(refused.addr, Seen::default()).await;
    let res = reqwest::get(format!("http://{gateway}/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["x-request-id"], "req-0");
    assert!(res.text().await.unwrap().contains("request id: req-0"));
}
