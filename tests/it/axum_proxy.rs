//! An axum app proxying through a hyper-util client with `BadGatewayLayer`, served
//! on loopback and called by a real client: the wrapped service has
//! `Error = Infallible` and drops into `route_service`, `fallback_service` and
//! `Router::layer`.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::{any_service, get};
use http::StatusCode;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::Duration;
use support::{After, Upstream, refused_port};
use tower::ServiceBuilder;
use tower_bad_gateway::BadGatewayLayer;

/// A proxy service to `upstream`: rewrite the URI, then BadGateway, then a 300 ms
/// timeout, then the hyper-util client.
fn proxy_to(
    upstream: SocketAddr,
) -> impl tower::Service<
    Request,
    Response = http::Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<axum::BoxError>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
            req
        })
        .layer(BadGatewayLayer::new())
        .timeout(Duration::from_millis(300))
        .service(support::hyper_client::<Body>())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn fetch(gateway: SocketAddr, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{gateway}{path}"))
        .send()
        .await
        .expect("the gateway must answer, not drop the connection")
}

#[tokio::test]
async fn route_service_answers_a_refused_upstream_with_502_connection_refused() {
    let port = refused_port();
    let app = Router::new().route_service("/api", proxy_to(port.addr));
    let res = fetch(serve(app).await, "/api").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=connection_refused"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = res.text().await.unwrap();
    assert!(body.starts_with("502 Bad Gateway"), "{body}");
    assert!(
        !body.contains(&port.addr.port().to_string()),
        "the upstream port leaked: {body}"
    );
}

#[tokio::test]
async fn fallback_service_answers_a_stalled_upstream_with_504_response_timeout() {
    let upstream = Upstream::raw("", After::Hang).await;
    let app = Router::new().fallback_service(proxy_to(upstream.addr));
    let res = fetch(serve(app).await, "/anything").await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_response_timeout"
    );
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn a_healthy_upstream_is_proxied_untouched() {
    let upstream = Upstream::ok("from upstream").await;
    let app = Router::new().route_service("/", any_service(proxy_to(upstream.addr)));
    let res = fetch(serve(app).await, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("proxy-status").is_none());
    assert_eq!(res.text().await.unwrap(), "from upstream");
}

#[tokio::test]
async fn a_body_cut_mid_way_aborts_the_downstream_response_instead_of_ending_it() {
    let reply = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
    let upstream = Upstream::raw(reply, After::Close).await;
    let app = Router::new().fallback_service(proxy_to(upstream.addr));
    let res = fetch(serve(app).await, "/").await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the head went out before the failure"
    );
    let err = res
        .bytes()
        .await
        .expect_err("a truncated body must not look complete");
    assert!(err.is_body() || err.is_decode(), "{err:?}");
}

/// `Router::layer` wraps every route. Routes cannot fail there (their error is
/// `Infallible`), but a `ResponsePolicy` can still reject what they answer: a 500
/// that leaks internals becomes a clean 502.
#[tokio::test]
async fn router_layer_applies_the_response_policy_to_every_route() {
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/leaky",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "panic at db.internal:5432",
                )
            }),
        )
        .layer(BadGatewayLayer::new().response_policy(
            tower_bad_gateway::ResponsePolicy::new().reject_on(StatusCode::INTERNAL_SERVER_ERROR),
        ));
    let gateway = serve(app).await;
    assert_eq!(
        fetch(gateway, "/hello").await.text().await.unwrap(),
        "hello"
    );
    let res = fetch(gateway, "/missing").await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "other statuses pass through"
    );
    let res = fetch(gateway, "/leaky").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_protocol_error; received-status=500"
    );
    assert!(!res.text().await.unwrap().contains("db.internal"));
}

#[tokio::test]
async fn answers_a_browser_with_html_and_an_api_client_with_problem_json() {
    let port = refused_port();
    let gateway = serve(Router::new().fallback_service(proxy_to(port.addr))).await;
    let client = reqwest::Client::new();

    let res = client
        .get(format!("http://{gateway}/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<h1>502 Bad Gateway</h1>") && html.contains("req-42"),
        "{html}"
    );

    let res = client
        .get(format!("http://{gateway}/"))
        .header("accept", "application/problem+json, application/json;q=0.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let json: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(json["status"], 502);
    assert_eq!(json["title"], "Bad Gateway");
    assert_eq!(json["type"], "about:blank");
    assert_eq!(json["error"], "connection_refused");
}

/// Negotiation serves only a type the client accepts (RFC 9110 §12.5.1): a range
/// selects a type only if it covers it, and `q=0` excludes.
#[tokio::test]
async fn negotiation_never_serves_a_type_the_client_did_not_accept() {
    let port = refused_port();
    let gateway = serve(Router::new().fallback_service(proxy_to(port.addr))).await;
    let client = reqwest::Client::new();
    for (accept, served) in [
        // `application/*` covers problem+json, not text/html.
        ("application/*", "application/problem+json"),
        // Nothing offered is XHTML: plain text, not HTML under another name.
        ("application/xhtml+xml", "text/plain; charset=utf-8"),
        // problem+json refused: the same details as plain JSON.
        (
            "application/problem+json;q=0, application/json",
            "application/json",
        ),
        // `application/json` does not cover `application/problem+json`.
        ("application/json", "application/json"),
    ] {
        let res = client
            .get(format!("http://{gateway}/"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 502, "{accept}");
        assert_eq!(res.headers()["content-type"], served, "{accept}");
        if served.contains("json") {
            let json: serde_json::Value =
                serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
            assert_eq!(json["error"], "connection_refused", "{accept}");
        }
    }
}

/// The same stack, served over HTTP/2 to a gRPC caller: a refused upstream is a
/// trailers-only answer, HTTP 200 with `grpc-status: 14`.
#[tokio::test]
async fn a_grpc_call_gets_a_trailers_only_unavailable() {
    let port = refused_port();
    let gateway = serve(Router::new().fallback_service(proxy_to(port.addr))).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(format!("http://{gateway}/pkg.Service/Method"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"\0\0\0\0\0",
        )))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(
        res.headers()["grpc-message"],
        "The upstream server refused the connection."
    );
    let body = res.into_body().collect().await.unwrap();
    assert!(body.to_bytes().is_empty(), "trailers-only: no message");
}

/// A handler that calls upstream through a `RetryLayer` can `?` its
/// `GatewayError`: it answers like the gateway would (the `axum` feature).
#[tokio::test]
async fn a_handler_can_question_mark_a_gateway_error() {
    use tower_bad_gateway::GatewayError;
    use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};

    let port = refused_port();
    let upstream = format!("http://{}/stock", port.addr);
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new().max_attempts(2)))
        .service(support::hyper_client::<
            tower_bad_gateway::retry::ReplayBody<http_body_util::Empty<bytes::Bytes>>,
        >());
    let handler = move || {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            use tower::ServiceExt;
            let req = http::Request::get(upstream)
                .body(http_body_util::Empty::new())
                .unwrap();
            let res = client.oneshot(req).await?;
            Ok::<_, GatewayError>(format!("upstream said {}", res.status()))
        }
    };
    let gateway = serve(Router::new().route("/stock", get(handler))).await;
    let res = fetch(gateway, "/stock").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=connection_refused"
    );
}

/// `route_layer` applies to the matched routes only: unmatched paths still 404.
#[tokio::test]
async fn route_layer_applies_to_matched_routes() {
    let app = Router::new()
        .route(
            "/leaky",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db.internal:5432") }),
        )
        .route_layer(BadGatewayLayer::new().response_policy(
            tower_bad_gateway::ResponsePolicy::new().reject_on(StatusCode::INTERNAL_SERVER_ERROR),
        ));
    let gateway = serve(app).await;
    assert_eq!(
        fetch(gateway, "/leaky").await.status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        fetch(gateway, "/nowhere").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A gRPC call over HTTP/1.1 without `TE: trailers` cannot receive trailers (hyper
/// drops them), so a failure after the head must end the body with an error: with
/// trailers it would end cleanly, and the client would take a truncated answer
/// for a whole one. With `TE: trailers` the `grpc-status` trailers are sent.
#[tokio::test]
async fn a_grpc_body_cut_over_http1_without_te_trailers_ends_with_an_error() {
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        After::Close,
    )
    .await;
    let gateway = serve(Router::new().fallback_service(proxy_to(upstream.addr))).await;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let call = |te: bool| {
        let mut req = client
            .post(format!("http://{gateway}/pkg.Svc/Call"))
            .header("content-type", "application/grpc")
            .body(bytes::Bytes::from_static(b"\0\0\0\0\0"));
        if te {
            req = req.header("te", "trailers");
        }
        req.send()
    };
    let res = call(false).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.bytes().await.is_err(),
        "a cut gRPC body must not end cleanly over HTTP/1.1 without TE: trailers"
    );
    let res = call(true).await.unwrap();
    assert_eq!(
        res.bytes().await.unwrap(),
        "hello",
        "with TE: trailers the body ends with grpc-status trailers"
    );
}
