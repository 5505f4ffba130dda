use super::TimeoutBody;
use super::error::HeadTimeout;
use crate::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<Sleep>,
        attempt: Duration,
        idle: Option<Duration>,
        total: Option<Duration>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(
        future: F,
        attempt: Option<Duration>,
        idle: Option<Duration>,
        total: Option<Duration>,
    ) -> Self {
        Self {
            future,
            sleep: attempt.map(tokio::time::sleep),
            attempt: attempt.unwrap_or_default(),
            idle,
            total,
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
            let (idle, total) = (*this.idle, *this.total);
            return Poll::Ready(
                result
                    .map(|res| res.map(|body| TimeoutBody::new(body, idle, total)))
                    .map_err(Into::into),
            );
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                return Poll::Ready(Err(HeadTimeout {
                    after: *this.attempt,
                }
                .into()));
            }
        }
        Poll::Pending
    }
}
