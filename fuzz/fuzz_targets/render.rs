//! The renderer over arbitrary requests and errors: `Accept`, `Content-Type` and
//! `x-request-id` bytes, error text, proxy name, details on or off. Never panics;
//! no header carries CR, LF or NUL; `Proxy-Status` parses as an RFC 8941 list;
//! `grpc-message` is printable ASCII with `%XX` escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bad_gateway::render::{Renderer, RequestInfo};
use tower_bad_gateway::{ErrorKind, GatewayError};

fn field<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&len, rest)) = data.split_first() else {
        return &[];
    };
    let len = usize::from(len).min(rest.len());
    let (field, rest) = rest.split_at(len);
    *data = rest;
    field
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    data = rest;
    let kind = ErrorKind::ALL[usize::from(flags) % ErrorKind::ALL.len()];
    let (accept, content_type, request_id) = (field(&mut data), field(&mut data), field(&mut data));
    let proxy_name = String::from_utf8_lossy(field(&mut data)).into_owned();
    let message = String::from_utf8_lossy(data).into_owned();

    let mut req = http::Request::post("/").body(()).unwrap();
    for (name, value) in [
        ("accept", accept),
        ("content-type", content_type),
        ("x-request-id", request_id),
    ] {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            req.headers_mut().insert(name, value);
        }
    }
    let renderer = Renderer::new()
        .proxy_name(&proxy_name)
        .expose_details(flags & 0x80 != 0);
    let mut err = GatewayError::new(kind).with_source(std::io::Error::other(message));
    if flags & 0x40 != 0 {
        err = err.with_received_status(http::StatusCode::BAD_GATEWAY);
    }
    let res = renderer.render(&err, &RequestInfo::from_request(&req));
    for (name, value) in res.headers() {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
            "{name}"
        );
    }
    let proxy_status = res.headers()["proxy-status"]
        .to_str()
        .expect("visible ASCII");
    sfv::Parser::new(proxy_status)
        .parse::<sfv::List>()
        .expect("a structured-field list");
    if let Some(message) = res.headers().get("grpc-message") {
        let bytes = message.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                assert!(
                    bytes.len() >= i + 3
                        && bytes[i + 1].is_ascii_hexdigit()
                        && bytes[i + 2].is_ascii_hexdigit()
                );
                i += 3;
            } else {
                assert!((0x20..=0x7e).contains(&bytes[i]));
                i += 1;
            }
        }
    }
});
