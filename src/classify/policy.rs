use crate::error::ErrorKind;
use http::response::Parts;
use http::{HeaderMap, StatusCode};
use http_body::Body;
use std::fmt;
use std::sync::Arc;

type Predicate = dyn Fn(&Parts) -> bool + Send + Sync;

/// Which upstream answers count as failures.
///
/// By default none: every upstream status passes through untouched, because a
/// gateway does not invent errors. A policy can reject answers by status
/// ([`ErrorKind::InvalidResponse`]), by body size ([`ErrorKind::BodyTooLarge`]), or by
/// a predicate over the response head ([`ErrorKind::InvalidResponse`]).
///
/// A rejected answer is replaced by a synthetic one (`502` by default) when the
/// rejection is known from the head; a body that grows past the limit while
/// streaming is cut with an error, since its head has already gone out.
///
/// An *intercepted* answer ([`intercept_statuses`](Self::intercept_statuses)) is
/// not a failure: it keeps the upstream's status and gets the gateway's page.
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, ResponsePolicy};
/// use http::StatusCode;
///
/// let policy = ResponsePolicy::new()
///     // An upstream that answers 500 leaks a stack trace: don't pass it on.
///     .reject_status(StatusCode::INTERNAL_SERVER_ERROR)
///     .max_body_size(8 * 1024 * 1024)
///     .reject_if(|head| head.headers.contains_key("x-debug-trace"));
/// let layer = BadGatewayLayer::new().response_policy(policy);
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
pub struct ResponsePolicy {
    statuses: Vec<StatusCode>,
    max_body_size: Option<u64>,
    predicates: Vec<Arc<Predicate>>,
    intercepted: Vec<StatusCode>,
}

impl ResponsePolicy {
    /// A policy that accepts every answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects answers with this status.
    pub fn reject_status(mut self, status: StatusCode) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Rejects answers with any of these statuses.
    pub fn reject_statuses(self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        statuses.into_iter().fold(self, Self::reject_status)
    }

    /// Rejects bodies larger than `bytes`: before the head when the size is known
    /// up front (`Content-Length`), else by cutting the stream when it grows past it.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = Some(bytes);
        self
    }

    /// Rejects answers whose head makes `f` return `true`. Predicates accumulate:
    /// an answer is rejected when any of them says so.
    pub fn reject_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.predicates.push(Arc::new(f));
        self
    }

    /// Replaces the body of the upstream's own answers with these statuses by the
    /// gateway's page, as nginx's `proxy_intercept_errors` with `error_page` does:
    /// the upstream's status stays, the page is negotiated as for a failure (the
    /// [`Renderer`](crate::render::Renderer)'s HTML template, problem+json, or
    /// text; a [custom renderer](crate::render::Renderer::custom) is not called,
    /// there being no failure to describe), and `Proxy-Status` gets this
    /// gateway's member with `received-status`, after the upstream's. The
    /// upstream's `WWW-Authenticate`, `Proxy-Authenticate`, `Allow` and
    /// `Retry-After` are kept; its other headers and its body are not. gRPC calls
    /// are never intercepted.
    ///
    /// Only 4xx and 5xx statuses are taken (a success is never replaced); a
    /// status that is also [rejected](Self::reject_status) is rejected, whatever
    /// the order of the calls. Calls accumulate.
    ///
    /// The upstream's body is dropped unread, so it never reaches the client: a
    /// hyper-util client then closes that HTTP/1.1 connection instead of putting
    /// it back in its pool half-read, and resets the HTTP/2 stream. Intercept
    /// statuses whose bodies are small, or expect a new connection per
    /// intercepted answer.
    ///
    /// ```
    /// use tower_bad_gateway::{BadGateway, BadGatewayLayer, ResponsePolicy};
    /// use tower_bad_gateway::render::Renderer;
    /// use http::StatusCode;
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<()>| async {
    ///     let res = http::Response::builder().status(500)
    ///         .body(http_body_util::Full::new(bytes::Bytes::from("Traceback (most recent call last): ...")))
    ///         .unwrap();
    ///     Ok::<_, std::io::Error>(res)
    /// });
    /// let layer = BadGatewayLayer::new()
    ///     .renderer(Renderer::new().html_template("<h1>{status}: {message}</h1>"))
    ///     .response_policy(ResponsePolicy::new().intercept_statuses([StatusCode::INTERNAL_SERVER_ERROR]));
    /// let req = http::Request::get("/").header("accept", "text/html").body(()).unwrap();
    /// let res = layer.layer(upstream).oneshot(req).await.unwrap();
    /// assert_eq!(res.status(), 500);
    /// assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; received-status=500");
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "<h1>500: The upstream server failed to complete the request.</h1>");
    /// # }
    /// ```
    pub fn intercept_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        for status in statuses {
            if !(status.is_client_error() || status.is_server_error()) {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    status = status.as_u16(),
                    "ignoring a non-error status to intercept"
                );
                continue;
            }
            if !self.intercepted.contains(&status) {
                self.intercepted.push(status);
            }
        }
        self
    }

    /// Whether the upstream's own answers with `status` get the gateway's page.
    pub(crate) fn intercepts(&self, status: StatusCode) -> bool {
        !self.intercepted.is_empty() && self.intercepted.contains(&status)
    }

    /// The body size limit, if any.
    pub fn body_limit(&self) -> Option<u64> {
        self.max_body_size
    }

    /// Whether this policy accepts everything without looking.
    pub(crate) fn accepts_all(&self) -> bool {
        self.statuses.is_empty() && self.max_body_size.is_none() && self.predicates.is_empty()
    }

    /// Judges an answer from its head. `Err` carries the kind it is rejected as,
    /// and the rejected head's headers; its body is dropped.
    pub(crate) fn judge<B: Body>(
        &self,
        res: http::Response<B>,
    ) -> Result<http::Response<B>, (ErrorKind, HeaderMap)> {
        let reject = |kind, res: http::Response<B>| Err((kind, res.into_parts().0.headers));
        if self.statuses.contains(&res.status()) {
            return reject(ErrorKind::InvalidResponse, res);
        }
        if let Some(limit) = self.max_body_size {
            if res.body().size_hint().lower() > limit {
                return reject(ErrorKind::BodyTooLarge, res);
            }
        }
        if self.predicates.is_empty() {
            return Ok(res);
        }
        let (parts, body) = res.into_parts();
        if self.predicates.iter().any(|p| p(&parts)) {
            return Err((ErrorKind::InvalidResponse, parts.headers));
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

impl fmt::Debug for ResponsePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsePolicy")
            .field("statuses", &self.statuses)
            .field("max_body_size", &self.max_body_size)
            .field("predicates", &self.predicates.len())
            .field("intercepted", &self.intercepted)
            .finish()
    }
}
