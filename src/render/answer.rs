//! Building the answer: status, representation, headers, and the gRPC status.

use super::{Format, PROXY_STATUS, Renderer, RequestInfo, body, prerendered};
use crate::error::GatewayError;
use crate::grpc;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

impl Renderer {
    /// Renders, taking from `plain` (this kind's answer parts rendered once)
    /// whatever does not depend on this error or request.
    pub(super) fn render_with(
        &self,
        err: &GatewayError,
        info: &RequestInfo,
        plain: Option<&prerendered::Prerendered>,
    ) -> Response<Full<Bytes>> {
        // A status the error was given wins over the per-kind one.
        let status = err
            .status_if_set()
            .unwrap_or_else(|| self.status_for(err.kind()));
        let err = err.clone().answered_with(status);
        let (mut res, err) = match &self.custom {
            Some(custom) => {
                let res = custom(&err, info).map(Full::new);
                // The error says what the client got, whatever the renderer chose.
                let answered = res.status();
                (res, err.answered_with(answered))
            }
            None => (self.builtin(&err, info, status, plain), err),
        };
        res.extensions_mut().insert(err);
        res
    }

    fn builtin(
        &self,
        err: &GatewayError,
        info: &RequestInfo,
        status: StatusCode,
        plain: Option<&prerendered::Prerendered>,
    ) -> Response<Full<Bytes>> {
        let format = info.format();
        // What may come from the parts rendered once: nothing that shows details,
        // an upstream's status, a TLS alert, or a request id.
        let same_head = plain.filter(|_| {
            !self.expose_details
                && err.received_status().is_none()
                && err.tls_alert().is_none()
                && status == self.status_for(err.kind())
        });
        let same_body = same_head.filter(|_| info.request_id().is_none());
        let (content_type, body) = match format {
            Format::Grpc => (
                info.grpc_content_type()
                    .cloned()
                    .unwrap_or(grpc::CONTENT_TYPE),
                Bytes::new(),
            ),
            Format::ProblemJson | Format::Json => (
                HeaderValue::from_static(if format == Format::Json {
                    "application/json"
                } else {
                    "application/problem+json"
                }),
                same_body.map_or_else(
                    || body::problem_json(self, err, info, status),
                    |p| p.problem_json.clone(),
                ),
            ),
            Format::Html => (
                HeaderValue::from_static("text/html; charset=utf-8"),
                same_body.map_or_else(|| body::html(self, err, info, status), |p| p.html.clone()),
            ),
            Format::Text => (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                same_body.map_or_else(|| body::text(self, err, info, status), |p| p.text.clone()),
            ),
        };
        let body = if info.is_head { Bytes::new() } else { body };
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = if format == Format::Grpc {
            StatusCode::OK
        } else {
            status
        };
        let headers = res.headers_mut();
        headers.reserve(7);
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The body was chosen by the request's `Accept` (RFC 9110 §12.5.5).
        if format != Format::Grpc {
            headers.insert(header::VARY, HeaderValue::from_static("accept"));
        }
        let proxy_status =
            same_head.map_or_else(|| self.proxy_status(err), |p| p.proxy_status.clone());
        headers.insert(PROXY_STATUS, proxy_status);
        if let Some(id) = info.request_id() {
            headers.insert(self.request_id_header.clone(), id.clone());
        }
        // The error's own estimate (the time until an ejected endpoint's probe)
        // wins over the configured one, which only a 503 carries.
        let retry_after = match err.retry_after() {
            Some(after) => Some(after),
            None if status == StatusCode::SERVICE_UNAVAILABLE => {
                self.retry_after.map(std::time::Duration::from_secs)
            }
            None => None,
        };
        if let Some(after) = retry_after {
            headers.insert(header::RETRY_AFTER, retry_after_secs(after));
            // A gRPC client reads the wait from its own metadata (gRFC A6), in
            // milliseconds.
            if format == Format::Grpc {
                headers.insert(grpc::GRPC_RETRY_PUSHBACK_MS, grpc::format_pushback(after));
            }
        }
        if format == Format::Grpc {
            self.insert_grpc_status(headers, err, plain);
        }
        res
    }

    pub(super) fn insert_grpc_status(
        &self,
        headers: &mut HeaderMap,
        err: &GatewayError,
        plain: Option<&prerendered::Prerendered>,
    ) {
        let code = err.kind().grpc_code();
        headers.insert(grpc::GRPC_STATUS, HeaderValue::from_static(code.as_str()));
        let message = match plain.filter(|_| !self.expose_details) {
            Some(p) => p.grpc_message.clone(),
            None => self.grpc_message(err),
        };
        if let Some(value) = message {
            headers.insert(grpc::GRPC_MESSAGE, value);
        }
    }

    pub(super) fn grpc_message(&self, err: &GatewayError) -> Option<HeaderValue> {
        let message = if self.expose_details {
            grpc::percent_encode(&body::message_with_details(err))
        } else {
            grpc::percent_encode(err.kind().description())
        };
        HeaderValue::from_maybe_shared(Bytes::from(message)).ok()
    }
}

/// Whole seconds, rounded up, at least one: `Retry-After: 0` would invite an
/// immediate retry into the same failure.
fn retry_after_secs(after: std::time::Duration) -> HeaderValue {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}
