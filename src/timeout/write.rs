//! The request upload watchdog: an upstream that stops taking the request body.

use super::error::WriteTimeoutError;
use crate::BoxError;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

/// Applies [`WriteTimeout`]: fails an attempt whose upstream stops taking the
/// request body for `timeout`, with a [`WriteTimeoutError`] (classified
/// [`WriteTimeout`](crate::ErrorKind::WriteTimeout), 504 `connection_write_timeout`).
///
/// Only the upstream's stalls count: the clock runs while the client is *not*
/// asking for the next chunk (its connection will take no more). While it waits on
/// a slow downstream uploader, or before it first asks (connecting), it does not.
///
/// ```
/// use tower_bad_gateway::timeout::WriteTimeoutLayer;
/// use std::time::Duration;
///
/// let layer = WriteTimeoutLayer::new(Duration::from_secs(10));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteTimeoutLayer {
    timeout: Option<Duration>,
}

impl WriteTimeoutLayer {
    /// Fails an attempt whose upstream takes no request body data for `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
        }
    }

    /// No write timeout: request bodies pass through untouched.
    pub fn disabled() -> Self {
        Self { timeout: None }
    }
}

impl<S> Layer<S> for WriteTimeoutLayer {
    type Service = WriteTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// Middleware that times out stalled request uploads; see [`WriteTimeoutLayer`].
///
/// ```
/// use tower_bad_gateway::timeout::{UploadBody, WriteTimeoutLayer};
/// use tower::Layer;
/// use std::time::Duration;
/// // The client behind it takes `UploadBody<B>` request bodies.
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<UploadBody<http_body_util::Full<bytes::Bytes>>>();
/// let svc = WriteTimeoutLayer::new(Duration::from_secs(10)).layer(client);
/// # let _ = svc;
/// ```
#[derive(Debug, Clone)]
pub struct WriteTimeout<S> {
    inner: S,
    timeout: Option<Duration>,
}

const STARTED: u8 = 1;
const WAITING_DOWNSTREAM: u8 = 2;
const DONE: u8 = 4;

/// Shared between the body and the future of one attempt.
#[derive(Debug)]
struct Watch {
    base: Instant,
    /// Nanoseconds from `base` to the last chunk the upstream took.
    progress: AtomicU64,
    state: AtomicU8,
}

impl Watch {
    fn mark(&self, set: u8, clear: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s | set) & !clear)
            });
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(nanos, Ordering::Release);
    }

    fn last_progress(&self) -> Instant {
        self.base + Duration::from_nanos(self.progress.load(Ordering::Acquire))
    }
}

pin_project! {
    /// The request body as [`WriteTimeout`] hands it to the client.
    ///
    /// ```
    /// use tower_bad_gateway::timeout::UploadBody;
    /// // The request body type a client behind `WriteTimeoutLayer` is built for.
    /// type ClientBody = UploadBody<http_body_util::Full<bytes::Bytes>>;
    /// # let _: Option<ClientBody> = None;
    /// ```
    pub struct UploadBody<B> {
        #[pin]
        body: B,
        watch: Option<Arc<Watch>>,
    }

    impl<B> PinnedDrop for UploadBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A dropped body is no longer the upstream's to take.
            if let Some(watch) = &this.watch {
                watch.mark(DONE, 0);
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for UploadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadBody")
            .field("body", &self.body)
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl<B> Body for UploadBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let Some(watch) = this.watch {
            match &polled {
                Poll::Pending => watch.mark(STARTED | WAITING_DOWNSTREAM, 0),
                Poll::Ready(Some(Ok(_))) => {
                    watch.touch();
                    watch.mark(STARTED, WAITING_DOWNSTREAM);
                }
                Poll::Ready(_) => watch.mark(STARTED | DONE, WAITING_DOWNSTREAM),
            }
        }
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<S, B> Service<Request<B>> for WriteTimeout<S>
where
    S: Service<Request<UploadBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let watch = self
            .timeout
            .filter(|_| !req.body().is_end_stream())
            .map(|timeout| {
                let now = Instant::now();
                let watch = Arc::new(Watch {
                    base: now,
                    progress: AtomicU64::new(0),
                    state: AtomicU8::new(0),
                });
                (watch, timeout, now)
            });
        let body_watch = watch.as_ref().map(|(w, _, _)| w.clone());
        let req = req.map(|body| UploadBody {
            body,
            watch: body_watch,
        });
        let future = self.inner.call(req);
        match watch {
            Some((watch, timeout, now)) => ResponseFuture {
                future,
                sleep: Some(tokio::time::sleep_until(now + timeout)),
                watch: Some(watch),
                timeout,
            },
            None => ResponseFuture {
                future,
                sleep: None,
                watch: None,
                timeout: Duration::ZERO,
            },
        }
    }
}

pin_project! {
    /// Response future of [`WriteTimeout`].
    ///
    /// ```
    /// use tower_bad_gateway::timeout::WriteTimeoutLayer;
    /// use tower::{Layer, Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use tower_bad_gateway::timeout::UploadBody;
    /// let upstream = tower::service_fn(|_req: http::Request<UploadBody<http_body_util::Empty<bytes::Bytes>>>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let mut svc = WriteTimeoutLayer::new(std::time::Duration::from_secs(5)).layer(upstream);
    /// svc.ready().await.unwrap();
    /// let future = svc.call(http::Request::new(http_body_util::Empty::new()));
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<Sleep>,
        watch: Option<Arc<Watch>>,
        timeout: Duration,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.future.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(watch) = this.watch.as_ref() else {
            return Poll::Pending;
        };
        // Re-arm until the upload stalls for a whole `timeout` on the upstream's side.
        while let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_pending() {
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
                Some(at) => this
                    .sleep
                    .as_mut()
                    .as_pin_mut()
                    .map(|s| s.reset(at))
                    .unwrap_or(()),
                None => this.sleep.set(None),
            }
        }
        Poll::Pending
    }
}
