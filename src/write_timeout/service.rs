use super::{ResponseFuture, UploadBody, Watch, WriteTimeoutLayer};
use crate::error::BoxError;
use http::Request;
use http_body::Body;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// Middleware that times out stalled request uploads; see [`WriteTimeoutLayer`].
///
/// ```
/// use tower_bad_gateway::write_timeout::{UploadBody, WriteTimeoutLayer};
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

impl<S> WriteTimeout<S> {
    /// Wraps `inner`: an attempt whose upstream takes no request body data for
    /// `timeout` fails; with `None`, bodies pass through untouched.
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        Self { inner, timeout }
    }

    /// A [`WriteTimeoutLayer`] for `timeout`.
    pub fn layer(timeout: Duration) -> WriteTimeoutLayer {
        WriteTimeoutLayer::new(timeout)
    }

    crate::macros::define_inner_service_accessors!();
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
        let req = req.map(|body| UploadBody::new(body, body_watch));
        let future = self.inner.call(req);
        match watch {
            Some((watch, timeout, now)) => {
                ResponseFuture::new(future, Some((watch, now + timeout)), timeout)
            }
            None => ResponseFuture::new(future, None, Duration::ZERO),
        }
    }
}
