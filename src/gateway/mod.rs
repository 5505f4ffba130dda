//! The composed stack: [`GatewayLayer`].
//!
//! ```text
//! request ─▶ SetDeadline ─▶ BadGateway ─▶ Retry ─▶ Upstreams ─▶ Timeout ─▶ WriteTimeout ─▶ upstream client
//!            (stamps the    (classifies,  (tries    (picks an    (ends each  (ends an attempt
//!             deadline,      answers the   again     endpoint     attempt's   whose upstream
//!             grpc-timeout)  final failure) safely)   per attempt) wait, body) stops reading)
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
//! - **The endpoint set sits below Retry** so that every attempt picks its own
//!   endpoint (a retry goes elsewhere) and each attempt's outcome counts for the
//!   endpoint it went to; above the timeouts, so that it sees each timeout as its
//!   attempt's error and counts it against the endpoint, with nothing added to the
//!   request (below them, a timed-out attempt counts too; see
//!   [`upstreams`](crate::upstreams)). Without an
//!   [`upstreams`](GatewayLayer::upstreams) set it passes requests through.
//! - **The timeouts sit right on the client** so that they measure what an attempt
//!   really takes, connecting included, and wrap the bodies directly.
//!
//! # Settings commute
//!
//! Every setter records its own setting, and [`layer`](tower_layer::Layer::layer) resolves them all at
//! once, so the order of the calls never changes the stack. Where a setting of the
//! `GatewayLayer` and one inside a part it was given overlap, the `GatewayLayer`'s
//! wins: [`max_attempts`](GatewayLayer::max_attempts) and
//! [`retry_timeouts`](GatewayLayer::retry_timeouts) over the
//! [`retry_policy`](GatewayLayer::retry_policy)'s, and
//! [`classifier`](GatewayLayer::classifier) over the classifiers of the
//! [`bad_gateway`](GatewayLayer::bad_gateway) layer and the retry policy. Without
//! it, one classifier still serves both answering and retrying: the
//! `bad_gateway` layer's if it set one, else the retry policy's.
//!
//! # The same behaviour as the parts composed by hand
//!
//! A timed-out attempt is retried only when you opt in
//! ([`retry_timeouts(true)`](GatewayLayer::retry_timeouts)), exactly as with a
//! hand-composed [`RetryLayer`](crate::retry::RetryLayer) over a
//! [`TimeoutLayer`](crate::timeout::TimeoutLayer): retrying what timed out
//! multiplies the load on an upstream that is already slow.
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
//!     .max_attempts(3)
//!     .attempt_timeout(Duration::from_secs(2))
//!     .body_idle_timeout(Duration::from_secs(30))
//!     .deadline(Duration::from_secs(5))
//!     .layer(client);
//! // `gateway` is a `Service<Request<axum::body::Body>, Error = Infallible>`; the
//! // client receives `UpstreamBody<axum::body::Body>` request bodies:
//! let app: axum::Router = axum::Router::new().fallback_service(gateway);
//! # let _ = app;
//! # }
//! ```

mod layer;
#[cfg(test)]
mod tests;

pub use self::layer::GatewayLayer;

use crate::bad_gateway::BadGateway;
use crate::deadline::SetDeadline;
use crate::retry::Retry;
use crate::timeout::Timeout;
use crate::upstreams::Upstreams;
use crate::write_timeout::WriteTimeout;

/// The service [`GatewayLayer`] builds around a client `S`.
///
/// ```
/// use tower_bad_gateway::{Gateway, GatewayLayer, UpstreamBody};
/// use tower::Layer;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<UpstreamBody<axum::body::Body>>();
/// let gateway: Gateway<_> = GatewayLayer::new().layer(client);
/// # let _ = gateway;
/// # }
/// ```
pub type Gateway<S> = SetDeadline<BadGateway<Retry<Upstreams<Timeout<WriteTimeout<S>>>>>>;
