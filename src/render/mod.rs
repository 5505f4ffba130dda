//! Answering: [`GatewayError`] → a synthetic response.
//!
//! The [`Renderer`] picks the status (per kind, overridable), negotiates the
//! representation from the request ([`RequestInfo`]):
//!
//! | request | answer |
//! |---|---|
//! | `Content-Type: application/grpc*` | gRPC trailers-only: HTTP 200, the kind's [`grpc_code`](ErrorKind::grpc_code) as `grpc-status`, percent-encoded `grpc-message` |
//! | `Accept` prefers JSON | RFC 9457 problem details: `application/problem+json`, or `application/json` to a client that accepts that type but not the other |
//! | `Accept` prefers `text/html` | an HTML page ([templatable](Renderer::html_template)) |
//! | anything else | `text/plain` |
//!
//! Negotiation never serves a type the client did not accept when one it accepts
//! is offered (RFC 9110 §12.5.1): a range selects a type only if it covers it, and
//! `q=0` excludes. When nothing offered is acceptable, the answer is `text/plain`
//! (an error answer is still more use than a `406`).
//!
//! and adds the headers every answer carries: `Proxy-Status` (RFC 9209),
//! `Cache-Control: no-store`, the request id when the request had one, and
//! `Retry-After` on 503 when configured or when the error knows the wait (on a
//! gRPC answer also as `grpc-retry-pushback-ms`, gRFC A6). The [`GatewayError`] goes into the
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
//! let request = http::Request::get("/").header("accept", "application/problem+json").body(()).unwrap();
//! let info = RequestInfo::from_request(&request);
//! let res = Renderer::new().render(&GatewayError::new(ErrorKind::ConnectionRefused), &info);
//! assert_eq!(res.status(), 502);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; error=connection_refused");
//! assert_eq!(res.headers()["cache-control"], "no-store");
//! ```

mod answer;
mod body;
mod intercept;
mod negotiate;
mod prerendered;
mod proxy_status;
mod request;

pub use self::negotiate::Format;
pub use self::proxy_status::PROXY_STATUS;
pub use self::request::{RequestInfo, X_REQUEST_ID};

/// Request ids and paths as the events log them: printable, bounded.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) mod for_log {
    use crate::render::request::{LOG_ID_MAX, LOG_PATH_MAX, printable};
    use std::borrow::Cow;

    /// A request id, as the events log it.
    pub(crate) fn request_id(id: &[u8]) -> Cow<'_, str> {
        printable(id, LOG_ID_MAX)
    }

    /// A path, as the events log it.
    pub(crate) fn path(path: &str) -> Cow<'_, str> {
        printable(path.as_bytes(), LOG_PATH_MAX)
    }
}

use crate::error::{ErrorKind, ErrorStatus, GatewayError};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const DEFAULT_PROXY_NAME: &str = "tower-bad-gateway";

/// The default HTML page. See [`Renderer::html_template`] for its placeholders.
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

/// Renders a [`GatewayError`] as the answer to a request.
///
/// A plain builder: every setter is independent of the others, so the order of
/// the calls never matters. Cheap to clone. Give it to
/// [`BadGatewayLayer::renderer`](crate::BadGatewayLayer::renderer).
///
/// The parts of every kind's answer that depend on the kind alone (its
/// `Proxy-Status`, its bodies) are rendered once, for all kinds: by the layer when
/// it makes its first service, or else on the first render. A plain 502 then
/// costs no formatting. Every setter goes through one function that starts a new
/// set of those parts, so no setter can leave stale ones behind.
///
/// ```
/// use tower_bad_gateway::render::{Renderer, RequestInfo};
/// use tower_bad_gateway::{ErrorKind, GatewayError};
///
/// let renderer = Renderer::new().proxy_name("edge").expose_details(false);
/// let res = renderer.render(&GatewayError::new(ErrorKind::DnsError), &RequestInfo::default());
/// assert_eq!(res.status(), 502);
/// assert_eq!(res.headers()["proxy-status"], "edge; error=dns_error");
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
#[derive(Clone)]
pub struct Renderer {
    statuses: [Option<StatusCode>; ErrorKind::COUNT],
    /// As written in `Proxy-Status` (a token, or a quoted string).
    proxy_name: Arc<str>,
    pub(crate) expose_details: bool,
    pub(crate) html_template: Option<Arc<str>>,
    custom: Option<Arc<CustomRender>>,
    retry_after: Option<u64>,
    request_id_header: HeaderName,
    mark_upstream_errors: bool,
    /// Rendered once on first use; shared by clones, started anew by every setter.
    prerendered: Arc<OnceLock<Box<[prerendered::Prerendered]>>>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<_> = ErrorKind::ALL
            .iter()
            .filter_map(|k| self.statuses[k.index()].map(|s| (k, s)))
            .collect();
        f.debug_struct("Renderer")
            .field("statuses", &statuses)
            .field("proxy_name", &self.proxy_name)
            .field("expose_details", &self.expose_details)
            .field("html_template", &self.html_template.is_some())
            .field("custom", &self.custom.is_some())
            .field("retry_after", &self.retry_after)
            .field("request_id_header", &self.request_id_header)
            .field("mark_upstream_errors", &self.mark_upstream_errors)
            .finish()
    }
}

impl Renderer {
    /// The default renderer: default statuses, proxy name `tower-bad-gateway`,
    /// no details, no `Retry-After`, request ids echoed from `x-request-id`.
    pub fn new() -> Self {
        Self {
            statuses: [None; ErrorKind::COUNT],
            proxy_name: Arc::from(DEFAULT_PROXY_NAME),
            expose_details: false,
            html_template: None,
            custom: None,
            retry_after: None,
            request_id_header: X_REQUEST_ID,
            mark_upstream_errors: true,
            prerendered: Arc::default(),
        }
    }

    /// The default renderer, shared: its plain parts are rendered once per process.
    pub(crate) fn shared_default() -> &'static Self {
        static DEFAULT: OnceLock<Renderer> = OnceLock::new();
        DEFAULT.get_or_init(Self::new)
    }

    /// Changes a setting; the plain parts of the old settings are not carried over.
    fn set(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self.prerendered = Arc::default();
        self
    }

    /// The plain parts for `kind`, rendered for all kinds on first use.
    fn prerendered_for(&self, kind: ErrorKind) -> Option<&prerendered::Prerendered> {
        self.prerendered
            .get_or_init(|| prerendered::render_all(self))
            .get(kind.index())
    }

    /// Renders the plain parts now rather than on the first failure.
    pub(crate) fn prepare(&self) {
        let _ = self.prerendered_for(ErrorKind::Unclassified);
    }

    /// Answers `kind` with `status` instead of its default.
    ///
    /// An [`ErrorStatus`] is a 4xx or 5xx status: a failure must never look like a
    /// success to a client or a cache, and any other status is refused when the
    /// `ErrorStatus` is made, not dropped here.
    ///
    /// ```
    /// use tower_bad_gateway::render::Renderer;
    /// use tower_bad_gateway::{ErrorKind, ErrorStatus};
    /// use http::StatusCode;
    ///
    /// let r = Renderer::new().status(ErrorKind::ConnectionRefused, ErrorStatus::SERVICE_UNAVAILABLE);
    /// assert_eq!(r.status_for(ErrorKind::ConnectionRefused), StatusCode::SERVICE_UNAVAILABLE);
    /// let shed = ErrorStatus::try_from(529).unwrap();
    /// let r = r.status(ErrorKind::ConnectionLimitReached, shed);
    /// assert_eq!(r.status_for(ErrorKind::ConnectionLimitReached).as_u16(), 529);
    /// // A success is no answer to a failure: refused where it is made.
    /// assert!(ErrorStatus::try_from(StatusCode::OK).is_err());
    /// ```
    pub fn status(self, kind: ErrorKind, status: ErrorStatus) -> Self {
        self.set(|r| r.statuses[kind.index()] = Some(status.get()))
    }

    /// The name this gateway gives itself in `Proxy-Status` (default
    /// `tower-bad-gateway`). Written as a structured-field token when it is one, else
    /// as a quoted string with anything but printable ASCII replaced.
    ///
    /// ```
    /// use tower_bad_gateway::render::Renderer;
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    ///
    /// let r = Renderer::new().proxy_name("edge eu-1\r\n");
    /// let value = r.proxy_status(&GatewayError::new(ErrorKind::ConnectionRefused));
    /// assert_eq!(value, r#""edge eu-1??"; error=connection_refused"#);
    /// ```
    pub fn proxy_name(self, name: &str) -> Self {
        self.set(|r| r.proxy_name = Arc::from(proxy_status::proxy_name(name)))
    }

    /// Shows the upstream's address and the error's text in answers (body, and
    /// `Proxy-Status` `next-hop` and `details`). Off by default: they help
    /// attackers map your network. Even on, no CR, LF or NUL reaches a header.
    pub fn expose_details(self, expose: bool) -> Self {
        self.set(|r| r.expose_details = expose)
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
    /// use http_body_util::BodyExt;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let r = Renderer::new().html_template("<h1>Oops: {status}</h1><p>{message}</p>");
    /// let req = http::Request::get("/").header("accept", "text/html").body(()).unwrap();
    /// let res = r.render(&GatewayError::new(ErrorKind::ConnectionRefused), &RequestInfo::from_request(&req));
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "<h1>Oops: 502</h1><p>The upstream server refused the connection.</p>");
    /// # }
    /// ```
    pub fn html_template(self, template: impl Into<String>) -> Self {
        self.set(|r| r.html_template = Some(Arc::from(template.into())))
    }

    /// Replaces all of the rendering with `f`, as [`Classifier::custom`] replaces
    /// all of the classifying. The `GatewayError` is still put in the response
    /// extensions.
    ///
    /// [`Classifier::custom`]: crate::classify::Classifier::custom
    ///
    /// ```
    /// use tower_bad_gateway::render::{Renderer, RequestInfo};
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    /// use bytes::Bytes;
    ///
    /// let r = Renderer::custom(|err, _info| {
    ///     http::Response::builder()
    ///         .status(503)
    ///         .body(Bytes::from(format!("try later ({})", err.kind())))
    ///         .unwrap()
    /// });
    /// let res = r.render(&GatewayError::new(ErrorKind::ConnectionRefused), &RequestInfo::default());
    /// assert_eq!(res.status(), 503);
    /// assert!(res.extensions().get::<GatewayError>().is_some());
    /// ```
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&GatewayError, &RequestInfo) -> Response<Bytes> + Send + Sync + 'static,
    {
        Self {
            custom: Some(Arc::new(f)),
            ..Self::new()
        }
    }

    /// Adds `Retry-After` (in whole seconds, at least 1) to every 503 answer; a
    /// gRPC answer carries the same wait as `grpc-retry-pushback-ms`, in
    /// milliseconds (gRFC A6), as it does whenever the error has its own
    /// [`retry_after`](GatewayError::retry_after) (an endpoint set with nothing
    /// healthy: the time until its next probe).
    ///
    /// ```
    /// use tower_bad_gateway::render::{Renderer, RequestInfo};
    /// use tower_bad_gateway::{ErrorKind, GatewayError};
    /// use std::time::Duration;
    ///
    /// let renderer = Renderer::new().retry_after(Duration::from_secs(2));
    /// let err = GatewayError::new(ErrorKind::DestinationUnavailable);
    /// let http = renderer.render(&err, &RequestInfo::default());
    /// assert_eq!(http.headers()["retry-after"], "2");
    ///
    /// let call = http::Request::post("/pkg.Svc/Get").header("content-type", "application/grpc").body(()).unwrap();
    /// let grpc = renderer.render(&err, &RequestInfo::from_request(&call));
    /// assert_eq!(grpc.headers()["grpc-status"], "14");
    /// assert_eq!(grpc.headers()["grpc-retry-pushback-ms"], "2000");
    /// ```
    pub fn retry_after(self, after: Duration) -> Self {
        self.set(|r| r.retry_after = Some(after.as_secs().max(1)))
    }

    /// Echoes the request id from this header instead of `x-request-id`.
    pub fn request_id_header(self, name: HeaderName) -> Self {
        self.set(|r| r.request_id_header = name)
    }

    /// Whether an upstream's own 5xx, passed on, gets this gateway's `Proxy-Status`
    /// member with its `received-status` (default on), so clients and logs can
    /// tell the gateway's 502 from the upstream's. The upstream's members stay.
    ///
    /// ```
    /// use tower_bad_gateway::render::Renderer;
    /// // Pass upstream errors on exactly as they came.
    /// let renderer = Renderer::new().mark_upstream_errors(false);
    /// # let _ = renderer;
    /// ```
    pub fn mark_upstream_errors(self, mark: bool) -> Self {
        self.set(|r| r.mark_upstream_errors = mark)
    }

    /// Appends this gateway's member, with `received-status`, to the headers of an
    /// upstream 5xx that is passed on, unless turned off.
    pub(crate) fn mark_passed_through(&self, headers: &mut HeaderMap, received: StatusCode) {
        if !self.mark_upstream_errors {
            return;
        }
        headers.append(
            PROXY_STATUS,
            proxy_status::passed_through(&self.proxy_name, received),
        );
    }

    /// The header request ids are echoed from.
    pub(crate) fn id_header(&self) -> &HeaderName {
        &self.request_id_header
    }

    /// The status answered for `kind`.
    pub fn status_for(&self, kind: ErrorKind) -> StatusCode {
        self.statuses[kind.index()].unwrap_or_else(|| kind.default_status())
    }

    /// The `Proxy-Status` value for `err`: always a valid structured-field list.
    pub fn proxy_status(&self, err: &GatewayError) -> HeaderValue {
        proxy_status::value(&self.proxy_name, err, self.expose_details)
    }

    /// The trailers that end a gRPC response whose body failed: `grpc-status` and
    /// `grpc-message`.
    pub fn grpc_trailers(&self, err: &GatewayError) -> HeaderMap {
        let mut trailers = HeaderMap::with_capacity(2);
        self.insert_grpc_status(&mut trailers, err, self.prerendered_for(err.kind()));
        trailers
    }

    /// Renders the answer to the request `info` describes.
    pub fn render(&self, err: &GatewayError, info: &RequestInfo) -> Response<Full<Bytes>> {
        self.render_with(err, info, self.prerendered_for(err.kind()))
    }
}

#[cfg(test)]
mod tests;
