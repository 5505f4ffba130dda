use super::{Deadline, SetDeadlineLayer};
use crate::grpc;
use http::Request;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// Middleware that sets the [`Deadline`] of each request; see [`SetDeadlineLayer`].
///
/// ```
/// use tower_bad_gateway::deadline::{Deadline, SetDeadline};
/// use tower::ServiceExt;
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = tower::service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
/// });
/// let svc = SetDeadline::new(inner, Some(Duration::from_secs(2)));
/// let deadline = svc.oneshot(http::Request::new(())).await.unwrap().unwrap();
/// assert_eq!(deadline.at() - deadline.start(), Duration::from_secs(2));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SetDeadline<S> {
    inner: S,
    timeout: Option<Duration>,
}

impl<S> SetDeadline<S> {
    /// Wraps `inner`: requests must be answered within `timeout`, or, with `None`,
    /// within a gRPC caller's `grpc-timeout` only.
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        Self { inner, timeout }
    }

    /// A [`SetDeadlineLayer`] for requests answered within `timeout`.
    pub fn layer(timeout: Duration) -> SetDeadlineLayer {
        SetDeadlineLayer::new(timeout)
    }

    crate::macros::define_inner_service_accessors!();
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
        let grpc = grpc::is_grpc_request(&req)
            .then(|| {
                req.headers()
                    .get(grpc::GRPC_TIMEOUT)
                    .and_then(grpc::parse_timeout)
            })
            .flatten();
        let Some(timeout) = [self.timeout, grpc].into_iter().flatten().min() else {
            return self.inner.call(req);
        };
        let mut deadline = Deadline::new(Instant::now(), timeout);
        if let Some(existing) = req.extensions().get::<Deadline>() {
            deadline = deadline.min(*existing);
        }
        req.extensions_mut().insert(deadline);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn deadline_of(method: http::Method) -> Option<Deadline> {
        let svc = SetDeadline::new(
            tower::service_fn(|req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
            }),
            None,
        );
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

    /// An outer deadline that began earlier keeps its start and, if sooner, its end.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_set_is_only_ever_shortened() {
        let outer = Deadline::after(Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(300)).await;
        let svc = SetDeadline::new(
            tower::service_fn(|req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<Deadline>().copied())
            }),
            Some(Duration::from_secs(5)),
        );
        let mut req = Request::new(());
        req.extensions_mut().insert(outer);
        let set = svc.oneshot(req).await.unwrap().unwrap();
        assert_eq!(set, outer);
    }
}
