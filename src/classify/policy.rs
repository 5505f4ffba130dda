use crate::error::ErrorKind;
use crate::outcome::{IntoStatus, Outcome, Outcomes};
use http::{HeaderMap, StatusCode};
use http_body::Body;
use std::fmt;

/// Which upstream answers count as failures.
///
/// By default none: every upstream status passes through untouched, because a
/// gateway does not invent errors. A policy can reject answers by status
/// or by a predicate over its status and headers ([`ErrorKind::InvalidResponse`]:
/// [`reject_on`](Self::reject_on), with the [`Outcomes`] the retry and health
/// policies take), or by body size ([`ErrorKind::BodyTooLarge`]).
///
/// A rejected answer is replaced by a synthetic one (`502` by default) when the
/// rejection is known from the head; a body that grows past the limit while
/// streaming is cut with an error, since its head has already gone out.
///
/// An *intercepted* answer ([`intercept_statuses`](Self::intercept_statuses)) is
/// not a failure: it keeps the upstream's status and gets the gateway's page.
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, Outcome, Outcomes, ResponsePolicy};
/// use http::StatusCode;
///
/// let policy = ResponsePolicy::new()
///     // An upstream that answers 500 leaks a stack trace: don't pass it on.
///     .reject_on(StatusCode::INTERNAL_SERVER_ERROR)
///     .max_body_size(8 * 1024 * 1024)
///     .reject_on(Outcomes::new().when(|outcome| match outcome {
///         Outcome::Response { headers, .. } => headers.contains_key("x-debug-trace"),
///         _ => false,
///     }));
/// let layer = BadGatewayLayer::new().response_policy(policy);
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
pub struct ResponsePolicy {
    rejected: Outcomes,
    max_body_size: Option<u64>,
    intercepted: Outcomes,
}

impl ResponsePolicy {
    /// A policy that accepts every answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects these answers: by status, by a trailers-only gRPC code, or by a
    /// predicate over the status and headers (see [`Outcomes`]; failures in the
    /// set play no part: an answer is judged). Sets accumulate.
    pub fn reject_on(mut self, answers: impl Into<Outcomes>) -> Self {
        self.rejected = self.rejected.union(answers);
        self
    }

    /// Rejects answers with any of these statuses: short for
    /// [`reject_on`](Self::reject_on)`(Outcomes::new().statuses(statuses))`.
    pub fn reject_statuses<S: IntoStatus>(self, statuses: impl IntoIterator<Item = S>) -> Self {
        self.reject_on(Outcomes::new().statuses(statuses))
    }

    /// Rejects bodies larger than `bytes`: before the head when the size is known
    /// up front (`Content-Length`), else by cutting the stream when it grows past it.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = Some(bytes);
        self
    }

    /// Replaces the body of the upstream's own answers in `answers` (by status,
    /// or by a predicate; see [`Outcomes`]) by the gateway's page, as nginx's `proxy_intercept_errors` with `error_page` does:
    /// the upstream's status stays, the page is negotiated as for a failure (the
    /// [`Renderer`](crate::render::Renderer)'s HTML template, problem+json, or
    /// text; a [custom renderer](crate::render::Renderer::custom) is not called,
    /// there being no failure to describe), and `Proxy-Status` gets this
    /// gateway's member with `received-status`, after the upstream's. The
    /// upstream's `WWW-Authenticate`, `Proxy-Authenticate`, `Allow` and
    /// `Retry-After` are kept; its other headers and its body are not. gRPC calls
    /// are never intercepted.
    ///
    /// Only 4xx and 5xx answers are ever intercepted (a success is never
    /// replaced): another status in the set is dropped from it here, with a
    /// warning. An answer that is also [rejected](Self::reject_on) is rejected,
    /// whatever the order of the calls. Sets accumulate.
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
    ///     .response_policy(ResponsePolicy::new().intercept_on(StatusCode::INTERNAL_SERVER_ERROR));
    /// let req = http::Request::get("/").header("accept", "text/html").body(()).unwrap();
    /// let res = layer.layer(upstream).oneshot(req).await.unwrap();
    /// assert_eq!(res.status(), 500);
    /// assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; received-status=500");
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "<h1>500: The upstream server failed to complete the request.</h1>");
    /// # }
    /// ```
    pub fn intercept_on(mut self, answers: impl Into<Outcomes>) -> Self {
        // A 426's `Upgrade` names the protocol the client must switch to: a page in
        // its place would leave the client nowhere to go (RFC 9110 §15.5.22).
        let is_error = |s: u16| (400..600).contains(&s) && s != 426;
        let answers = answers.into();
        #[cfg(feature = "tracing")]
        for status in answers.status_list().filter(|s| !is_error(*s)) {
            tracing::warn!(
                status,
                "not intercepting a status that is not an error, or a 426 (its Upgrade is a MUST)"
            );
        }
        self.intercepted = self.intercepted.union(answers.retain_statuses(is_error));
        self
    }

    /// Intercepts the upstream's own answers with these statuses: short for
    /// [`intercept_on`](Self::intercept_on)`(Outcomes::new().statuses(statuses))`.
    ///
    /// ```
    /// use tower_bad_gateway::ResponsePolicy;
    /// let policy = ResponsePolicy::new().intercept_statuses([500, 502, 503]);
    /// # let _ = policy;
    /// ```
    pub fn intercept_statuses<S: IntoStatus>(self, statuses: impl IntoIterator<Item = S>) -> Self {
        self.intercept_on(Outcomes::new().statuses(statuses))
    }

    /// Whether the upstream's own answer gets the gateway's page.
    pub(crate) fn intercepts(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        !self.intercepted.is_empty()
            && (status.is_client_error() || status.is_server_error())
            && status != StatusCode::UPGRADE_REQUIRED
            && self
                .intercepted
                .contains(&Outcome::Response { status, headers })
    }

    /// The body size limit, if any.
    pub fn body_limit(&self) -> Option<u64> {
        self.max_body_size
    }

    /// Whether this policy accepts everything without looking.
    pub(crate) fn accepts_all(&self) -> bool {
        self.rejected.is_empty() && self.max_body_size.is_none()
    }

    /// Judges an answer from its head. `Err` carries the kind it is rejected as,
    /// and the rejected head's headers; its body is dropped.
    pub(crate) fn judge<B: Body>(
        &self,
        res: http::Response<B>,
    ) -> Result<http::Response<B>, (ErrorKind, HeaderMap)> {
        let reject = |kind, res: http::Response<B>| Err((kind, res.into_parts().0.headers));
        let answer = Outcome::Response {
            status: res.status(),
            headers: res.headers(),
        };
        if self.rejected.contains(&answer) {
            return reject(ErrorKind::InvalidResponse, res);
        }
        if let Some(limit) = self.max_body_size {
            if res.body().size_hint().lower() > limit {
                return reject(ErrorKind::BodyTooLarge, res);
            }
        }
        Ok(res)
    }
}

impl fmt::Debug for ResponsePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsePolicy")
            .field("rejected", &self.rejected)
            .field("max_body_size", &self.max_body_size)
            .field("intercepted", &self.intercepted)
            .finish()
    }
}
