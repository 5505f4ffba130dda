use super::future::HeadLimit;
use super::{ResponseFuture, TimeoutBody, TimeoutLayer};
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::grpc;
use http::{Request, Response};
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower_service::Service;

/// Middleware that times out the response head and body of an upstream call.
/// See the [module docs](super).
///
/// ```
/// use tower_bad_gateway::timeout::{Timeout, TimeoutLayer};
/// use std::time::Duration;
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
/// });
/// let svc = Timeout::new(upstream, TimeoutLayer::new().body_total_timeout(Duration::from_secs(1)));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    config: TimeoutLayer,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with the timeouts `config` sets.
    pub fn new(inner: S, config: TimeoutLayer) -> Self {
        Self { inner, config }
    }

    /// A [`TimeoutLayer`] to configure.
    pub fn layer() -> TimeoutLayer {
        TimeoutLayer::new()
    }

    crate::macros::define_inner_service_accessors!();
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
        let deadline = req.extensions().get::<Deadline>().map(|d| d.at());
        let head = if attempt.is_none() && deadline.is_none() {
            None
        } else {
            let now = Instant::now();
            let by_attempt = attempt.map(|a| (now + a, HeadLimit::Attempt(a)));
            let by_deadline = deadline.map(|d| (d, HeadLimit::Deadline));
            let head = match (by_attempt, by_deadline) {
                (Some(a), Some(d)) => Some(if d.0 < a.0 { d } else { a }),
                (a, d) => a.or(d),
            };
            // Tell a gRPC upstream the time left of the whole call's deadline.
            // `grpc-timeout` is the call's deadline, not the wait for its head: a
            // streaming call goes on long after its head, and an upstream given
            // the attempt timeout would cancel it then.
            if let Some(deadline) = deadline {
                if grpc::is_grpc_request(&req) {
                    let left = deadline.saturating_duration_since(now);
                    req.headers_mut()
                        .insert(grpc::GRPC_TIMEOUT, grpc::format_timeout(left));
                }
            }
            head
        };
        ResponseFuture::new(self.inner.call(req), head, body_idle, body_total, deadline)
    }
}
