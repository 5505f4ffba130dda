//! The request upload watchdog: [`WriteTimeoutLayer`] ends an attempt whose upstream
//! stops taking the request body, with a
//! [`WriteTimeoutError`](crate::error::WriteTimeoutError) (classified
//! [`WriteTimeout`](crate::ErrorKind::WriteTimeout), 504 `connection_write_timeout`).
//!
//! It goes right on the client, below [`TimeoutLayer`](crate::timeout::TimeoutLayer),
//! and hands the client an [`UploadBody`]: build the client for that body type.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! use tower_bad_gateway::write_timeout::{UploadBody, WriteTimeoutLayer};
//! type Body = http_body_util::Full<bytes::Bytes>;
//!
//! let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http::<UploadBody<Body>>();
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(10)))
//!     .layer(WriteTimeoutLayer::new(Duration::from_secs(10)))
//!     .service(client);
//! # let _ = svc;
//! ```

mod body;
mod future;
mod layer;
mod service;

pub use self::body::UploadBody;
pub use self::future::ResponseFuture;
pub use self::layer::WriteTimeoutLayer;
pub use self::service::WriteTimeout;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const STARTED: u8 = 1;
const WAITING_DOWNSTREAM: u8 = 2;
const DONE: u8 = 4;

/// Shared between the body and the future of one attempt.
#[derive(Debug)]
struct Watch {
    base: Instant,
    /// Nanoseconds from `base` to the last chunk the upstream took.
    progress: AtomicU64,
    state: AtomicU8,
}

impl Watch {
    fn mark(&self, set: u8, clear: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s | set) & !clear)
            });
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(nanos, Ordering::Release);
    }

    fn last_progress(&self) -> Instant {
        self.base + Duration::from_nanos(self.progress.load(Ordering::Acquire))
    }
}
