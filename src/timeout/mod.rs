//! Giving up in time: a per-attempt timeout to the response head, and idle and
//! total timeouts on the response body, each raising its own typed error so the
//! classifier never has to guess what timed out.
//!
//! ```text
//! BadGateway ──▶ Timeout ──▶ upstream client
//!                  │ no head within `attempt_timeout`         ─▶ HeadTimeout      ─▶ 504 http_response_timeout
//!                  │ no head by the Deadline                  ─▶ DeadlineExceeded ─▶ 504 http_response_timeout
//!                  │ no body frame within `body_idle_timeout` ─▶ BodyTimeout      ─▶ stream cut, connection_read_timeout
//!                  └ body not done within `body_total_timeout` ─▶ BodyTimeout     ─▶ stream cut, connection_read_timeout
//! ```
//!
//! Unlike `tower::timeout` and tower-http's `TimeoutLayer`, it needs nothing of the
//! response body (no `Default`), so it wraps a hyper-util `Client` directly, and it
//! says *what* timed out. It needs a Tokio runtime with the time driver, and reads
//! only Tokio's clock, so `tokio::time::pause()` drives every timer and every
//! elapsed time in tests.
//!
//! A timed-out attempt is **not** tried again unless retrying it is opted in:
//! [`RetryPolicy::retry_on(ErrorKind::ResponseHeaderTimeout)`](crate::retry::RetryPolicy::retry_on),
//! or [`GatewayLayer::retry_timeouts(true)`](crate::GatewayLayer::retry_timeouts).
//! The same holds in both styles, hand-composed or [`GatewayLayer`](crate::GatewayLayer):
//! retrying what timed out multiplies the load on an upstream that is already slow.
//!
//! Also here: the request's [`Deadline`], set by [`SetDeadlineLayer`] and enforced
//! by this layer and the retry layer, and [`WriteTimeoutLayer`], which ends an
//! attempt whose upstream stops taking the request body.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! # let client = tower::service_fn(|_req: http::Request<String>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//! # });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(
//!         TimeoutLayer::new()
//!             .attempt_timeout(Duration::from_secs(10))
//!             .body_idle_timeout(Duration::from_secs(30)),
//!     )
//!     .service(client);
//! # let _ = svc;
//! ```

mod body;
mod deadline;
pub mod error;
mod future;
mod layer;
mod service;
mod write;

pub use self::body::TimeoutBody;
pub use self::deadline::{Deadline, SetDeadline, SetDeadlineLayer};
pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;
pub use self::write::{
    ResponseFuture as WriteResponseFuture, UploadBody, WriteTimeout, WriteTimeoutLayer,
};

use http::HeaderName;

/// The `grpc-timeout` request header.
///
/// ```
/// assert_eq!(tower_bad_gateway::timeout::GRPC_TIMEOUT, "grpc-timeout");
/// ```
pub const GRPC_TIMEOUT: HeaderName = crate::grpc::GRPC_TIMEOUT;
