//! The request upload watchdog: an upstream that stops taking the request body.

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

pub(super) const STARTED: u8 = 1;
pub(super) const WAITING_DOWNSTREAM: u8 = 2;
pub(super) const DONE: u8 = 4;

/// Shared between the body and the future of one attempt.
#[derive(Debug)]
pub(super) struct Watch {
    pub(super) base: Instant,
    /// Nanoseconds from `base` to the last chunk the upstream took.
    pub(super) progress: AtomicU64,
    pub(super) state: AtomicU8,
}

impl Watch {
    pub(super) fn mark(&self, set: u8, clear: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s | set) & !clear)
            });
    }

    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(nanos, Ordering::Release);
    }

    pub(super) fn last_progress(&self) -> Instant {
        self.base + Duration::from_nanos(self.progress.load(Ordering::Acquire))
    }
}
