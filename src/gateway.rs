//! The composed stack: [`GatewayLayer`].
//!
//! ```text
//! request ─▶ SetDeadline ─▶ BadGateway ─▶ Retry ─▶ Timeout ─▶ WriteTimeout ─▶ upstream client
//!            (stamps the    (classifies,  (tries    (ends each  (ends an attempt
//!             deadline,      answers the   again     attempt's   whose upstream
//!             grpc-timeout)  final failure) safely)   wait, body) stops reading)
//! ```
//!
//! # Why this order
//!
//! - **The deadline comes first** so that every layer below measures against the
//!   same instant, and time spent in earlier attempts and backoff counts against it.
//!   It only sets the deadline: the timeout layer ends waits at it, and the retry
//!   layer starts nothing past it.
//! - **BadGateway sits above Retry** so that it answers once, for the final outcome.
//!   Below Retry, it would turn every failed attempt into a 502 *response*: Retry
//!   would see an upstream answer, not an error, could no longer tell a refused
//!   connection (safe to retry any request) from an upstream's own 502, and every
//!   attempt's failure would be reported as if it were the last.
//! - **Retry sits above the per-attempt timeout** so that each attempt gets its own
//!   time. Above Retry, one timeout would span all attempts (the deadline's job): a
//!   stalled first attempt would use up all the time and leave none to retry.
//! - **The timeouts sit right on the client** so that they measure what an attempt
//!   really takes, connecting included, and wrap the bodies directly.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_bad_gateway::GatewayLayer;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = Client::builder(TokioExecutor::new()).build_http();
//! let gateway = GatewayLayer::new()
//!     .attempts(3)
//!     .attempt_timeout(Duration::from_secs(2))
//!     .body_idle_timeout(Duration::from_secs(30))
//!     .deadline(Duration::from_secs(5))
//!     .layer(client);
//! // `gateway` is a `Service<Request<axum::body::Body>, Error = Infallible>`:
//! let app: axum::Router = axum::Router::new().fallback_service(gateway);
//! # let _ = app;
//! # }
//! ```

use crate::bad_gateway::{BadGateway, BadGatewayLayer};
use crate::classify::Classifier;
use crate::error::ErrorKind;
use crate::retry::{Retry, RetryLayer, RetryPolicy};
use crate::timeout::{
    DeadlineLayer, SetDeadline, Timeout, TimeoutLayer, WriteTimeout, WriteTimeoutLayer,
};
use std::time::Duration;
use tower_layer::Layer;

/// Builds the whole stack in the right order: `SetDeadline → BadGateway → Retry →
/// Timeout → WriteTimeout → client`. See the [module docs](self) for why this order.
///
/// Defaults: [`BadGatewayLayer::new`], [`RetryPolicy::new`] (3 attempts), no
/// timeouts, and a deadline only when a gRPC caller sends `grpc-timeout`.
///
/// ```
/// use tower_bad_gateway::GatewayLayer;
/// use std::time::Duration;
///
/// let layer = GatewayLayer::new()
///     .attempts(2)
///     .attempt_timeout(Duration::from_secs(1))
///     .write_timeout(Duration::from_secs(5))
///     .retry_timeouts(false);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    bad_gateway: BadGatewayLayer,
    retry: RetryPolicy,
    retry_timeouts: bool,
    timeout: TimeoutLayer,
    write_timeout: WriteTimeoutLayer,
    deadline: DeadlineLayer,
}

impl Default for GatewayLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayLayer {
    /// The default stack.
    pub fn new() -> Self {
        Self {
            bad_gateway: BadGatewayLayer::new(),
            retry: RetryPolicy::new(),
            retry_timeouts: false,
            timeout: TimeoutLayer::new(),
            write_timeout: WriteTimeoutLayer::disabled(),
            deadline: DeadlineLayer::grpc_only(),
        }
    }

    /// Attempts in all, the first included (see [`RetryPolicy::max_attempts`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.retry = self.retry.max_attempts(attempts);
        self
    }

    /// Time allowed to each attempt for the response head, connecting included.
    ///
    /// A per-*attempt* timeout also opts in to retrying it: an attempt that timed
    /// out is tried again when the request is idempotent (turn that off with
    /// [`retry_timeouts(false)`](Self::retry_timeouts)).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.attempt_timeout(timeout);
        self.retry_timeouts = true;
        self
    }

    /// Whether an attempt that timed out before the response head is retried
    /// (idempotent requests only).
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// Time allowed between two frames of the response body.
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
        self.write_timeout = WriteTimeoutLayer::new(timeout);
        self
    }

    /// Time allowed for the whole exchange, all attempts and waits included (a
    /// gRPC caller's shorter `grpc-timeout` still wins).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = DeadlineLayer::new(deadline);
        self
    }

    /// Replaces the retry policy (the options above still apply on top of it).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Replaces the answering layer's configuration.
    pub fn bad_gateway(mut self, layer: BadGatewayLayer) -> Self {
        self.bad_gateway = layer;
        self
    }

    /// Classifies failures with `classifier`, both to answer and to retry.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.bad_gateway = self.bad_gateway.with_classifier(classifier.clone());
        self.retry = self.retry.classifier(classifier);
        self
    }
}

/// The service [`GatewayLayer`] builds around a client `S`.
///
/// ```
/// use tower_bad_gateway::{Gateway, GatewayLayer};
/// use tower::Layer;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<tower_bad_gateway::timeout::UploadBody<tower_bad_gateway::retry::ReplayBody<axum::body::Body>>>();
/// let gateway: Gateway<_> = GatewayLayer::new().layer(client);
/// # let _ = gateway;
/// # }
/// ```
pub type Gateway<S> = SetDeadline<BadGateway<Retry<Timeout<WriteTimeout<S>>>>>;

impl<S> Layer<S> for GatewayLayer {
    type Service = Gateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let mut policy = self.retry.clone();
        if self.retry_timeouts {
            policy = policy.retry_on(ErrorKind::ResponseHeaderTimeout);
        }
        let timeout = self.timeout.layer(self.write_timeout.layer(inner));
        let retry = RetryLayer::new(policy).layer(timeout);
        let bad_gateway = self.bad_gateway.layer(retry);
        self.deadline.layer(bad_gateway)
    }
}
