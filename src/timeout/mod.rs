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
//! # With an endpoint set
//!
//! Below an [`UpstreamsLayer`](crate::upstreams::UpstreamsLayer) (Retry → Upstreams
//! → Timeout → client, as [`GatewayLayer`](crate::GatewayLayer) builds it), each
//! timeout reaches the `Upstreams` as its attempt's error and counts against the
//! endpoint. Above it, the other way round, it counts too: the `Timeout` leaves in
//! the request's extensions when its wait for the head ends, and the `Upstreams`
//! counts the attempt it sees dropped then as timed out, while one dropped before
//! (its caller left) counts for nothing. See [`upstreams`](crate::upstreams).
//!
//! Its neighbours: the request's [`Deadline`], set by
//! [`SetDeadlineLayer`] in
//! [`deadline`](crate::deadline) and enforced by this layer and the retry layer,
//! and [`WriteTimeoutLayer`] in
//! [`write_timeout`](crate::write_timeout), which ends an attempt whose upstream
//! stops taking the request body. The errors they raise live in
//! [`error`](crate::error).
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
mod future;
mod layer;
mod report;
mod service;

pub use self::body::TimeoutBody;
pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
pub(crate) use self::service::HeadDeadline;
pub use self::service::Timeout;

// The old paths of what moved out (see the CHANGELOG), kept working.
#[doc(hidden)]
pub use crate::deadline::{Deadline, SetDeadline, SetDeadlineLayer};
#[doc(hidden)]
pub use crate::write_timeout::{
    ResponseFuture as WriteResponseFuture, UploadBody, WriteTimeout, WriteTimeoutLayer,
};

/// The old path of the timeout errors, now in [`crate::error`].
#[doc(hidden)]
pub mod error {
    pub use crate::error::{
        BodyTimeout, BodyTimeoutKind, DeadlineExceeded, HeadTimeout, WriteTimeoutError,
    };
}

use http::HeaderName;

/// The `grpc-timeout` request header.
///
/// ```
/// assert_eq!(tower_bad_gateway::timeout::GRPC_TIMEOUT, "grpc-timeout");
/// ```
pub const GRPC_TIMEOUT: HeaderName = crate::grpc::GRPC_TIMEOUT;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The old paths of what moved out of this module name the very same items.
    #[test]
    fn the_old_paths_name_the_moved_items() {
        let _: super::Deadline = crate::deadline::Deadline::after(Duration::ZERO);
        let _: Option<super::SetDeadlineLayer> = None::<crate::deadline::SetDeadlineLayer>;
        let _: Option<super::SetDeadline<()>> = None::<crate::deadline::SetDeadline<()>>;
        let _: Option<super::UploadBody<()>> = None::<crate::write_timeout::UploadBody<()>>;
        let _: Option<super::WriteTimeout<()>> = None::<crate::write_timeout::WriteTimeout<()>>;
        let _: Option<super::WriteTimeoutLayer> = None::<crate::write_timeout::WriteTimeoutLayer>;
        let _: Option<super::WriteResponseFuture<()>> =
            None::<crate::write_timeout::ResponseFuture<()>>;
        let _: super::error::HeadTimeout = crate::error::HeadTimeout {
            after: Duration::ZERO,
        };
        let _: super::error::DeadlineExceeded = crate::error::DeadlineExceeded;
        let _: Option<(super::error::BodyTimeout, super::error::BodyTimeoutKind)> =
            None::<(crate::error::BodyTimeout, crate::error::BodyTimeoutKind)>;
        let _: Option<super::error::WriteTimeoutError> = None::<crate::error::WriteTimeoutError>;
    }
}
