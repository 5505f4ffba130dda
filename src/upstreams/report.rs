//! The endpoint set's reporting seam: every event and metric of an endpoint's
//! state goes through here, so the state machine carries no `cfg`.

use super::Endpoint;
use std::time::Duration;

/// The probe of an ejected endpoint was let through.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn probing(endpoint: &Endpoint) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("probing", endpoint.authority().host(), endpoint.port());
    #[cfg(feature = "tracing")]
    tracing::info!(
        endpoint = %endpoint,
        "upstream endpoint probing: one request goes to it",
    );
}

/// Why an endpoint was ejected, as its event says.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(super) enum Ejection {
    /// This many failures in a row.
    Consecutive(u32),
    /// A window's failure rate (thousandths) well above its peers' (thousandths).
    FailureRate { rate: u32, peers: u32 },
    /// Its probe (a request, or an active health check) failed.
    ProbeFailed,
}

impl Ejection {
    /// The rule that ejected it, for the event's `reason` field.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn reason(self) -> &'static str {
        match self {
            Ejection::Consecutive(_) => "consecutive_failures",
            Ejection::FailureRate { .. } => "failure_rate",
            Ejection::ProbeFailed => "probe_failed",
        }
    }
}

/// What restored an endpoint.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(super) enum Restoration {
    /// Its probe (a request, or an active health check after its ejection) succeeded.
    Probe,
    /// It passed this many active health checks in a row, after failing them.
    Checks(u32),
}

/// The endpoint takes requests again.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn restored(endpoint: &Endpoint, by: Restoration) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("restored", endpoint.authority().host(), endpoint.port());
    #[cfg(feature = "tracing")]
    match by {
        Restoration::Probe => tracing::info!(
            endpoint = %endpoint,
            reason = "probe_succeeded",
            "upstream endpoint restored: its probe succeeded",
        ),
        Restoration::Checks(passed) => tracing::info!(
            endpoint = %endpoint,
            reason = "health_checks_passed",
            checks_passed = passed,
            "upstream endpoint restored: it passes its health checks again",
        ),
    }
}

/// The endpoint was ejected for `time`, its `ejections`th full ejection in a row,
/// by the rule `why` names; `full`: within the policy's share of the set, else a
/// short one beyond it. One event, which names the rule and its figures.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn ejected(
    endpoint: &Endpoint,
    why: Ejection,
    ejections: u32,
    time: Duration,
    full: bool,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("ejected", endpoint.authority().host(), endpoint.port());
    #[cfg(feature = "tracing")]
    {
        let (failures, rate, peers) = match why {
            Ejection::Consecutive(n) => (Some(n), None, None),
            Ejection::FailureRate { rate, peers } => (None, Some(rate), Some(peers)),
            Ejection::ProbeFailed => (None, None, None),
        };
        tracing::warn!(
            endpoint = %endpoint,
            reason = why.reason(),
            failures,
            failure_rate_permille = rate,
            peers_failure_rate_permille = peers,
            ejections,
            ejected_ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
            beyond_share = !full,
            "upstream endpoint ejected",
        );
    }
}

/// The endpoint failed `failed` active health checks in a row: it is down until
/// it passes enough again.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn down(endpoint: &Endpoint, failed: u32, last: &dyn std::fmt::Display) {
    #[cfg(feature = "metrics")]
    crate::metrics::endpoint_state_change("down", endpoint.authority().host(), endpoint.port());
    #[cfg(feature = "tracing")]
    tracing::warn!(
        endpoint = %endpoint,
        reason = "health_checks_failed",
        checks_failed = failed,
        last_check = %last,
        "upstream endpoint down: it fails its health checks",
    );
}

/// The membership was replaced: `endpoints` now, `added` new, `removed` gone.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(super) fn set_replaced(endpoints: usize, added: usize, removed: usize) {
    #[cfg(feature = "tracing")]
    tracing::info!(endpoints, added, removed, "upstream endpoint set replaced");
}

/// A lookup of a followed name failed, or answered that there is nothing.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
#[cfg_attr(not(feature = "dns"), allow(dead_code))]
pub(super) fn lookup_failed(name: &Endpoint, reason: &str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(name = %name, reason, "upstream name lookup failed");
}

/// One attempt, for `http.client.request.duration` (feature `metrics`): when it
/// started, its method and the endpoint it went to; nothing without the feature.
pub(crate) struct Attempt {
    #[cfg(feature = "metrics")]
    start: tokio::time::Instant,
    #[cfg(feature = "metrics")]
    method: &'static str,
    /// What a passthrough attempt's error is classified by (a picked one's is
    /// classified anyway).
    #[cfg(feature = "metrics")]
    classifier: Option<std::sync::Arc<crate::classify::Classifier>>,
}

impl Attempt {
    /// An attempt of a request with `method`, starting now; `classifier` for
    /// the errors of one that is not picked (passthrough).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn start(
        method: &http::Method,
        classifier: impl FnOnce() -> Option<std::sync::Arc<crate::classify::Classifier>>,
    ) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            start: tokio::time::Instant::now(),
            #[cfg(feature = "metrics")]
            method: crate::otel::method(method),
            #[cfg(feature = "metrics")]
            classifier: classifier(),
        }
    }

    /// The next hop a passthrough attempt's metrics name: the request's own
    /// authority (`None` without the feature: nothing records it).
    pub(super) fn hop_of(uri: &http::Uri) -> Option<crate::error::NextHop> {
        #[cfg(feature = "metrics")]
        return crate::error::NextHop::of(uri);
        #[cfg(not(feature = "metrics"))]
        {
            let _ = uri;
            None
        }
    }

    /// The upstream answered with `status`; `hop`: the endpoint's (the pick's,
    /// built once; or the request's own authority).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]
    pub(super) fn answered(&self, status: http::StatusCode, hop: Option<&crate::error::NextHop>) {
        #[cfg(feature = "metrics")]
        crate::metrics::attempt(self.method, hop, Some(status), None, self.start.elapsed());
    }

    /// The attempt failed, as `kind`; `hop` as for [`answered`](Self::answered).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]
    pub(super) fn failed(
        &self,
        kind: crate::error::ErrorKind,
        hop: Option<&crate::error::NextHop>,
    ) {
        #[cfg(feature = "metrics")]
        crate::metrics::attempt(
            self.method,
            hop,
            None,
            Some(kind.as_str()),
            self.start.elapsed(),
        );
    }

    /// A passthrough attempt failed with `error`: classified (by the rules the
    /// request carries) only to be recorded.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, clippy::unused_self))]
    pub(super) fn failed_with(
        &self,
        error: &(dyn std::error::Error + 'static),
        hop: Option<&crate::error::NextHop>,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(classifier) = &self.classifier {
            self.failed(
                classifier
                    .classify(error, crate::error::Phase::AwaitHead)
                    .kind(),
                hop,
            );
        }
    }
}
