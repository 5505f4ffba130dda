//! Giving up in time: a per-attempt timeout to the response head, and idle and
//! total timeouts on the response body, each raising its own typed error so the
//! classifier never has to guess what timed out.
//!
//! ```text
//! BadGateway ──▶ Timeout ──▶ upstream client
//!                  │ no head within `attempt_timeout`      ─▶ HeadTimeout  ─▶ 504 http_response_timeout
//!                  │ no body frame within `body_idle_timeout` ─▶ BodyTimeout ─▶ stream cut, connection_read_timeout
//!                  └ body not done within `body_total_timeout` ─▶ BodyTimeout ─▶ stream cut, connection_read_timeout
//! ```
//!
//! Unlike `tower::timeout` and tower-http's `TimeoutLayer`, it needs nothing of the
//! response body (no `Default`), so it wraps a hyper-util `Client` directly, and it
//! says *what* timed out. It needs a Tokio runtime with the time driver.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! # let client = tower::service_fn(|_req: http::Request<String>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//! # });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(
//!         TimeoutLayer::new()
//!             .attempt_timeout(Duration::from_secs(10))
//!             .body_idle_timeout(Duration::from_secs(30)),
//!     )
//!     .service(client);
//! # let _ = svc;
//! ```

mod body;
mod deadline;
pub mod error;
mod future;
mod grpc;
mod write;

pub use self::body::TimeoutBody;
pub use self::deadline::{DeadlineLayer, SetDeadline};
pub use self::future::ResponseFuture;
pub use self::write::{
    ResponseFuture as WriteResponseFuture, UploadBody, WriteTimeout, WriteTimeoutLayer,
};

use self::future::HeadLimit;

use crate::BoxError;
use http::{HeaderName, Request, Response};
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// The instant by which the whole exchange must be answered, carried in the
/// request's extensions. The [`RetryLayer`](crate::retry::RetryLayer) never
/// starts a retry that would begin past it.
///
/// ```
/// use tower_bad_gateway::timeout::Deadline;
/// use std::time::{Duration, Instant};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Deadline(Instant::now() + Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub std::time::Instant);

/// The `grpc-timeout` request header.
///
/// ```
/// assert_eq!(tower_bad_gateway::timeout::GRPC_TIMEOUT, "grpc-timeout");
/// ```
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Applies [`Timeout`] to a service. Every timeout is off until set.
///
/// ```
/// use tower_bad_gateway::timeout::TimeoutLayer;
/// use tower_bad_gateway::timeout::error::HeadTimeout;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let never = tower::service_fn(|_req: http::Request<()>| std::future::pending::<Result<http::Response<()>, std::io::Error>>());
/// let svc = TimeoutLayer::new().attempt_timeout(Duration::from_millis(10)).layer(never);
/// let err = svc.oneshot(http::Request::new(())).await.err().unwrap();
/// assert_eq!(err.downcast_ref::<HeadTimeout>().unwrap().after(), Duration::from_millis(10));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    attempt: Option<Duration>,
    body_idle: Option<Duration>,
    body_total: Option<Duration>,
}

impl TimeoutLayer {
    /// A layer with every timeout off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time allowed from the call to the response head (connecting included).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt = Some(timeout);
        self
    }

    /// Time allowed between two frames of the response body (and from the head to
    /// the first frame).
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle = Some(timeout);
        self
    }

    /// Time allowed for the whole response body, from the head on.
    pub fn body_total_timeout(mut self, timeout: Duration) -> Self {
        self.body_total = Some(timeout);
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            config: *self,
        }
    }
}

/// Middleware that times out the response head and body of an upstream call.
/// See the [module docs](self).
///
/// ```
/// use tower_bad_gateway::timeout::TimeoutLayer;
/// use tower_bad_gateway::timeout::error::HeadTimeout;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let never = tower::service_fn(|_req: http::Request<()>| std::future::pending::<Result<http::Response<()>, std::io::Error>>());
/// let svc = TimeoutLayer::new().attempt_timeout(Duration::from_millis(10)).layer(never);
/// let err = svc.oneshot(http::Request::new(())).await.err().unwrap();
/// assert_eq!(err.downcast_ref::<HeadTimeout>().unwrap().after(), Duration::from_millis(10));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    config: TimeoutLayer,
}

impl<S> Timeout<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<TimeoutBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let TimeoutLayer {
            attempt,
            body_idle,
            body_total,
        } = self.config;
        let deadline = req
            .extensions()
            .get::<Deadline>()
            .map(|d| tokio::time::Instant::from_std(d.0));
        let head = if attempt.is_none() && deadline.is_none() {
            None
        } else {
            let now = tokio::time::Instant::now();
            let by_attempt = attempt.map(|a| (now + a, HeadLimit::Attempt(a)));
            let by_deadline = deadline.map(|d| (d, HeadLimit::Deadline));
            let head = match (by_attempt, by_deadline) {
                (Some(a), Some(d)) => Some(if d.0 < a.0 { d } else { a }),
                (a, d) => a.or(d),
            };
            // Tell a gRPC upstream how long it has: no more than this attempt.
            if let Some((at, _)) = head {
                if crate::render::is_grpc_request(&req) {
                    let left = at.saturating_duration_since(now);
                    req.headers_mut().insert(GRPC_TIMEOUT, grpc::format(left));
                }
            }
            head
        };
        ResponseFuture::new(self.inner.call(req), head, body_idle, body_total, deadline)
    }
}
