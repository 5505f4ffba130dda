use super::{DONE, STARTED, WAITING_DOWNSTREAM, Watch};
use crate::error::{BoxError, WriteTimeoutError};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Response future of [`WriteTimeout`].
    ///
    /// An empty request body has nothing to stall on: no timer is armed for it.
    ///
    /// ```
    /// use tower_bad_gateway::write_timeout::{ResponseFuture, UploadBody, WriteTimeout};
    /// use tower::Service;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<UploadBody<String>>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let mut svc = WriteTimeout::new(upstream, Some(Duration::from_secs(5)));
    /// let future: ResponseFuture<_> = svc.call(http::Request::new(String::new()));
    /// assert_eq!(format!("{future:?}"), "WriteTimeout::ResponseFuture { watching: false, timeout: 0ns, .. }");
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        // Boxed: only a request with a body to send has one, and inline it
        // would make every attempt's future larger.
        sleep: Option<Pin<Box<Sleep>>>,
        watch: Option<Arc<Watch>>,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, watch: Option<(Arc<Watch>, Instant)>, timeout: Duration) -> Self {
        let (watch, sleep) = match watch {
            Some((watch, at)) => (Some(watch), Some(Box::pin(tokio::time::sleep_until(at)))),
            None => (None, None),
        };
        Self {
            future,
            sleep,
            watch,
            timeout,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteTimeout::ResponseFuture")
            .field("watching", &self.watch.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.future.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(watch) = this.watch.as_ref() else {
            return Poll::Pending;
        };
        // Re-arm until the upload stalls for a whole `timeout` on the upstream's side.
        while let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let state = watch.state.load(Ordering::Acquire);
            let now = Instant::now();
            let next = if state & DONE != 0 {
                None
            } else if state & STARTED == 0 || state & WAITING_DOWNSTREAM != 0 {
                Some(now + *this.timeout)
            } else {
                let deadline = watch.last_progress() + *this.timeout;
                if deadline <= now {
                    return Poll::Ready(Err(WriteTimeoutError {
                        after: *this.timeout,
                    }
                    .into()));
                }
                Some(deadline)
            };
            match next {
                Some(at) => sleep.as_mut().reset(at),
                None => *this.sleep = None,
            }
        }
        Poll::Pending
    }
}
