//! The retry layer's reporting seam: every metric and event it emits goes
//! through here, so the layer's logic carries no `cfg`.

use super::RetryPolicy;
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
    policy: &RetryPolicy,
    attempt: u32,
    attempt_start: Instant,
    delay: Duration,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::retry(why.map(|e| e.kind().as_str()));
    #[cfg(feature = "tracing")]
    log_retry(why, replay, policy, attempt, attempt_start, delay);
}

/// The retry event. `server.address` and `server.port` name the endpoint that
/// failed (the failure's next hop: an endpoint set's replica), else the request
/// URI's; `request_id` and `url.path` tie it to the request, as on the failure
/// event.
#[cfg(feature = "tracing")]
fn log_retry(
    why: Result<&GatewayError, StatusCode>,
    replay: &Replay,
    policy: &RetryPolicy,
    attempt: u32,
    attempt_start: Instant,
    delay: Duration,
) {
    use crate::render::for_log;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let hop = why
        .ok()
        .and_then(|e| e.next_hop().cloned())
        .or_else(|| replay.next_hop().and_then(|h| h.authority()));
    let parts = replay.kept();
    tracing::info!(
        "error.type" = why.ok().map(|e| e.kind().as_str()),
        "http.response.status_code" = why.err().map(|s| s.as_u16()),
        "http.request.method" = parts.map(|p| crate::otel::method(&p.method)),
        "url.path" = parts.map(|p| for_log::path(p.uri.path())).as_deref(),
        "server.address" = hop.as_ref().map(|a| a.host()),
        "server.port" = hop.as_ref().and_then(|a| a.port_u16()),
        request_id = parts
            .and_then(|p| p.header(&policy.request_id_header))
            .map(for_log::request_id)
            .as_deref(),
        attempt,
        attempt_duration_ms = ms(attempt_start.elapsed()),
        delay_ms = ms(delay),
        "retrying upstream request",
    );
}

/// A hedge sent, as attempt number `attempt`: counted (feature `metrics`) and
/// logged (feature `tracing`).
#[cfg_attr(
    not(all(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
pub(super) fn hedged(replay: &Replay, policy: &RetryPolicy, attempt: u32) {
    #[cfg(feature = "metrics")]
    crate::metrics::hedge();
    #[cfg(feature = "tracing")]
    log_hedge(replay, policy, attempt, None);
}

/// A hedge's answer won over the attempts still in flight (feature `metrics`).
pub(super) fn hedge_won() {
    #[cfg(feature = "metrics")]
    crate::metrics::hedge_won();
}

/// A hedge the hedging budget refused (feature `metrics`).
pub(super) fn hedge_refused() {
    #[cfg(feature = "metrics")]
    crate::metrics::hedge_refused();
}

/// Attempt `attempt` of a hedged request ended with a failure, or an answer the
/// policy would retry, while others were still in flight: it lost (a `debug`
/// event, feature `tracing`); `pushback` is the gRPC pushback it carried.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn race_lost(attempt: u32, pushback: Option<crate::grpc::Pushback>) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        attempt,
        pushback_ms = match pushback {
            Some(crate::grpc::Pushback::After(wait)) =>
                Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
            _ => None,
        },
        no_more_hedges = matches!(pushback, Some(crate::grpc::Pushback::Stop)),
        "hedged attempt lost, the others still in flight",
    );
}

/// A hedged request answered by attempt `winner` of `attempts`, the `cancelled`
/// others dropped (feature `tracing`).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn race_won(
    replay: &Replay,
    policy: &RetryPolicy,
    winner: u32,
    attempts: u32,
    cancelled: usize,
) {
    #[cfg(feature = "tracing")]
    log_hedge(replay, policy, attempts, Some((winner, cancelled)));
}

/// The hedge events: `attempt` is the hedge's number (2 for the first hedge);
/// on the answer, the `winner`'s number, `attempts` sent in all and how many
/// were `cancelled`.
#[cfg(feature = "tracing")]
fn log_hedge(replay: &Replay, policy: &RetryPolicy, attempt: u32, answered: Option<(u32, usize)>) {
    use crate::render::for_log;
    let parts = replay.kept();
    let hop = replay.next_hop().and_then(|h| h.authority());
    let method = parts.map(|p| crate::otel::method(&p.method));
    let path = parts.map(|p| for_log::path(p.uri.path()));
    let request_id = parts
        .and_then(|p| p.header(&policy.request_id_header))
        .map(for_log::request_id);
    match answered {
        None => tracing::info!(
            "http.request.method" = method,
            "url.path" = path.as_deref(),
            "server.address" = hop.as_ref().map(|a| a.host()),
            request_id = request_id.as_deref(),
            attempt,
            "hedging upstream request",
        ),
        Some((winner, cancelled)) => tracing::info!(
            "http.request.method" = method,
            "url.path" = path.as_deref(),
            "server.address" = hop.as_ref().map(|a| a.host()),
            request_id = request_id.as_deref(),
            winner,
            attempts = attempt,
            cancelled,
            "hedged request answered, the other attempts cancelled",
        ),
    }
}
