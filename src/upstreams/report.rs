//! The endpoint set's reporting seam: every event and metric of an endpoint's
//! state goes through here, so the state machine carries no `cfg`.

use super::Endpoint;
use std::time::Duration;

/// The probe of an ejected endpoint was let through.
#[cfg_attr(
    not(any(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
pub(super) fn probing(endpoint: &Endpoint) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("probing", endpoint.authority().as_str());
    #[cfg(feature = "tracing")]
    tracing::info!(
        endpoint = %endpoint,
        "upstream endpoint probing: one request goes to it",
    );
}

/// The probe succeeded: the endpoint takes requests again.
#[cfg_attr(
    not(any(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
pub(super) fn restored(endpoint: &Endpoint) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("restored", endpoint.authority().as_str());
    #[cfg(feature = "tracing")]
    tracing::info!(endpoint = %endpoint, "upstream endpoint restored: its probe succeeded");
}

/// The endpoint was ejected for `time`, its `ejections`th full ejection in a
/// row, after `failures` failures (or a failed probe); `full`: within the
/// policy's share of the set, else a short one beyond it.
#[cfg_attr(
    not(any(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
pub(super) fn ejected(
    endpoint: &Endpoint,
    failures: u32,
    ejections: u32,
    time: Duration,
    probe_failed: bool,
    full: bool,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("ejected", endpoint.authority().as_str());
    #[cfg(feature = "tracing")]
    tracing::warn!(
        endpoint = %endpoint,
        failures,
        ejections,
        ejected_ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
        probe_failed,
        beyond_share = !full,
        "upstream endpoint ejected",
    );
}

/// A window's failure rate (thousandths) stood well above its peers': the
/// endpoint is ejected next (the ejection is its own event).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn outlier(endpoint: &Endpoint, rate: u32, peers: u32) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        endpoint = %endpoint,
        failure_rate_permille = rate,
        peers_failure_rate_permille = peers,
        "upstream endpoint fails far more often than its peers",
    );
}

/// The membership was replaced: `endpoints` now, `added` new, `removed` gone.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn set_replaced(endpoints: usize, added: usize, removed: usize) {
    #[cfg(feature = "tracing")]
    tracing::info!(endpoints, added, removed, "upstream endpoint set replaced");
}
