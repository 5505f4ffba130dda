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
            upstreams_above,
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
            // An `Upstreams` below learns when this wait ends, so that the attempt
            // it sees dropped then counts as timed out, not as cancelled.
            if let Some((at, _)) = head.filter(|_| !upstreams_above) {
                HeadDeadline::mark(req.extensions_mut(), at);
            }
            head
        };
        ResponseFuture::new(self.inner.call(req), head, body_idle, body_total, deadline)
    }
}

/// When an attempt's wait for its head ends: put in the request's extensions by a
/// [`Timeout`], for an [`Upstreams`](crate::upstreams::Upstreams) below it.
///
/// A `Timeout` above the `Upstreams` ends a silent attempt by dropping the
/// `Upstreams` future, and a dropped attempt says nothing about its endpoint (its
/// caller left, or a hedge lost). With this the `Upstreams` tells the two apart:
/// dropped unanswered at or after [`at`](Self::at), the attempt timed out;
/// dropped before, it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadDeadline(Instant);

impl HeadDeadline {
    /// The instant the wait ends: the attempt timeout's end, or the request's
    /// deadline, whichever comes first.
    pub(crate) fn at(self) -> Instant {
        self.0
    }

    #[cfg(test)]
    pub(crate) fn new(at: Instant) -> Self {
        Self(at)
    }

    /// Marks `extensions` with `at`, unless an earlier mark (of a `Timeout`
    /// further up) is already there.
    fn mark(extensions: &mut http::Extensions, at: Instant) {
        if extensions.get::<Self>().is_none_or(|outer| at < outer.0) {
            extensions.insert(Self(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    /// A service that answers with the mark its request carried, if any.
    fn echo_mark()
    -> impl Service<Request<()>, Response = Response<()>, Error = std::convert::Infallible> + Clone
    {
        tower::service_fn(|req: Request<()>| async move {
            let mut res = Response::new(());
            if let Some(mark) = req.extensions().get::<HeadDeadline>().copied() {
                res.extensions_mut().insert(mark);
            }
            Ok(res)
        })
    }

    async fn mark_of<S>(svc: S, req: Request<()>) -> Option<HeadDeadline>
    where
        S: Service<Request<()>, Response = Response<TimeoutBody<()>>, Error = BoxError>,
    {
        let res = svc.oneshot(req).await.unwrap();
        res.extensions().get::<HeadDeadline>().copied()
    }

    #[tokio::test(start_paused = true)]
    async fn it_tells_the_service_below_when_the_wait_for_the_head_ends() {
        let ten = TimeoutLayer::new().attempt_timeout(Duration::from_secs(10));
        let mark = mark_of(Timeout::new(echo_mark(), ten), Request::new(()))
            .await
            .unwrap();
        let now = Instant::now();
        assert_eq!(mark.at(), now + Duration::from_secs(10));

        // A sooner deadline ends it first.
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(1)));
        let mark = mark_of(Timeout::new(echo_mark(), ten), req).await.unwrap();
        assert_eq!(mark.at(), now + Duration::from_secs(1));

        // Below a Timeout whose wait ends sooner, the sooner mark stays.
        let two = TimeoutLayer::new().attempt_timeout(Duration::from_secs(2));
        let inner = Timeout::new(echo_mark(), ten).map_response(|res| res.map(|_| ()));
        let mark = mark_of(Timeout::new(inner, two), Request::new(()))
            .await
            .unwrap();
        assert_eq!(mark.at(), now + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn it_leaves_no_mark_without_a_timer_or_below_an_upstreams() {
        let none = Timeout::new(echo_mark(), TimeoutLayer::new());
        assert_eq!(mark_of(none, Request::new(())).await, None);
        let below = TimeoutLayer::new()
            .attempt_timeout(Duration::from_secs(10))
            .below_upstreams();
        let below = Timeout::new(echo_mark(), below);
        assert_eq!(mark_of(below, Request::new(())).await, None);
    }
}
