//! What an answer needs to know of the request it answers, captured before the
//! request is moved into the upstream service.

use super::negotiate::{self, Format};
use crate::grpc::is_grpc_content_type;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use std::borrow::Cow;

/// The header a request id is echoed from: `x-request-id`.
///
/// ```
/// assert_eq!(tower_bad_gateway::render::X_REQUEST_ID, "x-request-id");
/// ```
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a synthetic answer, the failure log and the
/// [`on_failure_with_request`](crate::BadGatewayLayer::on_failure_with_request)
/// hook need to know about the request.
///
/// Captured when the request goes in (it is moved into the upstream service), so
/// it holds only cheap clones: of two header values (reference counts, no
/// allocation), the method and the path.
///
/// ```
/// use tower_bad_gateway::render::{Format, RequestInfo};
///
/// let req = http::Request::get("/items/7?page=2")
///     .header("accept", "text/html,*/*;q=0.8")
///     .header("x-request-id", "abc-1")
///     .body(())
///     .unwrap();
/// let info = RequestInfo::from_request(&req);
/// assert_eq!(info.format(), Format::Html);
/// assert_eq!(info.request_id().unwrap(), "abc-1");
/// assert_eq!(info.method(), "GET");
/// assert_eq!(info.path(), Some("/items/7"));
/// assert!(!info.is_grpc());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The `Accept` value, or, for a gRPC call (which is answered in gRPC whatever
    /// it accepts), its `Content-Type`: one field, so the capture stays small.
    format_hint: FormatHint,
    /// The id as it came: echoed only if [`is_safe_to_echo`], logged sanitized.
    request_id: Option<HeaderValue>,
    method: Method,
    /// The path and query as they came (a reference count on the URI's bytes).
    path: Option<PathAndQuery>,
    pub(crate) is_head: bool,
}

/// How much of a request id the failure log keeps.
pub(crate) const LOG_ID_MAX: usize = 128;
/// How much of a path the failure log keeps.
pub(crate) const LOG_PATH_MAX: usize = 256;

#[derive(Debug, Clone, Default)]
enum FormatHint {
    #[default]
    None,
    Accept(HeaderValue),
    /// A gRPC call's content type, and whether trailers reach the caller (see
    /// `grpc::can_receive_trailers`; the middleware sets it, true until then).
    Grpc(HeaderValue, bool),
}

/// Up to this many header names, one pass over the map finds the three values
/// faster than three hashed lookups (a lookup hashes the name and probes; a pass
/// compares each name, which for standard names is one byte).
const SCAN_MAX: usize = 12;

impl RequestInfo {
    /// Captures what rendering needs from a request.
    pub fn from_request<B>(request: &Request<B>) -> Self {
        Self::from_parts(request.method(), request.headers(), &X_REQUEST_ID).with_uri(request.uri())
    }

    /// Keeps the path of `uri` (for logs and the failure hook).
    pub(crate) fn with_uri(mut self, uri: &Uri) -> Self {
        self.path = uri.path_and_query().cloned();
        self
    }

    /// Captures what rendering needs from a request's method and headers, with the
    /// request id read from `request_id_header`.
    pub fn from_parts(
        method: &Method,
        headers: &HeaderMap,
        request_id_header: &HeaderName,
    ) -> Self {
        let is_head = method == Method::HEAD;
        if headers.is_empty() {
            return Self {
                is_head,
                method: method.clone(),
                ..Self::default()
            };
        }
        // gRPC calls are always POSTs: other methods skip the `Content-Type`.
        let post = method == Method::POST;
        let (mut accept, mut content_type, mut request_id) = (None, None, None);
        if headers.keys_len() <= SCAN_MAX {
            // The first value of each, as `HeaderMap::get` would give.
            for (name, value) in headers {
                if *name == header::ACCEPT {
                    accept = accept.or(Some(value));
                } else if *name == header::CONTENT_TYPE {
                    content_type = content_type.or(Some(value));
                } else if name == request_id_header {
                    request_id = request_id.or(Some(value));
                }
            }
        } else {
            accept = headers.get(header::ACCEPT);
            content_type = post.then(|| headers.get(header::CONTENT_TYPE)).flatten();
            request_id = headers.get(request_id_header);
        }
        let format_hint = match content_type {
            Some(ct) if post && is_grpc_content_type(ct) => FormatHint::Grpc(ct.clone(), true),
            _ => accept.map_or(FormatHint::None, |a| FormatHint::Accept(a.clone())),
        };
        Self {
            format_hint,
            request_id: request_id.cloned(),
            method: method.clone(),
            path: None,
            is_head,
        }
    }

    /// Whether the request is a gRPC call (`Content-Type: application/grpc*`).
    pub fn is_grpc(&self) -> bool {
        matches!(self.format_hint, FormatHint::Grpc(..))
    }

    /// The request id to echo, if the request had a well-formed one (up to 128
    /// bytes of visible ASCII).
    pub fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref().filter(|v| is_safe_to_echo(v))
    }

    /// The request id as text (it is visible ASCII, or it was not kept).
    pub(crate) fn request_id_str(&self) -> Option<&str> {
        self.request_id().and_then(|v| v.to_str().ok())
    }

    /// The request id for a log line: the first 128 bytes, anything but visible
    /// ASCII replaced with `?`. Unlike [`request_id`](Self::request_id) it keeps a
    /// malformed id, so a log still names the request.
    ///
    /// ```
    /// use tower_bad_gateway::render::RequestInfo;
    ///
    /// let req = http::Request::get("/").header("x-request-id", "id 1\t2").body(()).unwrap();
    /// let info = RequestInfo::from_request(&req);
    /// assert!(info.request_id().is_none()); // not echoed
    /// assert_eq!(info.request_id_for_log().as_deref(), Some("id?1?2"));
    /// ```
    pub fn request_id_for_log(&self) -> Option<Cow<'_, str>> {
        let id = self.request_id.as_ref()?.as_bytes();
        (!id.is_empty()).then(|| printable(id, LOG_ID_MAX))
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's path, without the query, when it was captured (by
    /// [`from_request`](Self::from_request), and by the middleware).
    pub fn path(&self) -> Option<&str> {
        self.path.as_ref().map(PathAndQuery::path)
    }

    /// The path for a log line: the first 256 bytes, anything but visible ASCII
    /// replaced with `?`; never the query, which may hold secrets.
    ///
    /// ```
    /// use tower_bad_gateway::render::RequestInfo;
    ///
    /// let req = http::Request::get("/search?token=secret").body(()).unwrap();
    /// assert_eq!(RequestInfo::from_request(&req).path_for_log().as_deref(), Some("/search"));
    /// ```
    pub fn path_for_log(&self) -> Option<Cow<'_, str>> {
        self.path().map(|p| printable(p.as_bytes(), LOG_PATH_MAX))
    }

    /// The gRPC content type to answer with, for a gRPC call.
    pub(crate) fn grpc_content_type(&self) -> Option<&HeaderValue> {
        match &self.format_hint {
            FormatHint::Grpc(ct, _) => Some(ct),
            _ => None,
        }
    }

    /// For a gRPC call, whether trailers reach the caller.
    pub(crate) fn grpc_trailers(&self) -> bool {
        matches!(self.format_hint, FormatHint::Grpc(_, true))
    }

    /// Records whether trailers reach a gRPC caller.
    pub(crate) fn set_grpc_trailers(&mut self, reach: bool) {
        if let FormatHint::Grpc(_, trailers) = &mut self.format_hint {
            *trailers = reach;
        }
    }

    /// The representation the answer will use.
    pub fn format(&self) -> Format {
        match &self.format_hint {
            FormatHint::Grpc(..) => Format::Grpc,
            FormatHint::Accept(accept) => negotiate::negotiate(Some(accept)),
            FormatHint::None => negotiate::negotiate(None),
        }
    }
}

/// Up to `max` bytes of `bytes`, each byte that is not visible ASCII replaced
/// with `?`; borrowed when nothing had to change.
pub(crate) fn printable(bytes: &[u8], max: usize) -> Cow<'_, str> {
    let cut = &bytes[..bytes.len().min(max)];
    if cut.iter().all(u8::is_ascii_graphic) {
        // Visible ASCII is UTF-8.
        if let Ok(s) = std::str::from_utf8(cut) {
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(
        cut.iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect(),
    )
}

/// A request id is echoed only when it is short, visible ASCII.
fn is_safe_to_echo(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_parts` scans small header maps and looks up in large ones: both must
    /// read the same first values, and ignore a gRPC type on anything but a POST.
    #[test]
    fn request_info_is_the_same_for_small_and_large_header_maps() {
        for fillers in [0, 3, SCAN_MAX, SCAN_MAX + 1, 40] {
            for method in [Method::POST, Method::GET] {
                let mut headers = HeaderMap::new();
                for i in 0..fillers {
                    let name = HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap();
                    headers.insert(name, HeaderValue::from_static("1"));
                }
                headers.append(header::ACCEPT, HeaderValue::from_static("application/json"));
                headers.append(header::ACCEPT, HeaderValue::from_static("text/html"));
                headers.append(&X_REQUEST_ID, HeaderValue::from_static("first-id"));
                headers.append(&X_REQUEST_ID, HeaderValue::from_static("second-id"));
                let plain = RequestInfo::from_parts(&method, &headers, &X_REQUEST_ID);
                assert_eq!(plain.format(), Format::Json, "{fillers} {method}");
                assert_eq!(
                    plain.request_id().unwrap(),
                    "first-id",
                    "{fillers} {method}"
                );

                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc+proto"),
                );
                let grpc = RequestInfo::from_parts(&method, &headers, &X_REQUEST_ID);
                let is_post = method == Method::POST;
                assert_eq!(grpc.is_grpc(), is_post, "{fillers} {method}");
                let expected = if is_post { Format::Grpc } else { Format::Json };
                assert_eq!(grpc.format(), expected, "{fillers} {method}");
                if is_post {
                    assert_eq!(grpc.grpc_content_type().unwrap(), "application/grpc+proto");
                }
            }
        }
    }
}
