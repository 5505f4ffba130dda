use super::Gateway;
use crate::bad_gateway::BadGatewayLayer;
use crate::classify::Classifier;
use crate::deadline::SetDeadlineLayer;
use crate::error::ErrorKind;
use crate::retry::{HedgePolicy, RetryLayer, RetryPolicy};
use crate::timeout::TimeoutLayer;
use crate::upstreams::{EndpointSet, UpstreamsLayer};
use crate::write_timeout::WriteTimeoutLayer;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Builds the whole stack in the right order: `SetDeadline → BadGateway → Retry →
/// Upstreams → Timeout → WriteTimeout → client`. See the [module docs](super) for why this
/// order, and for how the settings combine: the order of the calls never matters.
///
/// Defaults: [`BadGatewayLayer::new`], [`RetryPolicy::new`] (3 attempts), no
/// timeouts, no endpoint set (requests go where their URI says), and a deadline
/// only when a gRPC caller sends `grpc-timeout`.
///
/// ```
/// use tower_bad_gateway::GatewayLayer;
/// use std::time::Duration;
///
/// let layer = GatewayLayer::new()
///     .max_attempts(2)
///     .attempt_timeout(Duration::from_secs(1))
///     .retry_timeouts(true) // idempotent requests whose attempt timed out go again
///     .write_timeout(Duration::from_secs(5));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
pub struct GatewayLayer {
    bad_gateway: BadGatewayLayer,
    retry: RetryPolicy,
    max_attempts: Option<u32>,
    retry_timeouts: Option<bool>,
    classifier: Option<Classifier>,
    timeout: TimeoutLayer,
    write_timeout: Option<Duration>,
    deadline: Option<Duration>,
    upstreams: Option<EndpointSet>,
    hedge: Option<HedgePolicy>,
}

impl GatewayLayer {
    /// The default stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts in all, the first included (see [`RetryPolicy::max_attempts`]);
    /// wins over the [`retry_policy`](Self::retry_policy)'s.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Time allowed to each attempt for the response head, connecting included.
    ///
    /// An attempt that timed out is not tried again unless
    /// [`retry_timeouts(true)`](Self::retry_timeouts) says so.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.attempt_timeout(timeout);
        self
    }

    /// Whether an attempt that timed out before the response head is tried again
    /// (idempotent requests only). Off unless the
    /// [`retry_policy`](Self::retry_policy) opts in to
    /// [`ResponseHeaderTimeout`](ErrorKind::ResponseHeaderTimeout); this setting
    /// wins over the policy's either way.
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = Some(retry);
        self
    }

    /// Time the response body may wait for its next frame (see
    /// [`TimeoutLayer::body_idle_timeout`]).
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.body_idle_timeout(timeout);
        self
    }

    /// Time allowed for the whole response body.
    pub fn body_total_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.body_total_timeout(timeout);
        self
    }

    /// Time an upstream may go without taking any of the request body before the
    /// attempt fails (see [`WriteTimeoutLayer`]).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Time allowed for the whole exchange, all attempts and waits included (a
    /// gRPC caller's shorter `grpc-timeout` still wins).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sends every attempt to an endpoint of `set`, steering around failing ones;
    /// see [`upstreams`](crate::upstreams). A retry goes to another endpoint when
    /// one is healthy.
    ///
    /// ```
    /// use tower_bad_gateway::GatewayLayer;
    /// use tower_bad_gateway::upstreams::EndpointSet;
    /// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
    /// let layer = GatewayLayer::new().upstreams(set);
    /// # let _ = layer;
    /// ```
    pub fn upstreams(mut self, set: EndpointSet) -> Self {
        self.upstreams = Some(set);
        self
    }

    /// Hedges idempotent requests by `policy`: after its delay, another attempt
    /// goes to another endpoint of the [set](Self::upstreams) while the first is
    /// still waiting; the first acceptable answer wins and the others are
    /// cancelled. Wins over the [`retry_policy`](Self::retry_policy)'s. See
    /// [`HedgePolicy`].
    ///
    /// ```
    /// use tower_bad_gateway::GatewayLayer;
    /// use tower_bad_gateway::retry::HedgePolicy;
    /// use tower_bad_gateway::upstreams::EndpointSet;
    /// use std::time::Duration;
    /// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
    /// let layer = GatewayLayer::new()
    ///     .upstreams(set)
    ///     .hedge(HedgePolicy::after(Duration::from_millis(50)));
    /// # let _ = layer;
    /// ```
    pub fn hedge(mut self, policy: HedgePolicy) -> Self {
        self.hedge = Some(policy);
        self
    }

    /// Retries by `policy`. [`max_attempts`](Self::max_attempts),
    /// [`retry_timeouts`](Self::retry_timeouts) and
    /// [`classifier`](Self::classifier), whenever they are called, still apply on
    /// top of it.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Answers failures as `layer` is configured to. A
    /// [`classifier`](Self::classifier), whenever it is called, still applies on
    /// top of it.
    pub fn bad_gateway(mut self, layer: BadGatewayLayer) -> Self {
        self.bad_gateway = layer;
        self
    }

    /// Classifies failures with `classifier`: to answer, to retry and to judge
    /// endpoints. Its rules come first; then those of a classifier given with
    /// [`bad_gateway`](Self::bad_gateway), then with
    /// [`retry_policy`](Self::retry_policy), then the defaults.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// The one classifier of the stack (see the [module docs](super)): every rule
    /// given to any part, outermost first, shared by all the layers.
    fn resolved_classifier(&self) -> Arc<Classifier> {
        let outer = self.classifier.clone().unwrap_or_default();
        let all = outer
            .then(self.bad_gateway.classifier_ref())
            .then(&self.retry.classifier);
        Arc::new(all)
    }

    fn resolved_policy(&self, classifier: Arc<Classifier>) -> RetryPolicy {
        let mut policy = self.retry.clone().shared_classifier(classifier);
        if let Some(attempts) = self.max_attempts {
            policy = policy.max_attempts(attempts);
        }
        if let Some(hedge) = &self.hedge {
            policy = policy.hedge(hedge.clone());
        }
        match self.retry_timeouts {
            Some(on) => policy.force_kind(ErrorKind::ResponseHeaderTimeout, on),
            None => policy,
        }
    }
}

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let classifier = self.resolved_classifier();
        let mut policy = self.resolved_policy(classifier.clone());
        // The retry event logs the request id the answers echo.
        policy.request_id_header = self.bad_gateway.request_id_header().clone();
        // One classifier answers, retries and judges endpoints. (The renderer's answers, rendered
        // once, are shared by the copy.)
        let bad_gateway = self
            .bad_gateway
            .clone()
            .with_shared_classifier(classifier.clone());
        let write_timeout = match self.write_timeout {
            Some(timeout) => WriteTimeoutLayer::new(timeout),
            None => WriteTimeoutLayer::no_timeout(),
        };
        let deadline = match self.deadline {
            Some(deadline) => SetDeadlineLayer::new(deadline),
            None => SetDeadlineLayer::grpc_only(),
        };
        // Upstreams right above Timeout sees every timeout as an error: neither
        // needs the mark a `Timeout` leaves for an `Upstreams` below it.
        let timeout = self
            .timeout
            .below_upstreams()
            .layer(write_timeout.layer(inner));
        let upstreams = UpstreamsLayer::from_parts(self.upstreams.clone(), classifier.clone())
            .above_timeout()
            .layer(timeout);
        let retry = RetryLayer::new(policy).layer(upstreams);
        deadline.layer(bad_gateway.layer(retry))
    }
}
