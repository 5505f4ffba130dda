//! The errors the timeouts raise: each says what timed out.

use std::fmt;
use std::time::Duration;

/// No response head arrived within the per-attempt timeout.
///
/// Classified as [`ErrorKind::ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout)
/// (504 `http_response_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTimeout {
    pub(crate) after: Duration,
}

impl HeadTimeout {
    /// The timeout that expired.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for HeadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no response head within {:?}", self.after)
    }
}

impl std::error::Error for HeadTimeout {}

/// Which body timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyTimeoutKind {
    /// No frame arrived for the idle timeout.
    Idle,
    /// The whole body took longer than the total timeout.
    Total,
}

/// The response body stopped arriving in time.
///
/// Classified as [`ErrorKind::ReadTimeout`](crate::ErrorKind::ReadTimeout)
/// (`connection_read_timeout`); the stream ends with this error, never cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BodyTimeoutKind::Idle => write!(f, "no response body data for {:?}", self.after),
            BodyTimeoutKind::Total => {
                write!(f, "response body not complete within {:?}", self.after)
            }
        }
    }
}

impl std::error::Error for BodyTimeout {}
