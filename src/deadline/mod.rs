//! The request's [`Deadline`], and the middleware that sets it: [`SetDeadlineLayer`].
//!
//! One deadline spans the whole exchange, every attempt and every wait between
//! them; a gRPC caller's `grpc-timeout` shortens it. [`SetDeadline`] only stamps it
//! on the request; the layers below enforce it: [`Timeout`](crate::timeout::Timeout)
//! ends each attempt's wait for the head (and the body) at it, and
//! [`RetryLayer`](crate::retry::RetryLayer) starts no attempt past it.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::deadline::SetDeadlineLayer;
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! # let client = tower::service_fn(|_req: http::Request<String>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//! # });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(SetDeadlineLayer::new(Duration::from_secs(5))) // the whole exchange
//!     .layer(BadGatewayLayer::new())
//!     .layer(TimeoutLayer::new()) // ends the wait for the head at the deadline
//!     .service(client);
//! # let _ = svc;
//! ```

mod layer;
mod service;

pub use self::layer::SetDeadlineLayer;
pub use self::service::SetDeadline;

use std::time::Duration;
use tokio::time::Instant;

/// When the exchange began, and the instant by which it must be answered, carried
/// in the request's extensions.
///
/// [`SetDeadlineLayer`] puts it there; the layers below read it rather than the
/// clock: [`Timeout`](crate::timeout::Timeout) ends each wait at it,
/// [`RetryLayer`](crate::retry::RetryLayer) starts no attempt past it, and both
/// they and [`BadGateway`](crate::BadGateway) time their errors from its
/// [`start`](Self::start). It holds Tokio instants, so `tokio::time::pause()`
/// drives it in tests.
///
/// ```
/// use tower_bad_gateway::deadline::Deadline;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let start = Instant::now();
/// let deadline = Deadline::new(start, Duration::from_secs(2));
/// assert_eq!(deadline.start(), start);
/// assert_eq!(deadline.at(), start + Duration::from_secs(2));
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(deadline);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    start: Instant,
    at: Instant,
}

/// Far enough to mean "never", near enough not to overflow an `Instant`.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// An exchange that began at `start` and must end `timeout` later.
    pub fn new(start: Instant, timeout: Duration) -> Self {
        let at = start.checked_add(timeout.min(FAR)).unwrap_or(start);
        Self { start, at }
    }

    /// An exchange that begins now and must end `timeout` later.
    pub fn after(timeout: Duration) -> Self {
        Self::new(Instant::now(), timeout)
    }

    /// When the exchange began.
    pub fn start(self) -> Instant {
        self.start
    }

    /// The instant by which it must be answered.
    pub fn at(self) -> Instant {
        self.at
    }

    /// The time left until [`at`](Self::at), zero once it passed.
    pub fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// When the exchange began: the start of its deadline, or now if it has
    /// none (the first layer to see a request without one).
    pub(crate) fn start_of(deadline: Option<&Self>) -> Instant {
        deadline.map_or_else(Instant::now, |d| d.start)
    }

    /// The stricter of two deadlines for one exchange: the earlier end, counted
    /// from the earlier start.
    pub(crate) fn min(self, other: Self) -> Self {
        Self {
            start: self.start.min(other.start),
            at: self.at.min(other.at),
        }
    }
}
