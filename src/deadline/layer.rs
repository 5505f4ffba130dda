use super::SetDeadline;
use std::time::Duration;
use tower_layer::Layer;

/// Applies [`SetDeadline`]: every request must be answered within a time, shortened
/// by a gRPC caller's `grpc-timeout` (which is honoured even when no time is
/// configured) and by any [`Deadline`](super::Deadline) the request already carries.
/// A gRPC caller is a `POST` with an `application/grpc*` content type; gRPC uses no
/// other method.
///
/// It only *sets* the deadline; the layers below it enforce it:
/// [`TimeoutLayer`](crate::timeout::TimeoutLayer) ends each attempt's wait for the
/// head, and the body, at the deadline (and rewrites `grpc-timeout` to the time
/// left), and [`RetryLayer`](crate::retry::RetryLayer) never waits or starts an
/// attempt past it. [`GatewayLayer`](crate::GatewayLayer) puts all three in place.
///
/// ```
/// use tower_bad_gateway::deadline::{Deadline, SetDeadlineLayer};
/// use tower::{Layer, ServiceExt};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = tower::service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
/// });
/// let svc = SetDeadlineLayer::new(Duration::from_secs(5)).layer(inner);
/// let req = http::Request::post("/pkg.Svc/Call")
///     .header("content-type", "application/grpc")
///     .header("grpc-timeout", "100m")
///     .body(())
///     .unwrap();
/// let deadline = svc.oneshot(req).await.unwrap().unwrap();
/// assert_eq!(deadline.at() - deadline.start(), Duration::from_millis(100));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SetDeadlineLayer {
    timeout: Option<Duration>,
}

impl SetDeadlineLayer {
    /// Every request must be answered within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
        }
    }

    /// No deadline of its own: only a gRPC caller's `grpc-timeout` sets one.
    pub fn grpc_only() -> Self {
        Self { timeout: None }
    }
}

impl<S> Layer<S> for SetDeadlineLayer {
    type Service = SetDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetDeadline::new(inner, self.timeout)
    }
}
