//! The renderer's answers, rendered once or afresh.

use super::*;
use http::Request;
use http_body_util::BodyExt;

async fn text_of(renderer: &Renderer, err: &GatewayError) -> (StatusCode, String, HeaderValue) {
    let res = renderer.render(err, &RequestInfo::default());
    let status = res.status();
    let proxy_status = res.headers()[PROXY_STATUS].clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).unwrap(),
        proxy_status,
    )
}

/// Rendering once at build time must give what rendering afresh gives, for
/// every kind and every representation.
#[tokio::test]
async fn the_parts_rendered_once_are_what_rendering_afresh_gives() {
    let renderer = Renderer::new()
        .status(
            ErrorKind::ConnectionRefused,
            crate::ErrorStatus::SERVICE_UNAVAILABLE,
        )
        .proxy_name("edge")
        .html_template("<p>{status} {error}</p>");

    for accept in ["text/plain", "application/json", "text/html"] {
        let req = Request::get("/").header("accept", accept).body(()).unwrap();
        let info = RequestInfo::from_request(&req);
        for &kind in ErrorKind::ALL {
            let err = GatewayError::new(kind);
            let cached = renderer.render(&err, &info);
            let fresh = renderer.render_with(&err, &info, None);
            assert_eq!(cached.status(), fresh.status(), "{kind:?} {accept}");
            assert_eq!(cached.headers(), fresh.headers(), "{kind:?} {accept}");
            let cached = cached.into_body().collect().await.unwrap().to_bytes();
            let fresh = fresh.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(cached, fresh, "{kind:?} {accept}");
        }
    }
}

#[tokio::test]
async fn a_request_id_or_a_received_status_is_never_served_from_the_cache() {
    let renderer = Renderer::new();
    let plain = GatewayError::new(ErrorKind::InvalidResponse);
    let _ = text_of(&renderer, &plain).await;
    let rejected = plain
        .clone()
        .with_received_status(StatusCode::INTERNAL_SERVER_ERROR);
    let (_, _, proxy_status) = text_of(&renderer, &rejected).await;
    assert_eq!(
        proxy_status,
        "tower-bad-gateway; error=http_protocol_error; received-status=500"
    );
    let req = Request::get("/")
        .header("x-request-id", "id-9")
        .body(())
        .unwrap();
    let res = renderer.render(&plain, &RequestInfo::from_request(&req));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("request id: id-9"));
}

#[test]
fn the_answered_status_rides_in_the_error() {
    let renderer =
        Renderer::new().status(ErrorKind::DnsError, crate::ErrorStatus::SERVICE_UNAVAILABLE);
    let res = renderer.render(
        &GatewayError::new(ErrorKind::DnsError),
        &RequestInfo::default(),
    );
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A renderer changed after it answered answers afresh: a setter never leaves the
/// parts rendered for the old settings behind.
#[tokio::test]
async fn a_renderer_changed_after_use_answers_afresh() {
    let err = GatewayError::new(ErrorKind::ConnectionRefused);
    let used = Renderer::new();
    let (status, body, _) = text_of(&used, &err).await;
    assert_eq!(status, 502);
    assert!(body.starts_with("502 Bad Gateway"));
    let changed = used
        .clone()
        .status(
            ErrorKind::ConnectionRefused,
            crate::ErrorStatus::SERVICE_UNAVAILABLE,
        )
        .proxy_name("edge");
    let (status, body, proxy_status) = text_of(&changed, &err).await;
    assert_eq!(status, 503);
    assert!(body.starts_with("503 Service Unavailable"), "{body}");
    assert_eq!(proxy_status, "edge; error=connection_refused");
    let (status, _, proxy_status) = text_of(&used, &err).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(proxy_status, "tower-bad-gateway; error=connection_refused");
}

/// RFC 9209 §2.3.15: `alert-id` always (an alert is never served from the parts
/// rendered once, which have none), `alert-message` only with details, and
/// neither on a kind the alert does not belong to.
#[tokio::test]
async fn a_tls_alert_shows_its_id_and_with_details_its_message() {
    use crate::error::TlsAlert;
    let alert = GatewayError::new(ErrorKind::TlsAlertReceived).with_tls_alert(TlsAlert::new(116));
    let renderer = Renderer::new();
    let _ = text_of(&renderer, &GatewayError::new(ErrorKind::TlsAlertReceived)).await;
    let (status, _, proxy_status) = text_of(&renderer, &alert).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        proxy_status,
        "tower-bad-gateway; error=tls_alert_received; alert-id=116"
    );
    let (_, _, proxy_status) = text_of(&Renderer::new().expose_details(true), &alert).await;
    assert_eq!(
        proxy_status,
        "tower-bad-gateway; error=tls_alert_received; alert-id=116; alert-message=\"certificate_required\""
    );
    // A number the registry does not name: the id, and no message even with details.
    let unnamed = GatewayError::new(ErrorKind::TlsAlertReceived).with_tls_alert(TlsAlert::new(250));
    let (_, _, proxy_status) = text_of(&Renderer::new().expose_details(true), &unnamed).await;
    assert_eq!(
        proxy_status,
        "tower-bad-gateway; error=tls_alert_received; alert-id=250"
    );
    // A rule that made it another kind: the alert's parameters do not belong there.
    let other = alert.with_kind(ErrorKind::TlsProtocolError);
    let (_, _, proxy_status) = text_of(&renderer, &other).await;
    assert_eq!(proxy_status, "tower-bad-gateway; error=tls_protocol_error");
}

/// The wait an error knows (an endpoint set's next probe) reaches a gRPC caller
/// as `grpc-retry-pushback-ms`, to the millisecond, beside the `Retry-After` in
/// whole seconds; other callers get `Retry-After` alone.
#[test]
fn a_grpc_answer_carries_the_errors_wait_as_pushback_in_milliseconds() {
    let err = GatewayError::new(ErrorKind::DestinationUnavailable)
        .with_retry_after(Duration::from_millis(1500));
    let call = Request::post("/pkg.Svc/Get")
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    let res = Renderer::new().render(&err, &RequestInfo::from_request(&call));
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1500");
    assert_eq!(res.headers()["retry-after"], "2");

    let res = Renderer::new().render(&err, &RequestInfo::default());
    assert_eq!(res.headers()["retry-after"], "2");
    assert!(!res.headers().contains_key("grpc-retry-pushback-ms"));

    let without_wait = GatewayError::new(ErrorKind::DestinationUnavailable);
    let res = Renderer::new().render(&without_wait, &RequestInfo::from_request(&call));
    assert!(!res.headers().contains_key("grpc-retry-pushback-ms"));
    assert!(!res.headers().contains_key("retry-after"));
}
