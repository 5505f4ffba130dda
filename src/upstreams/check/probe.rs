//! One check of one endpoint: what it sends and how its answer is judged.

use super::{HealthCheck, Kind};
use crate::classify::Classifier;
use crate::error::{BoxError, ErrorKind, Phase};
use crate::upstreams::Endpoint;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, header};
use http_body::Body;
use http_body_util::BodyExt;
use std::fmt;
use tower::ServiceExt;

/// The most of a health answer's body that is read; the rest is dropped with
/// the connection.
const MAX_BODY: usize = 64 * 1024;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// It passed.
    Passed,
    /// No answer: the client's error, as the crate classifies it.
    Error(ErrorKind),
    /// No answer within the check's timeout.
    TimedOut,
    /// An HTTP answer with a status that does not pass.
    Status(u16),
    /// A gRPC error status.
    GrpcStatus(u32),
    /// A gRPC health answer other than `SERVING` (`NOT_SERVING` is 2).
    NotServing(u64),
    /// An answer that is not a gRPC health answer.
    Malformed,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Passed => f.write_str("passed"),
            Found::Error(kind) => write!(f, "{kind}"),
            Found::TimedOut => f.write_str("timed out"),
            Found::Status(status) => write!(f, "status {status}"),
            Found::GrpcStatus(code) => write!(f, "grpc-status {code}"),
            Found::NotServing(2) => f.write_str("NOT_SERVING"),
            Found::NotServing(3) => f.write_str("SERVICE_UNKNOWN"),
            Found::NotServing(status) => write!(f, "health status {status}"),
            Found::Malformed => f.write_str("not a gRPC health answer"),
        }
    }
}

/// A `grpc.health.v1.HealthCheckRequest` for `service`, framed: a gRPC message
/// header (not compressed, the length) and the message (field 1, the name).
pub(super) fn grpc_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    framed.freeze()
}

fn put_varint(buf: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// The `status` field of a framed `HealthCheckResponse` (`0`, `UNKNOWN`, when
/// absent), if the bytes are one.
fn grpc_health_status(framed: &[u8]) -> Option<u64> {
    let (&[compressed, a, b, c, d], message) = framed.split_first_chunk::<5>()?;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if compressed != 0 || message.len() < len {
        return None;
    }
    let mut message = &message[..len];
    let mut status = 0;
    while !message.is_empty() {
        let (tag, n) = varint(message)?;
        message = &message[n..];
        match tag & 7 {
            0 => {
                let (value, n) = varint(message)?;
                message = &message[n..];
                if tag >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let (len, n) = varint(message)?;
                let end = n.checked_add(usize::try_from(len).ok()?)?;
                message = message.get(end..)?;
            }
            5 => message = message.get(4..)?,
            1 => message = message.get(8..)?,
            _ => return None,
        }
    }
    Some(status)
}

/// Checks `endpoint` once, by `check`, through `client` (unused for a TCP
/// check); the caller bounds it by the check's timeout.
pub(super) async fn probe<C, ReqB, ResB>(
    check: &HealthCheck,
    endpoint: &Endpoint,
    client: C,
) -> Found
where
    C: tower_service::Service<Request<ReqB>, Response = Response<ResB>>,
    C::Error: Into<BoxError>,
    ReqB: From<Bytes>,
    ResB: Body,
    ResB::Error: Into<BoxError>,
{
    let error =
        |e: BoxError| Found::Error(Classifier::new().classify_owned(e, Phase::Connect).kind());
    let req = match &check.kind {
        Kind::Tcp => {
            let port = endpoint.port();
            let host = endpoint
                .authority()
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let connected = match endpoint.address() {
                Some(address) => tokio::net::TcpStream::connect(address).await,
                None => tokio::net::TcpStream::connect((host, port)).await,
            };
            return match connected {
                Ok(_) => Found::Passed,
                Err(e) => error(e.into()),
            };
        }
        Kind::Http(path) => Request::builder()
            .method(Method::GET)
            .uri(endpoint.rewrite(http::Uri::from(path.clone())))
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .body(ReqB::from(Bytes::new())),
        Kind::Grpc { message, .. } => Request::builder()
            .method(Method::POST)
            .version(http::Version::HTTP_2)
            .uri(endpoint.rewrite(http::Uri::from_static(GRPC_PATH)))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            )
            .header(header::TE, HeaderValue::from_static("trailers"))
            .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
            .body(ReqB::from(message.clone())),
    };
    // Cannot fail: the parts are all valid.
    let Ok(mut req) = req else {
        return Found::Malformed;
    };
    if let Some(address) = endpoint.address() {
        req.extensions_mut()
            .insert(crate::upstreams::Address(address));
    }
    let res = match client.oneshot(req).await {
        Ok(res) => res,
        Err(e) => return error(e.into()),
    };
    let (parts, body) = res.into_parts();
    match check.kind {
        Kind::Grpc { .. } => judge_grpc(parts, body).await,
        _ => {
            // Read (some of) the body, so the connection may be reused.
            let _ = http_body_util::Limited::new(body, MAX_BODY).collect().await;
            if check.is_healthy_status(parts.status.as_u16()) {
                Found::Passed
            } else {
                Found::Status(parts.status.as_u16())
            }
        }
    }
}

const USER_AGENT: &str = "tower-bad-gateway-health-check";
const GRPC_PATH: &str = "/grpc.health.v1.Health/Check";

async fn judge_grpc<B>(parts: http::response::Parts, body: B) -> Found
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if parts.status != http::StatusCode::OK {
        return Found::Status(parts.status.as_u16());
    }
    let code = |headers: &http::HeaderMap| {
        headers.get("grpc-status").map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(2)
        })
    };
    // A trailers-only answer: its status in the head.
    if let Some(code) = code(&parts.headers) {
        return if code == 0 {
            Found::Malformed
        } else {
            Found::GrpcStatus(code)
        };
    }
    let Ok(collected) = http_body_util::Limited::new(body, MAX_BODY).collect().await else {
        return Found::Error(ErrorKind::ResponseIncomplete);
    };
    match collected.trailers().and_then(code) {
        Some(0) => {}
        Some(code) => return Found::GrpcStatus(code),
        None => return Found::Malformed,
    }
    match grpc_health_status(&collected.to_bytes()) {
        Some(1) => Found::Passed,
        Some(status) => Found::NotServing(status),
        None => Found::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_health_request_is_framed_with_the_service_name_as_field_one() {
        assert_eq!(&grpc_request("")[..], [0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_request("a.B")[..],
            [0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']
        );
    }

    #[test]
    fn a_grpc_health_answer_is_read_whatever_other_fields_it_has() {
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(
            grpc_health_status(&[0, 0, 0, 0, 0]),
            Some(0),
            "no field: UNKNOWN"
        );
        // An unknown length-delimited field 2 first, then the status.
        assert_eq!(
            grpc_health_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Some(1)
        );
        assert_eq!(
            grpc_health_status(&[1, 0, 0, 0, 2, 0x08, 1]),
            None,
            "compressed"
        );
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 9, 0x08, 1]), None, "short");
        assert_eq!(grpc_health_status(&[0, 0, 0]), None);
        assert_eq!(
            grpc_health_status(&[0, 0, 0, 0, 2, 0x12, 9]),
            None,
            "field past the end"
        );
    }

    proptest::proptest! {
        /// Any bytes: a status or nothing, never a panic.
        #[test]
        fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = grpc_health_status(&bytes);
        }
    }
}
