use super::{Retry, RetryPolicy};
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`Retry`] with a [`RetryPolicy`]. Every service it makes shares the
/// policy, and so its budget.
///
/// ```
/// use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
/// let layer = RetryLayer::new(RetryPolicy::new().max_attempts(2));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: Arc<RetryPolicy>,
}

impl RetryLayer {
    /// A layer retrying by `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.policy.clone())
    }
}
