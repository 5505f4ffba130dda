use super::{Deadline, GRPC_TIMEOUT, grpc};
use crate::render::is_grpc_request;
use http::Request;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// Sets the [`Deadline`] of every request: now plus the configured time, shortened
/// by a gRPC caller's `grpc-timeout` (which is honoured even when no time is
/// configured) and by any deadline the request already carries. A gRPC caller is a
/// `POST` with an `application/grpc*` content type; gRPC uses no other method.
///
/// It only *sets* the deadline; the layers below it enforce it:
/// [`TimeoutLayer`](super::TimeoutLayer) ends each attempt's wait for the head, and
/// the body, at the deadline (and rewrites `grpc-timeout` to the time left), and
/// [`RetryLayer`](crate::retry::RetryLayer) never waits or starts an attempt past it.
/// [`GatewayLayer`](crate::GatewayLayer) puts all three in place.
///
/// ```
/// use tower_bad_gateway::timeout::{Deadline, DeadlineLayer};
/// use tower::{Layer, Service, ServiceExt};
/// use std::time::{Duration, Instant};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = tower::service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
/// });
/// let svc = DeadlineLayer::new(Duration::from_secs(5)).layer(inner);
/// let req = http::Request::post("/pkg.Svc/Call")
///     .header("content-type", "application/grpc")
///     .header("grpc-timeout", "100m")
///     .body(())
///     .unwrap();
/// let deadline = svc.oneshot(req).await.unwrap().unwrap();
/// assert!(deadline.0 <= Instant::now() + Duration::from_millis(100));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer {
    timeout: Option<Duration>,
}

impl DeadlineLayer {
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

impl<S> Layer<S> for DeadlineLayer {
    type Service = SetDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetDeadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Middleware that sets the [`Deadline`] of each request; see [`DeadlineLayer`].
///
/// ```
/// use tower_bad_gateway::timeout::{DeadlineLayer, SetDeadline};
/// use tower::Layer;
/// let svc: SetDeadline<_> = DeadlineLayer::grpc_only().layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(())
/// }));
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct SetDeadline<S> {
    inner: S,
    timeout: Option<Duration>,
}

impl<S, B> Service<Request<B>> for SetDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let grpc = is_grpc_request(&req)
            .then(|| req.headers().get(GRPC_TIMEOUT).and_then(grpc::parse))
            .flatten();
        let earliest = [self.timeout, grpc].into_iter().flatten().min();
        let Some(timeout) = earliest else {
            return self.inner.call(req);
        };
        let now = crate::clock::now();
        let at = now.checked_add(timeout);
        let existing = req.extensions().get::<Deadline>().map(|d| d.0);
        if let Some(at) = [at, existing].into_iter().flatten().min() {
            req.extensions_mut().insert(Deadline(at));
        }
        // The layers inside reuse this reading rather than read the clock again.
        crate::clock::with_now(now, || self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn deadline_of(method: http::Method) -> Option<Deadline> {
        let svc =
            DeadlineLayer::grpc_only().layer(tower::service_fn(|req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
            }));
        let req = Request::builder()
            .method(method)
            .header("content-type", "application/grpc")
            .header("grpc-timeout", "100m")
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap()
    }

    /// gRPC calls are POSTs: a `grpc-timeout` on anything else is not a gRPC
    /// caller's deadline.
    #[tokio::test]
    async fn grpc_timeout_counts_only_on_a_post() {
        assert!(deadline_of(http::Method::POST).await.is_some());
        assert!(deadline_of(http::Method::GET).await.is_none());
    }
}
