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
            .finish()
    }
}
