use super::Timeout;
use std::time::Duration;
use tower_layer::Layer;

/// Applies [`Timeout`] to a service. Every timeout is off until set.
///
/// ```
/// use tower_bad_gateway::timeout::TimeoutLayer;
/// use std::time::Duration;
///
/// let layer = TimeoutLayer::new()
///     .attempt_timeout(Duration::from_secs(10))   // to the response head, connecting included
///     .body_idle_timeout(Duration::from_secs(30)) // between two body frames
///     .body_total_timeout(Duration::from_secs(300));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer {
    pub(super) attempt: Option<Duration>,
    pub(super) body_idle: Option<Duration>,
    pub(super) body_total: Option<Duration>,
    /// Built below an [`Upstreams`](crate::upstreams::Upstreams) (by
    /// [`GatewayLayer`](crate::GatewayLayer)), which sees the timeouts as errors:
    /// no [`HeadDeadline`](super::HeadDeadline) is needed for it.
    pub(super) upstreams_above: bool,
}

impl TimeoutLayer {
    /// A layer with every timeout off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time allowed from the call to the response head (connecting included).
    ///
    /// An attempt that times out is not tried again unless a retry policy opts in
    /// (see the [module docs](super)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt = Some(timeout);
        self
    }

    /// Time the response body may wait for its next frame (the first one
    /// included), counted from when it is asked for one and has none: the time
    /// its reader takes between two frames is not counted (as nginx's
    /// `proxy_read_timeout`).
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle = Some(timeout);
        self
    }

    /// Time allowed for the whole response body, from the head on.
    pub fn body_total_timeout(mut self, timeout: Duration) -> Self {
        self.body_total = Some(timeout);
        self
    }

    /// For a layer placed right below an [`Upstreams`](crate::upstreams::Upstreams):
    /// it leaves no [`HeadDeadline`](super::HeadDeadline) in the request, since
    /// the `Upstreams` above sees each timeout as the attempt's error.
    pub(crate) fn below_upstreams(mut self) -> Self {
        self.upstreams_above = true;
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, *self)
    }
}
