//! Promises that hold for any input: no answer leaks internals by default, and no
//! header the gateway writes can carry CR, LF or NUL; `Proxy-Status` always parses
//! as an RFC 8941 list (checked with the `sfv` parser), `grpc-message` is always
//! valid percent-encoding, problem+json is always JSON. Property tests (proptest).

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower_bad_gateway::render::{Renderer, RequestInfo};
use tower_bad_gateway::{ErrorKind, GatewayError};

fn body_of(res: http::Response<http_body_util::Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let (parts, body) = res.into_parts();
    let body = futures_now(body.collect()).unwrap().to_bytes();
    (parts, body)
}

/// A `Full` body is ready at once.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a Full body was not ready"),
    }
}

fn request_with(
    accept: Option<&[u8]>,
    content_type: Option<&[u8]>,
    request_id: Option<&[u8]>,
) -> RequestInfo {
    let mut req = Request::post("/").body(()).unwrap();
    for (name, value) in [
        ("accept", accept),
        ("content-type", content_type),
        ("x-request-id", request_id),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            req.headers_mut().insert(name, v);
        }
    }
    RequestInfo::from_request(&req)
}

const SECRETS: &[&str] = &[
    "db.internal",
    "5432",
    "10.1.2.3",
    "Connection refused",
    "password=hunter2",
];

/// Every kind, every representation: by default nothing of the next hop or the
/// error's text reaches the client, in the body or a header.
#[test]
fn no_kind_leaks_internals_by_default() {
    let renderer = Renderer::new();
    for &kind in ErrorKind::ALL {
        let err = GatewayError::new(kind)
            .with_next_hop("db.internal:5432".parse().unwrap())
            .with_source(std::io::Error::other(
                "connect to 10.1.2.3:5432 (password=hunter2): Connection refused",
            ));
        for (accept, content_type) in [
            (Some(&b"text/plain"[..]), None),
            (Some(b"application/json"), None),
            (Some(b"text/html"), None),
            (None, Some(&b"application/grpc"[..])),
        ] {
            let info = request_with(accept, content_type, None);
            let (parts, body) = body_of(renderer.render(&err, &info));
            let body = String::from_utf8_lossy(&body);
            let headers = format!("{:?}", parts.headers);
            for secret in SECRETS {
                assert!(!body.contains(secret), "{kind:?}: the body leaks {secret}");
                assert!(
                    !headers.contains(secret),
                    "{kind:?}: a header leaks {secret}"
                );
            }
        }
    }
}

/// A `grpc-message` is printable ASCII with `%XX` escapes only.
fn is_percent_encoded(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'%' => {
                if value.len() < i + 3
                    || !value[i + 1].is_ascii_hexdigit()
                    || !value[i + 2].is_ascii_hexdigit()
                {
                    return false;
                }
                i += 3;
            }
            0x20..=0x7e => i += 1,
            _ => return false,
        }
    }
    true
}

fn kind() -> impl Strategy<Value = ErrorKind> {
    (0..ErrorKind::ALL.len()).prop_map(|i| ErrorKind::ALL[i])
}

proptest! {

    #[test]
    fn every_answer_is_well_formed_whatever_the_input(
        kind in kind(),
        message in any::<String>(),
        proxy_name in any::<String>(),
        expose in any::<bool>(),
        received in proptest::option::of(100u16..1000),
        accept in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        content_type in proptest::option::of(prop_oneof![
            Just(b"application/grpc".to_vec()),
            Just(b"application/grpc+proto".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
        ]),
        request_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        hop in proptest::option::of("[a-z0-9.-]{1,30}(:[0-9]{1,5})?"),
    ) {
        let renderer = Renderer::new().proxy_name(&proxy_name).expose_details(expose);
        let mut err = GatewayError::new(kind).with_source(std::io::Error::other(message));
        if let Some(status) = received.and_then(|s| StatusCode::from_u16(s).ok()) {
            err = err.with_received_status(status);
        }
        if let Some(hop) = hop.and_then(|h| h.parse().ok()) {
            err = err.with_next_hop(hop);
        }
        let info = request_with(accept.as_deref(), content_type.as_deref(), request_id.as_deref());
        let (parts, body) = body_of(renderer.render(&err, &info));

        for (name, value) in &parts.headers {
            prop_assert!(!value.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')), "{name}: {value:?}");
        }
        let proxy_status = parts.headers["proxy-status"].to_str().unwrap();
        let list = sfv::Parser::new(proxy_status).parse::<sfv::List>();
        prop_assert!(list.is_ok(), "Proxy-Status is not a structured-field list: {proxy_status:?}: {list:?}");
        prop_assert_eq!(list.unwrap().len(), 1);
        if let Some(message) = parts.headers.get("grpc-message") {
            prop_assert!(is_percent_encoded(message.as_bytes()), "{message:?}");
        }
        let content_type = parts.headers["content-type"].to_str().unwrap();
        if content_type == "application/problem+json" {
            let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| TestCaseError::fail(format!("{e}: {body:?}")))?;
            prop_assert_eq!(json["status"].as_u64(), Some(u64::from(parts.status.as_u16())));
        }
        if !content_type.starts_with("application/grpc") {
            prop_assert!(parts.status.is_client_error() || parts.status.is_server_error());
        }
    }
}

/// Every body the crate hands out can be printed, so `unwrap_err()` and `dbg!`
/// work on responses and requests that carry them (this fails to compile if not).
#[test]
fn every_public_body_implements_debug() {
    fn debug<T: std::fmt::Debug>() {}
    type Inner = http_body_util::Full<bytes::Bytes>;
    debug::<tower_bad_gateway::bad_gateway::ResponseBody<Inner>>();
    debug::<tower_bad_gateway::timeout::TimeoutBody<Inner>>();
    debug::<tower_bad_gateway::write_timeout::UploadBody<Inner>>();
    debug::<tower_bad_gateway::retry::ReplayBody<Inner>>();
}
