//! The errors the timeout layers raise: each says what timed out.

use std::time::Duration;

/// No response head arrived within the per-attempt timeout.
///
/// Classified as [`ErrorKind::ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout)
/// (504 `http_response_timeout`).
///
/// ```
/// use tower_bad_gateway::timeout::TimeoutLayer;
/// use tower_bad_gateway::error::HeadTimeout;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let never = tower::service_fn(|_req: http::Request<()>| std::future::pending::<Result<http::Response<()>, std::io::Error>>());
/// let svc = TimeoutLayer::new().attempt_timeout(Duration::from_millis(10)).layer(never);
/// let err = svc.oneshot(http::Request::new(())).await.err().unwrap();
/// assert_eq!(err.downcast_ref::<HeadTimeout>().unwrap().after(), Duration::from_millis(10));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no response head within {after:?}")]
pub struct HeadTimeout {
    pub(crate) after: Duration,
}

impl HeadTimeout {
    /// The timeout that expired.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// Which body timeout expired.
///
/// ```
/// use tower_bad_gateway::GatewayError;
/// use tower_bad_gateway::classify::chain;
/// use tower_bad_gateway::error::{BodyTimeout, BodyTimeoutKind};
///
/// /// Whether a body was cut for going quiet, rather than for taking too long.
/// fn went_quiet(err: &GatewayError) -> bool {
///     chain(err)
///         .find_map(|e| e.downcast_ref::<BodyTimeout>())
///         .is_some_and(|t| t.kind() == BodyTimeoutKind::Idle)
/// }
/// # let _ = went_quiet;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyTimeoutKind {
    /// No frame arrived for the idle timeout.
    #[error("idle for longer than")]
    Idle,
    /// The whole body took longer than the total timeout.
    #[error("took longer than")]
    Total,
}

/// The response body stopped arriving in time.
///
/// Classified as [`ErrorKind::ReadTimeout`](crate::ErrorKind::ReadTimeout)
/// (`connection_read_timeout`); the stream ends with this error, never cleanly.
///
/// ```
/// use tower_bad_gateway::timeout::TimeoutBody;
/// use tower_bad_gateway::error::{BodyTimeout, BodyTimeoutKind};
/// use http_body_util::BodyExt;
/// use std::time::Duration;
/// # struct Stalled;
/// # impl http_body::Body for Stalled {
/// #     type Data = bytes::Bytes;
/// #     type Error = std::io::Error;
/// #     fn poll_frame(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> { std::task::Poll::Pending }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // No idle timeout, a total of 10 ms: a body that never ends is cut at 10 ms.
/// let body = TimeoutBody::new(Stalled, None, Some(Duration::from_millis(10)));
/// let err = body.collect().await.unwrap_err();
/// let timeout = err.downcast_ref::<BodyTimeout>().unwrap();
/// assert_eq!(timeout.kind(), BodyTimeoutKind::Total);
/// assert_eq!(timeout.after(), Duration::from_millis(10));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("response body {kind} {after:?}")]
pub struct BodyTimeout {
    pub(crate) kind: BodyTimeoutKind,
    pub(crate) after: Duration,
}

impl BodyTimeout {
    /// Which timeout expired.
    pub fn kind(&self) -> BodyTimeoutKind {
        self.kind
    }

    /// The timeout that expired.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// The exchange's [`Deadline`](crate::deadline::Deadline) passed: before the response head
/// (classified [`ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout),
/// 504) or while its body was arriving
/// ([`ReadTimeout`](crate::ErrorKind::ReadTimeout), the stream is cut).
///
/// ```
/// use tower_bad_gateway::deadline::Deadline;
/// use tower_bad_gateway::timeout::TimeoutLayer;
/// use tower_bad_gateway::error::DeadlineExceeded;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let never = tower::service_fn(|_req: http::Request<()>| std::future::pending::<Result<http::Response<()>, std::io::Error>>());
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Deadline::after(Duration::from_millis(10)));
/// let err = TimeoutLayer::new().layer(never).oneshot(req).await.err().unwrap();
/// assert!(err.is::<DeadlineExceeded>());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed")]
pub struct DeadlineExceeded;

/// The upstream stopped taking the request body for the write timeout.
///
/// Classified as [`ErrorKind::WriteTimeout`](crate::ErrorKind::WriteTimeout)
/// (504 `connection_write_timeout`).
///
/// ```
/// use tower_bad_gateway::write_timeout::{UploadBody, WriteTimeoutLayer};
/// use tower_bad_gateway::error::WriteTimeoutError;
/// use http_body_util::BodyExt;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
/// # struct TwoChunks(u8);
/// # impl http_body::Body for TwoChunks {
/// #     type Data = bytes::Bytes;
/// #     type Error = std::io::Error;
/// #     fn poll_frame(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
/// #         self.0 += 1;
/// #         std::task::Poll::Ready((self.0 <= 2).then(|| Ok(http_body::Frame::data(bytes::Bytes::from("chunk")))))
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // An "upstream" that takes the first chunk of the upload, then stops reading.
/// let upstream = tower::service_fn(|req: http::Request<UploadBody<TwoChunks>>| async move {
///     let mut body = req.into_body();
///     let _first = body.frame().await;
///     std::future::pending::<()>().await;
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// });
/// let svc = WriteTimeoutLayer::new(Duration::from_millis(10)).layer(upstream);
/// let err = svc.oneshot(http::Request::new(TwoChunks(0))).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<WriteTimeoutError>().unwrap().after(), Duration::from_millis(10));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the upstream took no request body data for {after:?}")]
pub struct WriteTimeoutError {
    pub(crate) after: Duration,
}

impl WriteTimeoutError {
    /// The timeout that expired.
    pub fn after(&self) -> Duration {
        self.after
    }
}
