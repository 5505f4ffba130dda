//! What the gateway answers: secure by default, details only on request and never
//! a CR/LF/NUL in a header, the response policy, gRPC endings, `poll_ready` errors,
//! HEAD, and reporting.

use crate::support;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use support::{After, Upstream, collect, refused_port, through};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, ResponsePolicy};

fn with_accept(url: &str, accept: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("accept", accept)
        .body(Full::default())
        .unwrap()
}

fn assert_headers_clean(headers: &HeaderMap) {
    for (name, value) in headers {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
            "{name} carries CR, LF or NUL: {value:?}"
        );
    }
}

#[tokio::test]
async fn by_default_no_host_port_or_io_message_leaks_into_any_representation() {
    let port = refused_port();
    let url = format!("http://{}/", port.addr);
    for accept in ["text/plain", "application/json", "text/html", "*/*"] {
        let res = through(BadGatewayLayer::new(), with_accept(&url, accept)).await;
        let headers = format!("{:?}", res.headers());
        let body = collect(res.into_body()).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        for secret in [
            "127.0.0.1",
            &port.addr.port().to_string(),
            "os error",
            "Connection refused",
            "tcp connect",
        ] {
            assert!(
                !body.contains(secret),
                "{accept}: body leaks {secret:?}: {body}"
            );
            assert!(
                !headers.contains(secret),
                "{accept}: headers leak {secret:?}: {headers}"
            );
        }
    }
}

#[tokio::test]
async fn expose_details_shows_the_next_hop_and_cause_sanitized() {
    let port = refused_port();
    let url = format!("http://{}/", port.addr);
    let layer = BadGatewayLayer::new().renderer(Renderer::new().expose_details(true));
    let res = through(layer.clone(), with_accept(&url, "application/json")).await;
    let proxy_status = res.headers()["proxy-status"].to_str().unwrap().to_owned();
    assert!(
        proxy_status.starts_with(&format!(
            "tower-bad-gateway; error=connection_refused; next-hop=\"{}\"; details=\"",
            port.addr
        )),
        "{proxy_status}"
    );
    assert!(
        proxy_status.contains("Connection refused"),
        "{proxy_status}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&collect(res.into_body()).await.unwrap()).unwrap();
    assert_eq!(json["next_hop"], port.addr.to_string());
    assert!(
        json["cause"]
            .as_str()
            .unwrap()
            .contains("tcp connect error"),
        "{json}"
    );
}

/// An upstream client whose error text carries CR, LF and NUL (as a hostile or
/// buggy upstream library's could): exposed, it still cannot split a header.
#[tokio::test]
async fn expose_details_never_writes_cr_lf_or_nul_into_a_header() {
    let hostile = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other(
            "boom\r\nSet-Cookie: session=stolen\0\"\\",
        ))
    });
    let layer = BadGatewayLayer::new().renderer(
        Renderer::new()
            .expose_details(true)
            .proxy_name("edge\r\nx-injected: 1"),
    );
    let mut svc = ServiceBuilder::new().layer(layer).service(hostile);
    for req in [
        with_accept("http://upstream.internal:8080/", "text/plain"),
        Request::post("http://upstream.internal:8080/")
            .header("content-type", "application/grpc")
            .body(Full::default())
            .unwrap(),
    ] {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_headers_clean(res.headers());
        assert!(res.headers().get("set-cookie").is_none());
        assert!(res.headers().get("x-injected").is_none());
        let proxy_status = res.headers()["proxy-status"].to_str().unwrap();
        assert!(
            proxy_status.starts_with("\"edge??x-injected: 1\"; error=proxy_internal_error"),
            "{proxy_status}"
        );
        assert!(
            proxy_status.contains(r#"details="boom??Set-Cookie: session=stolen?\"\\""#),
            "{proxy_status}"
        );
    }
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_plain_visible_ascii() {
    let port = refused_port();
    let url = format!("http://{}/", port.addr);
    let echo = |id: &'static [u8]| {
        let url = url.clone();
        async move {
            let req = Request::get(url)
                .header("x-request-id", http::HeaderValue::from_bytes(id).unwrap())
                .body(Full::default())
                .unwrap();
            through(BadGatewayLayer::new(), req)
                .await
                .headers()
                .get("x-request-id")
                .cloned()
        }
    };
    assert_eq!(echo(b"3f2a-77").await.unwrap(), "3f2a-77");
    assert!(echo(b"a\tb").await.is_none(), "a tab is not echoed");
    assert!(echo(b"\xff\xfe").await.is_none(), "obs-text is not echoed");
}

#[tokio::test]
async fn status_overrides_and_retry_after_on_503() {
    let port = refused_port();
    let layer = BadGatewayLayer::new().renderer(
        Renderer::new()
            .status(
                ErrorKind::ConnectionRefused,
                tower_bad_gateway::ErrorStatus::SERVICE_UNAVAILABLE,
            )
            .retry_after(Duration::from_secs(7)),
    );
    let res = through(layer, support::get(&format!("http://{}/", port.addr))).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "7");
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=connection_refused"
    );
}

#[tokio::test]
async fn a_head_request_gets_no_body() {
    let port = refused_port();
    let req = Request::head(format!("http://{}/", port.addr))
        .body(Full::default())
        .unwrap();
    let res = through(BadGatewayLayer::new(), req).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(collect(res.into_body()).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_response_policy_rejects_a_status_and_keeps_the_received_status() {
    let upstream = Upstream::raw(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\ntrace",
        After::Hang,
    )
    .await;
    let policy = ResponsePolicy::new().reject_on(StatusCode::INTERNAL_SERVER_ERROR);
    let res = through(
        BadGatewayLayer::new().response_policy(policy),
        support::get(&upstream.url("/")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_protocol_error; received-status=500"
    );
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert_eq!(
        err.received_status(),
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
}

/// Every upstream status passes through; an upstream 5xx gets our member with its
/// `received-status`, so a client can tell it from the gateway's own 502.
#[tokio::test]
async fn without_a_policy_every_upstream_status_passes_through() {
    for status in [
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
        "404 Not Found",
    ] {
        let upstream = Upstream::raw(
            format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nup"),
            After::Hang,
        )
        .await;
        let res = through(BadGatewayLayer::new(), support::get(&upstream.url("/"))).await;
        assert_eq!(res.status().as_str(), &status[..3]);
        let expected = status
            .starts_with('5')
            .then(|| format!("tower-bad-gateway; received-status={}", &status[..3]));
        assert_eq!(
            res.headers()
                .get("proxy-status")
                .map(|v| v.to_str().unwrap().to_owned()),
            expected,
            "{status}"
        );
        assert_eq!(collect(res.into_body()).await.unwrap(), "up");

        let quiet = BadGatewayLayer::new().renderer(Renderer::new().mark_upstream_errors(false));
        let res = through(quiet, support::get(&upstream.url("/"))).await;
        assert!(res.headers().get("proxy-status").is_none(), "{status}");
    }
}

fn proxy_status_lines(res: &Response<impl http_body::Body>) -> Vec<String> {
    res.headers()
        .get_all("proxy-status")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Proxy-Status` members an upstream's answer carried are kept, and ours is
/// appended after them (RFC 9209 §2), both when its 5xx is passed on and when the
/// response policy rejects it.
#[tokio::test]
async fn the_upstreams_proxy_status_members_are_kept_and_ours_appended() {
    let upstream = Upstream::raw(
        "HTTP/1.1 502 Bad Gateway\r\nproxy-status: inner-proxy; error=connection_refused\r\ncontent-length: 2\r\n\r\nup",
        After::Hang,
    )
    .await;
    let res = through(BadGatewayLayer::new(), support::get(&upstream.url("/"))).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        proxy_status_lines(&res),
        [
            "inner-proxy; error=connection_refused",
            "tower-bad-gateway; received-status=502"
        ]
    );

    let policy = ResponsePolicy::new().reject_on(StatusCode::BAD_GATEWAY);
    let res = through(
        BadGatewayLayer::new().response_policy(policy),
        support::get(&upstream.url("/")),
    )
    .await;
    assert_eq!(
        proxy_status_lines(&res),
        [
            "inner-proxy; error=connection_refused",
            "tower-bad-gateway; error=http_protocol_error; received-status=502"
        ]
    );
}

#[tokio::test]
async fn a_body_known_to_be_too_large_is_rejected_before_the_head() {
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\ncontent-length: 2048\r\n\r\n",
        After::Hang,
    )
    .await;
    let policy = ResponsePolicy::new().max_body_size(1024);
    let res = through(
        BadGatewayLayer::new().response_policy(policy),
        support::get(&upstream.url("/")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_response_body_size; received-status=200"
    );
}

#[tokio::test]
async fn a_body_growing_past_the_limit_is_cut_with_an_error_and_nothing_past_the_limit() {
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    let parts = vec![
        Bytes::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        Bytes::from(chunk.clone()),
        Bytes::from(chunk.clone()),
        Bytes::from(chunk),
    ];
    let upstream = Upstream::raw_parts(parts, Duration::from_millis(20), After::Hang).await;
    let policy = ResponsePolicy::new().max_body_size(1500);
    let res = through(
        BadGatewayLayer::new().response_policy(policy),
        support::get(&upstream.url("/")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut received = 0;
    let err = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
            Some(Err(err)) => break err,
            None => panic!("the body ended cleanly after {received} bytes"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    assert!(received <= 1500, "{received} bytes passed the limit");
}

#[tokio::test]
async fn a_predicate_can_reject_by_header() {
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\nx-debug-trace: yes\r\ncontent-length: 0\r\n\r\n",
        After::Hang,
    )
    .await;
    let policy = ResponsePolicy::new().reject_on(tower_bad_gateway::Outcomes::new().when(|o| {
        matches!(o, tower_bad_gateway::Outcome::Response { headers, .. } if headers.contains_key("x-debug-trace"))
    }));
    let res = through(
        BadGatewayLayer::new().response_policy(policy),
        support::get(&upstream.url("/")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
}

/// A gRPC response whose upstream body is cut: the stream ends with `grpc-status`
/// trailers, not a clean end and not a transport error.
#[tokio::test]
async fn a_grpc_body_that_fails_ends_with_grpc_status_trailers() {
    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ncontent-length: 100\r\n\r\n\0\0\0\0\x05hel";
    let upstream = Upstream::raw(reply, After::Close).await;
    let req = Request::post(upstream.url("/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::default())
        .unwrap();
    let res = through(BadGatewayLayer::new(), req).await;
    let collected = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .unwrap()
        .expect("a gRPC body ends with trailers, not an error");
    let trailers = collected.trailers().cloned().expect("grpc-status trailers");
    assert_eq!(trailers["grpc-status"], "14");
    assert_eq!(
        trailers["grpc-message"],
        "The upstream server's answer was cut short."
    );
}

#[tokio::test]
async fn a_timeout_answers_grpc_deadline_exceeded() {
    let upstream = Upstream::raw("", After::Hang).await;
    let req = Request::post(upstream.url("/pkg.Svc/Call"))
        .header("content-type", "application/grpc+proto")
        .body(Full::default())
        .unwrap();
    let timeout = Duration::from_millis(300);
    let res = support::through_with_timeout(BadGatewayLayer::new(), timeout, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/grpc+proto");
    assert_eq!(res.headers()["grpc-status"], "4");
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_response_timeout"
    );
}

/// A service whose `poll_ready` fails: BadGateway's error type is `Infallible`, so
/// it answers the call the readiness was for instead of failing it.
#[derive(Clone)]
struct NeverReady;

impl Service<Request<Full<Bytes>>> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = tower::load_shed::error::Overloaded;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(tower::load_shed::error::Overloaded::new()))
    }

    fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
        panic!("called without being ready");
    }
}

#[tokio::test]
async fn a_poll_ready_error_is_answered_503_without_calling_the_inner_service() {
    let mut svc = BadGatewayLayer::new().layer_service(NeverReady);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(support::get("http://up/"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=connection_limit_reached"
    );
}

#[tokio::test]
async fn a_custom_renderer_replaces_the_answer_and_keeps_the_error_in_extensions() {
    let port = refused_port();
    let layer = BadGatewayLayer::new().renderer(Renderer::custom(|err, _info| {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Bytes::from(format!("custom: {}", err.kind())))
            .unwrap()
    }));
    let res = through(layer, support::get(&format!("http://{}/", port.addr))).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.extensions().get::<GatewayError>().is_some());
    assert_eq!(
        collect(res.into_body()).await.unwrap(),
        "custom: connection_refused"
    );
}

#[tokio::test]
async fn a_custom_html_template_is_filled_and_escaped() {
    let port = refused_port();
    let layer = BadGatewayLayer::new().renderer(
        Renderer::new().html_template("<p>{status}|{reason}|{error}|{request_id}|{unknown}</p>"),
    );
    let req = Request::get(format!("http://{}/", port.addr))
        .header("accept", "text/html")
        .header("x-request-id", "<script>")
        .body(Full::default())
        .unwrap();
    let res = through(layer, req).await;
    let body = collect(res.into_body()).await.unwrap();
    assert_eq!(
        body,
        "<p>502|Bad Gateway|connection_refused| · request id &lt;script&gt;|{unknown}</p>"
    );
}

/// Exactly one `tracing` event per failure, with the kind, phase, status and
/// elapsed time, for a failure before the head and one in the body.
#[tokio::test]
async fn each_failure_emits_exactly_one_tracing_event() {
    let events = support::EventLog::install();
    let port = refused_port();
    let _ = through(
        BadGatewayLayer::new(),
        support::get(&format!("http://{}/", port.addr)),
    )
    .await;
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
        After::Close,
    )
    .await;
    let res = through(BadGatewayLayer::new(), support::get(&upstream.url("/"))).await;
    let _ = collect(res.into_body()).await;

    let events = events.messages();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events[0].contains("error.type=connection_refused")
            && events[0].contains("phase=connect")
            && events[0].contains("tower_bad_gateway.answered_status=502")
            && !events[0].contains("http.response.status_code"),
        "{}",
        events[0]
    );
    assert!(events[0].contains("elapsed_ms="), "{}", events[0]);
    assert!(
        events[1].contains("error.type=http_response_incomplete")
            && events[1].contains("phase=read_body")
            && events[1].contains("http.response.status_code=200")
            && events[1].contains("tower_bad_gateway.answered_status=200"),
        "{}",
        events[1]
    );
}

#[test]
fn gateway_error_is_clone_send_sync_and_infallible_service() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<GatewayError>();
    fn infallible<S: Service<Request<Full<Bytes>>, Error = Infallible>>(_: &S) {}
    infallible(&BadGatewayLayer::new().layer_service(NeverReady));
}

trait LayerExt {
    fn layer_service<S>(&self, inner: S) -> tower_bad_gateway::BadGateway<S>;
}

impl LayerExt for BadGatewayLayer {
    fn layer_service<S>(&self, inner: S) -> tower_bad_gateway::BadGateway<S> {
        tower::Layer::layer(self, inner)
    }
}

/// RFC 9110 §15: a status outside 100..=599 is invalid and must be treated as a
/// server error; the `http` crate (and so hyper) accepts up to 999.
#[tokio::test]
async fn an_upstream_status_above_599_is_a_protocol_error_not_passed_on() {
    let upstream = Upstream::raw(
        "HTTP/1.1 600 Weird\r\ncontent-length: 0\r\n\r\n",
        After::Hang,
    )
    .await;
    let res = through(BadGatewayLayer::new(), support::get(&upstream.url("/"))).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_protocol_error; received-status=600"
    );
}

/// A gateway that cannot get a local address to connect from (here: told to bind
/// one this host does not have, as a port shortage also reports
/// `AddrNotAvailable`) has a fault of its own: 500 `proxy_internal_error`, never
/// sent, not the destination's `destination_ip_unroutable`. Also the status RFC
/// 9209 recommends for that token, where it used to be 502.
#[tokio::test]
async fn no_local_address_is_the_gateways_own_500_proxy_internal_error() {
    let upstream = Upstream::ok("never reached").await;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    // TEST-NET-1 (RFC 5737): never an address of this host.
    connector.set_local_address(Some("192.0.2.1".parse().unwrap()));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .service(client);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(support::get(&upstream.url("/")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=proxy_internal_error"
    );
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unclassified);
    assert_eq!(err.request_sent(), tower_bad_gateway::RequestSent::No);
    assert_eq!(err.phase(), tower_bad_gateway::Phase::Connect);
    assert_eq!(upstream.requests(), 0);
}
