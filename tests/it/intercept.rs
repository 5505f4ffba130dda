//! Branded pages for the upstream's own errors (`ResponsePolicy::intercept_statuses`,
//! like nginx's `proxy_intercept_errors`): the upstream's status, the gateway's
//! page, `Proxy-Status` with `received-status`, the upstream's body never sent on.
//! A real axum upstream, a gateway served by axum, reqwest as the client.

use crate::support;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use http::StatusCode;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::ServiceBuilder;
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::{BadGatewayLayer, GatewayLayer, ResponsePolicy, UpstreamBody};

const SECRET: &str = "Traceback: db password hunter2";

/// An upstream whose `/boom` answers 500 with a secret in its body, `/missing`
/// 404, `/big` a 500 with 256 KiB of body, `/ok` 200; it records the peer port
/// of every request (one per connection).
async fn upstream() -> (SocketAddr, Arc<Mutex<HashSet<u16>>>) {
    let peers: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let seen = peers.clone();
    let record = move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
        seen.lock().unwrap().insert(peer.port());
    };
    let r1 = record.clone();
    let r2 = record.clone();
    let r3 = record.clone();
    let app = axum::Router::new()
        .route(
            "/boom",
            get(move |ci| async move {
                r1(ci);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [
                        ("retry-after", "7"),
                        ("x-powered-by", "secret-framework/1.2"),
                        ("proxy-status", "inner-cache; received-status=500"),
                    ],
                    SECRET,
                )
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "upstream's own 404 page") }),
        )
        .route(
            "/big",
            get(move |ci| async move {
                r2(ci);
                (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(256 * 1024))
            }),
        )
        .route(
            "/ok",
            get(move |ci| async move {
                r3(ci);
                "fine"
            }),
        )
        .route(
            "/grpc",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, SECRET) }),
        )
        .route(
            "/range",
            get(|| async {
                (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [("content-range", "bytes */1234")],
                    SECRET,
                )
            }),
        )
        .route(
            "/upgrade",
            get(|| async {
                (
                    StatusCode::UPGRADE_REQUIRED,
                    [("upgrade", "HTTP/3.0"), ("connection", "upgrade")],
                    "upgrade to HTTP/3.0",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (addr, peers)
}

/// A gateway to `upstream` intercepting 500 and 502 (and 200, which is ignored).
async fn gateway(upstream: SocketAddr) -> SocketAddr {
    let layer = BadGatewayLayer::new()
        .renderer(
            Renderer::new()
                .proxy_name("edge")
                .html_template("<h1>Acme {status}</h1><p>{message}</p>{request_id}"),
        )
        .response_policy(ResponsePolicy::new().intercept_statuses([
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::OK,
            StatusCode::RANGE_NOT_SATISFIABLE,
            StatusCode::UPGRADE_REQUIRED,
        ]));
    let proxy = ServiceBuilder::new()
        .map_request(move |mut req: axum::extract::Request| {
            let path = req.uri().path().to_owned();
            *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
            req
        })
        .layer(GatewayLayer::new().bad_gateway(layer).max_attempts(1))
        .service(support::hyper_client::<UpstreamBody<axum::body::Body>>());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn an_intercepted_upstream_error_gets_the_gateways_page_and_keeps_its_status() {
    let (upstream, _) = upstream().await;
    let gw = gateway(upstream).await;
    let client = reqwest::Client::new();
    for (accept, content_type, expected) in [
        (
            "text/html",
            "text/html; charset=utf-8",
            "<h1>Acme 500</h1><p>The upstream server failed to complete the request.</p> · request id r-1",
        ),
        (
            "application/problem+json",
            "application/problem+json",
            r#"{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"The upstream server failed to complete the request.","request_id":"r-1"}"#,
        ),
        (
            "text/plain",
            "text/plain; charset=utf-8",
            "500 Internal Server Error\n\nThe upstream server failed to complete the request.\n\nrequest id: r-1\n",
        ),
    ] {
        let res = client
            .get(format!("http://{gw}/boom"))
            .header("accept", accept)
            .header("x-request-id", "r-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 500, "{accept}");
        let h = res.headers().clone();
        assert_eq!(h["content-type"], content_type);
        let members: Vec<_> = h.get_all("proxy-status").iter().collect();
        assert_eq!(
            members,
            [
                "inner-cache; received-status=500",
                "edge; received-status=500"
            ],
            "the upstream's member first, ours last"
        );
        assert_eq!(h["retry-after"], "7", "kept: the client needs it to act");
        assert!(
            h.get("x-powered-by").is_none(),
            "the upstream's other headers go"
        );
        assert_eq!(h["x-request-id"], "r-1");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("hunter2"),
            "the upstream's body leaked: {body}"
        );
        assert_eq!(body, expected, "{accept}");
    }
}

/// RFC 9110: the page is chosen by `Accept`, so it says `Vary: Accept`
/// (§12.5.5); an intercepted 416 keeps the `Content-Range` that tells the client
/// the representation's length (§15.5.17); a 426 is never intercepted, though
/// asked for: its `Upgrade` is a MUST (§15.5.22).
#[tokio::test]
async fn an_intercepted_page_varies_on_accept_keeps_content_range_and_a_426_passes_through() {
    let (upstream, _) = upstream().await;
    let gw = gateway(upstream).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{gw}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["vary"], "accept");
    let res = client
        .get(format!("http://{gw}/range"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */1234");
    assert!(
        !res.text().await.unwrap().contains("hunter2"),
        "intercepted"
    );
    let res = client
        .get(format!("http://{gw}/upgrade"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 426);
    assert_eq!(res.headers()["upgrade"], "HTTP/3.0", "passed through");
    assert_eq!(res.text().await.unwrap(), "upgrade to HTTP/3.0");
}

#[tokio::test]
async fn statuses_not_intercepted_and_grpc_calls_pass_through_untouched() {
    let (upstream, _) = upstream().await;
    let gw = gateway(upstream).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{gw}/missing"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "upstream's own 404 page");

    let res = client
        .get(format!("http://{gw}/ok"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a success is never intercepted");
    assert_eq!(res.text().await.unwrap(), "fine");

    let res = client
        .post(format!("http://{gw}/grpc"))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.text().await.unwrap(), SECRET, "gRPC is left alone");
}

/// The upstream's body is dropped unread: the client's pool must not hand that
/// connection to the next request half-read. Each intercepted answer closes its
/// connection; the next request gets a fresh one and a correct answer.
#[tokio::test]
async fn an_intercepted_body_is_dropped_without_leaving_a_half_read_connection() {
    let (upstream, peers) = upstream().await;
    let gw = gateway(upstream).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client.get(format!("http://{gw}/big")).send().await.unwrap();
        assert_eq!(res.status(), 500);
        let body = res.text().await.unwrap();
        assert!(
            body.len() < 200,
            "{} bytes: the upstream's body",
            body.len()
        );
        let res = client.get(format!("http://{gw}/ok")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "fine");
    }
    let connections = peers.lock().unwrap().len();
    assert!(
        connections >= 3,
        "{connections} upstream connections: an intercepted one was reused half-read"
    );
}
