//! The core middleware's reporting seam: its failure event, its metrics, and
//! nothing else; the middleware's logic carries no `cfg`.

use super::NextHop;
use crate::error::GatewayError;
use crate::render::RequestInfo;
use http::{Method, StatusCode};
use tokio::time::Instant;

/// A failure, reported once: the `tracing` event (feature `tracing`) and the
/// failure counter (feature `metrics`).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn failure(err: &GatewayError, info: &RequestInfo) {
    #[cfg(feature = "tracing")]
    log_failure(err, info);
    #[cfg(feature = "metrics")]
    crate::metrics::failure(err.kind().as_str(), err.phase().as_str());
}

/// An upstream error answer replaced by the gateway's page: the event (feature
/// `tracing`) and the `tower_bad_gateway.intercepted` counter (feature
/// `metrics`).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn intercepted(status: StatusCode, info: &RequestInfo, next_hop: Option<&NextHop>) {
    #[cfg(feature = "metrics")]
    crate::metrics::intercepted(status);
    #[cfg(feature = "tracing")]
    {
        let hop = next_hop.and_then(NextHop::authority);
        tracing::warn!(
            "http.response.status_code" = status.as_u16(),
            "http.request.method" = crate::otel::method(info.method()),
            "url.path" = info.path_for_log().as_deref(),
            "server.address" = hop.as_ref().map(|a| a.host()),
            "server.port" = hop.as_ref().and_then(|a| a.port_u16()),
            request_id = info.request_id_for_log().as_deref(),
            "upstream error answer intercepted",
        );
    }
}

/// An exchange, in `tower_bad_gateway.exchange.duration` (feature `metrics`):
/// the upstream's `status` when it answered, the `error` token on failure. The
/// clock is read only when it is recorded. (Each attempt is in
/// `http.client.request.duration`, recorded by the endpoint layer below.)
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(super) fn exchange(
    method: &Method,
    status: Option<StatusCode>,
    error: Option<&'static str>,
    start: Instant,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::exchange(method, status, error, start.elapsed());
}

/// The failure event: OpenTelemetry's names where they exist (`error.type`,
/// `http.request.method`, `url.path`, `server.address`, `server.port`,
/// `http.response.status_code` for a status the upstream answered,
/// `rpc.grpc.status_code`, `http.request.resend_count` when the request was
/// sent again), and the gateway's own (`tower_bad_gateway.answered_status`, the
/// status the gateway answered the client with; `phase`, `request_sent`,
/// `request_id`, `elapsed_ms` for the whole exchange up to the failure, `error`
/// for the source chain).
#[cfg(feature = "tracing")]
fn log_failure(err: &GatewayError, info: &RequestInfo) {
    let grpc = info.is_grpc();
    let hop = err.next_hop();
    tracing::warn!(
        "error.type" = err.kind().as_str(),
        "http.request.method" = crate::otel::method(info.method()),
        "url.path" = info.path_for_log().as_deref(),
        "server.address" = hop.map(|a| a.host()),
        "server.port" = hop.and_then(|a| a.port_u16()),
        // Only a status the upstream answered (the gateway's own is below); a gRPC
        // answer's HTTP status says nothing (a trailers-only answer is a 200).
        "http.response.status_code" = err
            .received_status()
            .filter(|_| !grpc)
            .map(|s| s.as_u16()),
        "tower_bad_gateway.answered_status" = (!grpc).then(|| err.status().as_u16()),
        "rpc.grpc.status_code" = grpc.then(|| err.kind().grpc_code().as_u8()),
        // Only when the request was sent again (OpenTelemetry: "when retried").
        "http.request.resend_count" = (err.attempts() > 1).then(|| err.attempts() - 1),
        phase = err.phase().as_str(),
        request_sent = err.request_sent().as_str(),
        request_id = info.request_id_for_log().as_deref(),
        elapsed_ms = u64::try_from(err.elapsed().as_millis()).unwrap_or(u64::MAX),
        error = %err.source_chain(),
        "upstream request failed",
    );
}
