//! The gateway's page in place of an upstream's own error answer (nginx's
//! `proxy_intercept_errors`): the upstream's status, the gateway's body.

use super::body::{self, Subject};
use super::{Format, PROXY_STATUS, Renderer, RequestInfo, proxy_status};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The upstream's headers the page keeps: what a client needs to act on the
/// status (RFC 9110 requires `WWW-Authenticate` on a 401 (§15.5.2), and
/// `Proxy-Authenticate` on a 407; `Allow` on a 405 (§15.5.6); a 416 says the
/// representation's length in `Content-Range` (§15.5.17)). A 426 is never
/// intercepted: its `Upgrade` is a MUST (§15.5.22) whose protocol the page could
/// not offer ([`ResponsePolicy::intercept_on`](crate::ResponsePolicy::intercept_on)
/// leaves it out).
const KEPT: [HeaderName; 5] = [
    header::WWW_AUTHENTICATE,
    header::PROXY_AUTHENTICATE,
    header::ALLOW,
    header::RETRY_AFTER,
    header::CONTENT_RANGE,
];

impl Renderer {
    /// The page for an upstream's own error answer with `status`, negotiated as a
    /// failure's answer is (a gRPC call is never intercepted). The upstream's
    /// `Proxy-Status` members are kept, then ours with `received-status`.
    pub(crate) fn intercepted(
        &self,
        status: StatusCode,
        info: &RequestInfo,
        upstream: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let what = Subject::upstream(status);
        let (content_type, body) = match info.format() {
            format @ (Format::ProblemJson | Format::Json) => (
                if format == Format::Json {
                    "application/json"
                } else {
                    "application/problem+json"
                },
                body::problem_json_of(self, &what, info, status),
            ),
            Format::Html => (
                "text/html; charset=utf-8",
                body::html_of(self, &what, info, status),
            ),
            Format::Text | Format::Grpc => (
                "text/plain; charset=utf-8",
                body::text_of(self, &what, info, status),
            ),
        };
        let body = if info.is_head { Bytes::new() } else { body };
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The page was chosen by the request's `Accept` (RFC 9110 §12.5.5).
        headers.insert(header::VARY, HeaderValue::from_static("accept"));
        for name in KEPT {
            for value in upstream.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        for member in upstream.get_all(PROXY_STATUS) {
            headers.append(PROXY_STATUS, member.clone());
        }
        headers.append(
            PROXY_STATUS,
            proxy_status::passed_through(&self.proxy_name, status),
        );
        if let Some(id) = info.request_id() {
            headers.insert(self.request_id_header.clone(), id.clone());
        }
        res
    }
}
