//! The parts of every kind's answer that depend on the kind alone, rendered once
//! when a [`BadGatewayLayer`](crate::BadGatewayLayer) makes its service.

use super::{Renderer, RequestInfo, body};
use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Full;

/// What every failure of one kind answers when it shows no details, no upstream
/// status and no request id: cloned per answer without allocating.
pub(super) struct Plain {
    pub(super) proxy_status: HeaderValue,
    pub(super) grpc_message: Option<HeaderValue>,
    pub(super) text: Bytes,
    pub(super) problem_json: Bytes,
    pub(super) html: Bytes,
}

/// A [`Renderer`] with its plain answers rendered: what a layer answers with.
pub(crate) struct Answers {
    renderer: Renderer,
    /// Indexed by [`ErrorKind::index`]; empty for a custom renderer.
    plain: Box<[Plain]>,
}

impl Answers {
    pub(crate) fn new(renderer: Renderer) -> Self {
        let plain = if renderer.custom.is_some() {
            Box::default()
        } else {
            let info = RequestInfo::default();
            ErrorKind::ALL
                .iter()
                .map(|&kind| {
                    let status = renderer.status_for(kind);
                    let err = GatewayError::new(kind).with_status(status);
                    Plain {
                        proxy_status: renderer.proxy_status(&err),
                        grpc_message: renderer.grpc_message(&err),
                        text: body::text(&renderer, &err, &info, status),
                        problem_json: body::problem_json(&renderer, &err, &info, status),
                        html: body::html(&renderer, &err, &info, status),
                    }
                })
                .collect()
        };
        Self { renderer, plain }
    }

    pub(crate) fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// [`Renderer::render`], from the parts rendered once where it can.
    pub(crate) fn render(&self, err: &GatewayError, info: &RequestInfo) -> Response<Full<Bytes>> {
        let plain = self.plain.get(err.kind().index());
        self.renderer.render_with(err, info, plain)
    }

    /// [`Renderer::grpc_trailers`], from the parts rendered once where it can.
    pub(crate) fn grpc_trailers(&self, err: &GatewayError) -> HeaderMap {
        let mut trailers = HeaderMap::with_capacity(2);
        let plain = self.plain.get(err.kind().index());
        self.renderer.insert_grpc_status(&mut trailers, err, plain);
        trailers
    }
}

impl Default for Answers {
    fn default() -> Self {
        Self::new(Renderer::new())
    }
}
