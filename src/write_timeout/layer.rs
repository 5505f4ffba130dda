use super::WriteTimeout;
use std::time::Duration;
use tower_layer::Layer;

/// Applies [`WriteTimeout`]: fails an attempt whose upstream stops taking the
/// request body for `timeout`, with a [`WriteTimeoutError`](crate::error::WriteTimeoutError) (classified
/// [`WriteTimeout`](crate::ErrorKind::WriteTimeout), 504 `connection_write_timeout`).
///
/// Only the upstream's stalls count: the clock runs while the client is *not*
/// asking for the next chunk (its connection will take no more). While it waits on
/// a slow downstream uploader, or before it first asks (connecting), it does not.
///
/// ```
/// use tower_bad_gateway::write_timeout::WriteTimeoutLayer;
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

    /// No write timeout: request bodies pass through untouched (off is spelled
    /// `no_`, as everywhere in this crate).
    pub fn no_timeout() -> Self {
        Self { timeout: None }
    }
}

impl<S> Layer<S> for WriteTimeoutLayer {
    type Service = WriteTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteTimeout::new(inner, self.timeout)
    }
}
