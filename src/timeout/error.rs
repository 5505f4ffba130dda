//! The errors the timeouts raise: each says what timed out.

use std::time::Duration;

/// No response head arrived within the per-attempt timeout.
///
/// Classified as [`ErrorKind::ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout)
/// (504 `http_response_timeout`).
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

/// The exchange's [`Deadline`](super::Deadline) passed: before the response head
/// (classified [`ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout),
/// 504) or while its body was arriving
/// ([`ReadTimeout`](crate::ErrorKind::ReadTimeout), the stream is cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed")]
pub struct DeadlineExceeded;

/// The upstream stopped taking the request body for the write timeout.
///
/// Classified as [`ErrorKind::WriteTimeout`](crate::ErrorKind::WriteTimeout)
/// (504 `connection_write_timeout`).
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
