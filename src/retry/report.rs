//! The retry layer's reporting seam: every metric and event it emits goes
//! through here, so the layer's logic carries no `cfg`.

use super::replay::Replay;
use crate::error::{GatewayError, RetryDenied};
use http::StatusCode;
use std::time::Duration;
use tokio::time::Instant;

/// A retry denied: counted when the budget refused it (feature `metrics`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(super) fn denied(reason: Option<RetryDenied>) {
    #[cfg(feature = "metrics")]
    if reason == Some(RetryDenied::BudgetExhausted) {
        crate::metrics::retry_budget_exhausted();
    }
}

/// A retry: counted (feature `metrics`) and logged (feature `tracing`): why (the
/// failure's `error.type`, or the status answered), which attempt failed and how
/// long it took, and the wait before the next one; field names as on the failure
/// event.
#[cfg_attr(
    not(all(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
pub(super) fn retrying(
    why: Result<&GatewayError, StatusCode>,
    replay: &Replay,
    attempt: u32,
    attempt_start: Instant,
    delay: Duration,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::retry(why.map(|e| e.kind().as_str()));
    #[cfg(feature = "tracing")]
    log_retry(why, replay, attempt, attempt_start, delay);
}

#[cfg(feature = "tracing")]
fn log_retry(
    why: Result<&GatewayError, StatusCode>,
    replay: &Replay,
    attempt: u32,
    attempt_start: Instant,
    delay: Duration,
) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let hop = replay.next_hop().and_then(|h| h.authority());
    tracing::info!(
        "error.type" = why.ok().map(|e| e.kind().as_str()),
        "http.response.status_code" = why.err().map(|s| s.as_u16()),
        "http.request.method" = replay.parts().map(|p| crate::otel::method(&p.method)),
        "server.address" = hop.as_ref().map(|a| a.host()),
        "server.port" = hop.as_ref().and_then(|a| a.port_u16()),
        attempt,
        attempt_duration_ms = ms(attempt_start.elapsed()),
        delay_ms = ms(delay),
        "retrying upstream request",
    );
}
