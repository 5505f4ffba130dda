//! The parts of every kind's answer that depend on the kind alone, rendered once
//! per [`Renderer`]: a plain 502 is then a handful of cheap clones.

use super::{Renderer, RequestInfo, body};
use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::HeaderValue;

/// What every failure of one kind answers when it shows no details, no upstream
/// status and no request id: cloned per answer without allocating.
pub(super) struct Prerendered {
    pub(super) proxy_status: HeaderValue,
    pub(super) grpc_message: Option<HeaderValue>,
    pub(super) text: Bytes,
    pub(super) problem_json: Bytes,
    pub(super) html: Bytes,
}

/// Every kind's plain parts, indexed by [`ErrorKind::index`]; none for a custom
/// renderer, which renders everything itself.
pub(super) fn render_all(renderer: &Renderer) -> Box<[Prerendered]> {
    if renderer.custom.is_some() {
        return Box::default();
    }
    let info = RequestInfo::default();
    ErrorKind::ALL
        .iter()
        .map(|&kind| {
            let status = renderer.status_for(kind);
            let err = GatewayError::new(kind).answered_with(status);
            Prerendered {
                proxy_status: renderer.proxy_status(&err),
                grpc_message: renderer.grpc_message(&err),
                text: body::text(renderer, &err, &info, status),
                problem_json: body::problem_json(renderer, &err, &info, status),
                html: body::html(renderer, &err, &info, status),
            }
        })
        .collect()
}
