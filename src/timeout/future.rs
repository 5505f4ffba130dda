use super::TimeoutBody;
use crate::error::{BoxError, DeadlineExceeded, HeadTimeout};
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    ///
    /// ```
    /// use tower_bad_gateway::timeout::{ResponseFuture, Timeout, TimeoutLayer};
    /// use tower::Service;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let mut svc = Timeout::new(upstream, TimeoutLayer::new().attempt_timeout(Duration::from_secs(1)));
    /// // The head came in time; the body goes on under the body timeouts (none here).
    /// let future: ResponseFuture<_> = svc.call(http::Request::new(()));
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<Sleep>,
        head: HeadLimit,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Instant>,
    }
}

/// What ends the wait for the head: the attempt timeout, or the deadline.
#[derive(Debug, Clone, Copy)]
pub(super) enum HeadLimit {
    /// No timer runs.
    Unlimited,
    Attempt(Duration),
    Deadline,
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout::ResponseFuture")
            .field("head", &self.head)
            .field("idle", &self.idle)
            .field("total", &self.total)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        future: F,
        head: Option<(Instant, HeadLimit)>,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            future,
            sleep: head.map(|(at, _)| tokio::time::sleep_until(at)),
            head: head.map_or(HeadLimit::Unlimited, |(_, limit)| limit),
            idle,
            total,
            deadline,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<TimeoutBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.future.poll(cx) {
            let (idle, total, deadline) = (*this.idle, *this.total, *this.deadline);
            return Poll::Ready(
                result
                    .map(|res| {
                        res.map(|body| TimeoutBody::with_deadline(body, idle, total, deadline))
                    })
                    .map_err(Into::into),
            );
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                let err: BoxError = match *this.head {
                    HeadLimit::Attempt(after) => HeadTimeout { after }.into(),
                    HeadLimit::Deadline | HeadLimit::Unlimited => {
                        super::report::deadline_exceeded("await_head");
                        DeadlineExceeded.into()
                    }
                };
                return Poll::Ready(Err(err));
            }
        }
        Poll::Pending
    }
}
