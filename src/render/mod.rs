//! Answering: [`GatewayError`] → a synthetic response.
//!
//! The [`Renderer`] picks the status (per kind, overridable), negotiates the
//! representation from the request ([`RequestInfo`]):
//!
//! | request | answer |
//! |---|---|
//! | `Content-Type: application/grpc*` | gRPC trailers-only: HTTP 200, `grpc-status` 14 `UNAVAILABLE` (4 `DEADLINE_EXCEEDED` for timeouts), percent-encoded `grpc-message` |
//! | `Accept` prefers JSON | RFC 9457 `application/problem+json` |
//! | `Accept` prefers `text/html` | an HTML page ([templatable](Renderer::with_html_template)) |
//! | anything else | `text/plain` |
//!
//! and adds the headers every answer carries: `Proxy-Status` (RFC 9209),
//! `Cache-Control: no-store`, the request id when the request had one, and
//! `Retry-After` on 503 when configured. The [`GatewayError`] goes into the
//! response extensions.
//!
//! Nothing internal leaks by default: no upstream host, port or io message appears
//! in the body or the headers unless [`expose_details`](Renderer::expose_details) is
//! on, and even then no CR, LF or NUL can reach a header.
//!
//! ```
//! use tower_bad_gateway::render::{Renderer, RequestInfo};
//! use tower_bad_gateway::{ErrorKind, GatewayError};
//!
//! let request = http::Request::get("/").header("accept", "application/json").body(()).unwrap();
//! let info = RequestInfo::from_request(&request);
//! let res = Renderer::new().render(&GatewayError::new(ErrorKind::ConnectionRefused), &info);
//! assert_eq!(res.status(), 502);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; error=connection_refused");
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! ```

mod grpc;
mod negotiate;
mod sf;

pub use self::negotiate::Format;

use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::fmt::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The header a request id is echoed from: `x-request-id`.
///
/// ```
/// assert_eq!(tower_bad_gateway::render::X_REQUEST_ID, "x-request-id");
/// ```
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The `Proxy-Status` header (RFC 9209).
///
/// ```
/// assert_eq!(tower_bad_gateway::render::PROXY_STATUS, "proxy-status");
/// ```
pub const PROXY_STATUS: HeaderName = HeaderName::from_static("proxy-status");

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const DEFAULT_PROXY_NAME: &str = "tower-bad-gateway";
/// How much of an error's text goes into an answer with details exposed.
const MAX_DETAILS: usize = 512;

/// The default HTML page. See [`Renderer::with_html_template`] for its placeholders.
///
/// ```
/// use tower_bad_gateway::render::DEFAULT_HTML_TEMPLATE;
/// assert!(DEFAULT_HTML_TEMPLATE.contains("{status} {reason}"));
/// ```
pub const DEFAULT_HTML_TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} {reason}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2328}h1{font-size:1.5rem}p.meta{color:#59636e;font-size:.875rem}</style>
</head>
<body>
<h1>{status} {reason}</h1>
<p>{message}</p>
<p class="meta">{error}{request_id}</p>
{details}
</body>
</html>
"#;

type CustomRender = dyn Fn(&GatewayError, &RequestInfo) -> Response<Bytes> + Send + Sync;

/// What a synthetic answer needs to know about the request it answers.
///
/// Captured when the request goes in (it is moved into the upstream service), so
/// it holds only cheap clones of three header values.
///
/// ```
/// use tower_bad_gateway::render::{Format, RequestInfo};
///
/// let req = http::Request::get("/")
///     .header("accept", "text/html,*/*;q=0.8")
///     .header("x-request-id", "abc-1")
///     .body(())
///     .unwrap();
/// let info = RequestInfo::from_request(&req);
/// assert_eq!(info.format(), Format::Html);
/// assert_eq!(info.request_id().unwrap(), "abc-1");
/// assert!(!info.is_grpc());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The `Accept` value, or, for a gRPC call (which is answered in gRPC whatever
    /// it accepts), its `Content-Type`: one field, so the capture stays small.
    format_hint: FormatHint,
    request_id: Option<HeaderValue>,
    is_head: bool,
}

#[derive(Debug, Clone, Default)]
enum FormatHint {
    #[default]
    None,
    Accept(HeaderValue),
    Grpc(HeaderValue),
}

/// Up to this many header names, one pass over the map finds the three values
/// faster than three hashed lookups (a lookup hashes the name and probes; a pass
/// compares each name, which for standard names is one byte).
const SCAN_MAX: usize = 12;

impl RequestInfo {
    /// Captures what rendering needs from a request.
    pub fn from_request<B>(request: &Request<B>) -> Self {
        Self::from_parts(request.method(), request.headers(), &X_REQUEST_ID)
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
            Some(ct) if post && is_grpc_content_type(ct) => FormatHint::Grpc(ct.clone()),
            _ => accept.map_or(FormatHint::None, |a| FormatHint::Accept(a.clone())),
        };
        Self {
            format_hint,
            request_id: request_id.filter(|v| is_safe_to_echo(v)).cloned(),
            is_head,
        }
    }

    /// Whether the request is a gRPC call (`Content-Type: application/grpc*`).
    pub fn is_grpc(&self) -> bool {
        matches!(self.format_hint, FormatHint::Grpc(_))
    }

    /// The request id to echo, if the request had a well-formed one.
    pub fn request_id(&self) -> Option<&HeaderValue> {
        self.request_id.as_ref()
    }

    /// The request id as text (it is visible ASCII, or it was not kept).
    fn request_id_str(&self) -> Option<&str> {
        self.request_id.as_ref().and_then(|v| v.to_str().ok())
    }

    /// The gRPC content type to answer with, for a gRPC call.
    fn grpc_content_type(&self) -> Option<&HeaderValue> {
        match &self.format_hint {
            FormatHint::Grpc(ct) => Some(ct),
            _ => None,
        }
    }

    /// The representation the answer will use.
    pub fn format(&self) -> Format {
        match &self.format_hint {
            FormatHint::Grpc(_) => Format::Grpc,
            FormatHint::Accept(accept) => negotiate::negotiate(Some(accept)),
            FormatHint::None => negotiate::negotiate(None),
        }
    }
}

/// Whether a request is a gRPC call: a `POST` (gRPC never uses another method,
/// so other requests skip the header lookup) with a gRPC content type.
pub(crate) fn is_grpc_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(is_grpc_content_type)
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web`, ...
pub(crate) fn is_grpc_content_type(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc")
}

/// A request id is echoed only when it is short, visible ASCII.
fn is_safe_to_echo(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| b.is_ascii_graphic())
}

/// Renders a [`GatewayError`] as the answer to a request.
///
/// Cheap to clone (configuration behind `Arc`s). The [`BadGatewayLayer`] builder
/// methods of the same names configure the renderer it uses.
///
/// [`BadGatewayLayer`]: crate::BadGatewayLayer
///
/// ```
/// use tower_bad_gateway::render::{Renderer, RequestInfo};
/// use tower_bad_gateway::{ErrorKind, GatewayError};
///
/// let renderer = Renderer::new().with_proxy_name("edge").expose_details(false);
/// let res = renderer.render(&GatewayError::new(ErrorKind::DnsError), &RequestInfo::default());
/// assert_eq!(res.status(), 502);
/// assert_eq!(res.headers()["proxy-status"], "edge; error=dns_error");
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
#[derive(Clone)]
pub struct Renderer {
    statuses: Vec<(ErrorKind, StatusCode)>,
    proxy_name: Arc<str>,
    expose_details: bool,
    html_template: Option<Arc<str>>,
    custom: Option<Arc<CustomRender>>,
    retry_after: Option<u64>,
    request_id_header: HeaderName,
    /// What every failure of a kind answers when it has no request id, no
    /// received status and no details: built once, then cloned without allocating.
    cache: Arc<OnceLock<Box<[Cached]>>>,
}

/// The parts of an answer that depend on the kind alone.
struct Cached {
    proxy_status: HeaderValue,
    grpc_message: Option<HeaderValue>,
    text: Bytes,
    problem_json: Bytes,
    html: Bytes,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("statuses", &self.statuses)
            .field("proxy_name", &self.proxy_name)
            .field("expose_details", &self.expose_details)
            .field("html_template", &self.html_template.is_some())
            .field("custom", &self.custom.is_some())
            .field("retry_after", &self.retry_after)
            .field("request_id_header", &self.request_id_header)
            .finish()
    }
}

impl Renderer {
    /// The default renderer: default statuses, proxy name `tower-bad-gateway`,
    /// no details.
    pub fn new() -> Self {
        Self {
            statuses: Vec::new(),
            proxy_name: Arc::from(DEFAULT_PROXY_NAME),
            expose_details: false,
            html_template: None,
            custom: None,
            retry_after: None,
            request_id_header: X_REQUEST_ID,
            cache: Arc::default(),
        }
    }

    /// The cached parts for `kind`, built on first use.
    fn cached(&self, kind: ErrorKind) -> &Cached {
        let all = self.cache.get_or_init(|| {
            let plain = RequestInfo::default();
            ErrorKind::ALL
                .iter()
                .map(|&kind| {
                    let err = GatewayError::new(kind);
                    let status = self.status_for(kind);
                    Cached {
                        proxy_status: self.build_proxy_status(&err),
                        grpc_message: self.build_grpc_message(&err),
                        text: self.text(&err, &plain, status),
                        problem_json: self.problem_json(&err, &plain, status),
                        html: self.html(&err, &plain, status),
                    }
                })
                .collect()
        });
        // `ALL` lists every kind in declaration order.
        &all[kind as usize]
    }

    /// Whether `err`'s answer to `info` is the cached one.
    fn is_plain(&self, err: &GatewayError, info: &RequestInfo) -> bool {
        !self.expose_details && err.received_status().is_none() && info.request_id.is_none()
    }

    /// A copy whose cache starts empty: for builder methods that change answers.
    fn uncached(mut self) -> Self {
        self.cache = Arc::default();
        self
    }

    /// Answers `kind` with `status` instead of its default.
    ///
    /// Only 4xx and 5xx statuses are taken: a failure must never look like a
    /// success to a client or a cache, so any other status leaves the kind's
    /// default in place.
    ///
    /// ```
    /// use tower_bad_gateway::render::Renderer;
    /// use tower_bad_gateway::ErrorKind;
    /// use http::StatusCode;
    ///
    /// let r = Renderer::new().with_status(ErrorKind::ConnectionRefused, StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(r.status_for(ErrorKind::ConnectionRefused), StatusCode::SERVICE_UNAVAILABLE);
    /// let r = r.with_status(ErrorKind::ConnectionRefused, StatusCode::OK);
    /// assert_eq!(r.status_for(ErrorKind::ConnectionRefused), StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn with_status(mut self, kind: ErrorKind, status: StatusCode) -> Self {
        self = self.uncached();
        if !(status.is_client_error() || status.is_server_error()) {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                kind = kind.as_str(),
                status = status.as_u16(),
                "ignoring a non-error status for a failure"
            );
            return self;
        }
        self.statuses.retain(|(k, _)| *k != kind);
        self.statuses.push((kind, status));
        self
    }

    /// The name this gateway gives itself in `Proxy-Status` (default
    /// `tower-bad-gateway`). Written as a structured-field token when it is one, else
    /// as a quoted string with anything but printable ASCII replaced.
    ///
    /// ```
    /// use tower_bad_gateway::render::Renderer;
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    ///
    /// let r = Renderer::new().with_proxy_name("edge eu-1\r\n");
    /// let value = r.proxy_status(&GatewayError::new(ErrorKind::ConnectionRefused));
    /// assert_eq!(value, r#""edge eu-1??"; error=connection_refused"#);
    /// ```
    pub fn with_proxy_name(mut self, name: &str) -> Self {
        self = self.uncached();
        let mut out = String::new();
        sf::push_token_or_string(&mut out, name, 128);
        self.proxy_name = Arc::from(out);
        self
    }

    /// Shows the upstream's address and the error's text in answers (body, and
    /// `Proxy-Status` `next-hop` and `details`). Off by default: they help
    /// attackers map your network. Even on, no CR, LF or NUL reaches a header.
    pub fn expose_details(mut self, expose: bool) -> Self {
        self = self.uncached();
        self.expose_details = expose;
        self
    }

    /// Replaces the HTML page. Placeholders, all HTML-escaped: `{status}` (e.g. `502`),
    /// `{reason}` (`Bad Gateway`), `{message}` (a sentence safe for anyone),
    /// `{error}` (the `Proxy-Status` error type), `{request_id}` (` · request id X` or
    /// empty), `{details}` (a `<pre>` with the error text when details are exposed,
    /// else empty). Unknown placeholders are left as they are.
    ///
    /// ```
    /// use tower_bad_gateway::render::{Renderer, RequestInfo};
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    ///
    /// let r = Renderer::new().with_html_template("<h1>Oops: {status}</h1><p>{message}</p>");
    /// let req = http::Request::get("/").header("accept", "text/html").body(()).unwrap();
    /// let res = r.render(&GatewayError::new(ErrorKind::ConnectionRefused), &RequestInfo::from_request(&req));
    /// let body = res.into_body();
    /// # let _ = body;
    /// ```
    pub fn with_html_template(mut self, template: impl Into<String>) -> Self {
        self = self.uncached();
        self.html_template = Some(Arc::from(template.into()));
        self
    }

    /// Replaces all of the rendering with `f`. The `GatewayError` is still put in
    /// the response extensions.
    ///
    /// ```
    /// use tower_bad_gateway::render::{Renderer, RequestInfo};
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    /// use bytes::Bytes;
    ///
    /// let r = Renderer::new().with_renderer(|err, _info| {
    ///     http::Response::builder()
    ///         .status(503)
    ///         .body(Bytes::from(format!("try later ({})", err.kind())))
    ///         .unwrap()
    /// });
    /// let res = r.render(&GatewayError::new(ErrorKind::ConnectionRefused), &RequestInfo::default());
    /// assert_eq!(res.status(), 503);
    /// assert!(res.extensions().get::<GatewayError>().is_some());
    /// ```
    pub fn with_renderer<F>(mut self, f: F) -> Self
    where
        F: Fn(&GatewayError, &RequestInfo) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.custom = Some(Arc::new(f));
        self
    }

    /// Adds `Retry-After` (in whole seconds) to every 503 answer.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after.as_secs().max(1));
        self
    }

    /// Reads the request id to echo from this header instead of `x-request-id`.
    pub fn with_request_id_header(mut self, name: HeaderName) -> Self {
        self.request_id_header = name;
        self
    }

    /// The header request ids are echoed from.
    pub fn request_id_header(&self) -> &HeaderName {
        &self.request_id_header
    }

    /// The status answered for `kind`.
    pub fn status_for(&self, kind: ErrorKind) -> StatusCode {
        self.statuses
            .iter()
            .find_map(|(k, s)| (*k == kind).then_some(*s))
            .unwrap_or_else(|| kind.default_status())
    }

    /// The `Proxy-Status` value for `err`: always a valid structured-field list.
    pub fn proxy_status(&self, err: &GatewayError) -> HeaderValue {
        if !self.expose_details && err.received_status().is_none() {
            return self.cached(err.kind()).proxy_status.clone();
        }
        self.build_proxy_status(err)
    }

    fn build_proxy_status(&self, err: &GatewayError) -> HeaderValue {
        let mut out = String::with_capacity(self.proxy_name.len() + 48);
        out.push_str(&self.proxy_name);
        out.push_str("; error=");
        out.push_str(err.kind().as_str());
        if let Some(status) = err.received_status() {
            let _ = write!(out, "; received-status={}", status.as_u16());
        }
        if self.expose_details {
            if let Some(hop) = err.next_hop() {
                out.push_str("; next-hop=");
                sf::push_string(&mut out, hop.as_str(), 256);
            }
            let chain = err.source_chain();
            if !chain.is_empty() {
                out.push_str("; details=");
                sf::push_string(&mut out, &chain, MAX_DETAILS);
            }
        }
        // Every byte is printable ASCII by construction; the fallback is unreachable
        // but keeps this free of panics.
        HeaderValue::from_maybe_shared(Bytes::from(out)).unwrap_or_else(|_| {
            HeaderValue::from_static("tower-bad-gateway; error=proxy_internal_error")
        })
    }

    /// The trailers that end a gRPC response whose body failed: `grpc-status` and
    /// `grpc-message`.
    pub fn grpc_trailers(&self, err: &GatewayError) -> HeaderMap {
        let mut trailers = HeaderMap::with_capacity(2);
        self.insert_grpc_status(&mut trailers, err);
        trailers
    }

    fn insert_grpc_status(&self, headers: &mut HeaderMap, err: &GatewayError) {
        let code = grpc::code(err.kind());
        headers.insert(GRPC_STATUS, HeaderValue::from_static(grpc::code_str(code)));
        let message = if self.expose_details {
            self.build_grpc_message(err)
        } else {
            self.cached(err.kind()).grpc_message.clone()
        };
        if let Some(value) = message {
            headers.insert(GRPC_MESSAGE, value);
        }
    }

    fn build_grpc_message(&self, err: &GatewayError) -> Option<HeaderValue> {
        let message = if self.expose_details {
            grpc::percent_encode(&self.message_with_details(err))
        } else {
            grpc::percent_encode(err.kind().description())
        };
        HeaderValue::from_maybe_shared(Bytes::from(message)).ok()
    }

    /// Renders the answer to the request `info` describes.
    pub fn render(&self, err: &GatewayError, info: &RequestInfo) -> Response<Full<Bytes>> {
        let mut res = if let Some(custom) = &self.custom {
            custom(err, info).map(Full::new)
        } else {
            self.render_builtin(err, info)
        };
        res.extensions_mut().insert(err.clone());
        res
    }

    fn render_builtin(&self, err: &GatewayError, info: &RequestInfo) -> Response<Full<Bytes>> {
        let format = info.format();
        let status = if format == Format::Grpc {
            StatusCode::OK
        } else {
            self.status_for(err.kind())
        };
        let cached = self.is_plain(err, info).then(|| self.cached(err.kind()));
        let (content_type, body) = match format {
            Format::Grpc => (
                info.grpc_content_type()
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("application/grpc")),
                Bytes::new(),
            ),
            Format::ProblemJson => (
                HeaderValue::from_static("application/problem+json"),
                cached.map_or_else(
                    || self.problem_json(err, info, status),
                    |c| c.problem_json.clone(),
                ),
            ),
            Format::Html => (
                HeaderValue::from_static("text/html; charset=utf-8"),
                cached.map_or_else(|| self.html(err, info, status), |c| c.html.clone()),
            ),
            Format::Text => (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                cached.map_or_else(|| self.text(err, info, status), |c| c.text.clone()),
            ),
        };
        let body = if info.is_head { Bytes::new() } else { body };
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.reserve(6);
        headers.insert(header::CONTENT_TYPE, content_type);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PROXY_STATUS, self.proxy_status(err));
        if let Some(id) = &info.request_id {
            headers.insert(self.request_id_header.clone(), id.clone());
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            if let Some(secs) = self.retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        if format == Format::Grpc {
            self.insert_grpc_status(headers, err);
        }
        res
    }

    fn message_with_details(&self, err: &GatewayError) -> String {
        let mut out = String::from(err.kind().description());
        if let Some(hop) = err.next_hop() {
            let _ = write!(out, " Upstream: {hop}.");
        }
        let chain = err.source_chain();
        if !chain.is_empty() {
            out.push_str(" Cause: ");
            out.extend(chain.chars().take(MAX_DETAILS));
        }
        out
    }

    fn text(&self, err: &GatewayError, info: &RequestInfo, status: StatusCode) -> Bytes {
        let mut out = String::with_capacity(128);
        let _ = write!(
            out,
            "{} {}\n\n{}\n\nerror: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            err.kind().description(),
            err.kind().as_str(),
        );
        if let Some(id) = info.request_id_str() {
            let _ = writeln!(out, "request id: {id}");
        }
        if self.expose_details {
            let _ = writeln!(out, "details: {}", self.message_with_details(err));
        }
        Bytes::from(out)
    }

    fn problem_json(&self, err: &GatewayError, info: &RequestInfo, status: StatusCode) -> Bytes {
        let mut out = String::with_capacity(192);
        // "about:blank" with the status phrase as title, RFC 9457 §4.2.1; our
        // specifics go in extension members.
        let _ = write!(
            out,
            r#"{{"type":"about:blank","title":"{}","status":{},"detail":"{}","error":"{}""#,
            status.canonical_reason().unwrap_or("Error"),
            status.as_u16(),
            err.kind().description(),
            err.kind().as_str(),
        );
        if let Some(id) = info.request_id_str() {
            out.push_str(r#","request_id":"#);
            push_json_string(&mut out, id);
        }
        if self.expose_details {
            if let Some(hop) = err.next_hop() {
                out.push_str(r#","next_hop":"#);
                push_json_string(&mut out, hop.as_str());
            }
            out.push_str(r#","cause":"#);
            push_json_string(&mut out, &err.source_chain());
        }
        out.push('}');
        Bytes::from(out)
    }

    fn html(&self, err: &GatewayError, info: &RequestInfo, status: StatusCode) -> Bytes {
        let template = self
            .html_template
            .as_deref()
            .unwrap_or(DEFAULT_HTML_TEMPLATE);
        let mut out = String::with_capacity(template.len() + 128);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            let Some(close) = after.find('}') else {
                break;
            };
            let name = &after[1..close];
            let mut value = String::new();
            let known = match name {
                "status" => write!(value, "{}", status.as_u16()).is_ok(),
                "reason" => {
                    value.push_str(status.canonical_reason().unwrap_or("Error"));
                    true
                }
                "message" => {
                    value.push_str(err.kind().description());
                    true
                }
                "error" => {
                    value.push_str(err.kind().as_str());
                    true
                }
                "request_id" => {
                    if let Some(id) = info.request_id_str() {
                        let _ = write!(value, " · request id {id}");
                    }
                    true
                }
                "details" => {
                    if self.expose_details {
                        out.push_str("<pre>");
                        push_html_escaped(&mut out, &self.message_with_details(err));
                        out.push_str("</pre>");
                    }
                    true
                }
                _ => false,
            };
            if known {
                push_html_escaped(&mut out, &value);
            } else {
                out.push_str(&after[..=close]);
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Bytes::from(out)
    }
}

fn push_html_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

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
                assert_eq!(plain.format(), Format::ProblemJson, "{fillers} {method}");
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
                let expected = if is_post {
                    Format::Grpc
                } else {
                    Format::ProblemJson
                };
                assert_eq!(grpc.format(), expected, "{fillers} {method}");
                if is_post {
                    assert_eq!(grpc.grpc_content_type().unwrap(), "application/grpc+proto");
                }
            }
        }
    }

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

    #[tokio::test]
    async fn a_renderer_changed_after_use_answers_afresh() {
        let err = GatewayError::new(ErrorKind::ConnectionRefused);
        let used = Renderer::new();
        let (status, body, _) = text_of(&used, &err).await;
        assert_eq!(status, 502);
        assert!(body.starts_with("502 Bad Gateway"));
        let changed = used
            .clone()
            .with_status(
                ErrorKind::ConnectionRefused,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .with_proxy_name("edge");
        let (status, body, proxy_status) = text_of(&changed, &err).await;
        assert_eq!(status, 503);
        assert!(body.starts_with("503 Service Unavailable"), "{body}");
        assert_eq!(proxy_status, "edge; error=connection_refused");
        let (status, _, proxy_status) = text_of(&used, &err).await;
        assert_eq!(
            (status, proxy_status),
            (
                StatusCode::BAD_GATEWAY,
                HeaderValue::from_static("tower-bad-gateway; error=connection_refused")
            )
        );
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
}
