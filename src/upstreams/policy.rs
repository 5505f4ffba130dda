//! What counts against an endpoint, and how long it stays out: [`HealthPolicy`].

use crate::error::{ErrorKind, GatewayError};
use crate::outcome::{OnOff, Outcome, Outcomes};
use http::{HeaderMap, StatusCode};
use std::time::Duration;

/// When an endpoint is taken out of an [`EndpointSet`](super::EndpointSet) and
/// when it is tried again.
///
/// `consecutive_failures` failures of the endpoint itself in a row eject it. The
/// first ejection lasts `base_ejection`, each further one in a row twice as long as
/// the last, up to `max_ejection`. When an ejection ends, exactly one request is
/// let through as a probe: its success restores the endpoint, its failure ejects it
/// again. An endpoint that has stayed healthy for `max_ejection` since it was
/// restored starts again from `base_ejection`.
///
/// The defaults, and why:
///
/// | setting | default | reason |
/// |---|---|---|
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | Envoy's outlier detection (`consecutive_5xx`, `consecutive_gateway_failure`): one or two failures are routine on a busy network; five in a row are not |
/// | [`base_ejection`](Self::base_ejection) | 10 s | nginx's `fail_timeout`: short enough that a restarted replica gets traffic back quickly, since a failed probe costs one request |
/// | [`max_ejection`](Self::max_ejection) | 300 s | Envoy's `max_ejection_time`: a replica that stays dead is probed every five minutes at most |
/// | [`max_ejection_percent`](Self::max_ejection_percent) | 10 | Envoy's `max_ejection_percent`, gRFC A50's default: when most of a set fails at once, the fleet (a rolling restart, a shared database) is the likely cause, not each replica |
/// | [`short_ejection`](Self::short_ejection) | 1 s | beyond that share an endpoint is out only this long, so a blip that hits every replica ends for clients within about a second of its cause |
/// | [`failure_rate_window`](Self::failure_rate_window) | 50 outcomes | Envoy's `success_rate_request_volume` is 100; half that finds a replica failing a third of its requests after about 15 failures |
/// | [`failure_rate_margin`](Self::failure_rate_margin) | 20 points | a window's rate must stand above its peers' by their rate and by this much: a healthy replica's chance noise over 50 requests stays below it |
///
/// # When most of the set fails at once
///
/// At most `max_ejection_percent` of the set, and always at least one endpoint (so a
/// lone endpoint is still a circuit breaker), is out on a full ejection. An endpoint
/// that would be ejected beyond that share is ejected for `short_ejection` only,
/// with no doubling: it is probed again a second later. So:
///
/// - a blip that takes every replica down for a moment ends for clients within
///   about `short_ejection` of its end (the replicas beyond the share are probed and
///   restored), instead of lasting the 10 s base ejection;
/// - a set that is all plainly dead still fails fast, with `503`,
///   `destination_unavailable` and `Retry-After`, touching the network only for one
///   probe per endpoint per `short_ejection`.
///
/// This is linkerd's choice (fail fast, probe) rather than Envoy's panic mode
/// (route to every endpoint once too many are out): a request sent to a replica
/// that is plainly dead fails anyway, and failing it fast costs the client nothing
/// a second later.
///
/// Every ejection is jittered by up to 10% either way, so endpoints ejected at the
/// same instant do not all probe at the same instant.
///
/// # What counts
///
/// Only failures of the endpoint itself, the kinds below, by default.
/// An upstream's own answers (a 500, a 503, a gRPC `UNAVAILABLE`) do not, unless
/// [`count_on`](Self::count_on) says so; nor do local limits, a misconfiguration,
/// or failures of the response body (the attempt is over by then).
/// [`no_count_on`](Self::no_count_on) takes outcomes out, whatever the order of the
/// calls. Both take [`Outcomes`], as the retry and response policies do.
///
/// [`DnsError`](ErrorKind::DnsError), [`DnsTimeout`](ErrorKind::DnsTimeout),
/// [`ConnectionRefused`](ErrorKind::ConnectionRefused),
/// [`ConnectionTimeout`](ErrorKind::ConnectionTimeout),
/// [`DestinationUnreachable`](ErrorKind::DestinationUnreachable),
/// [`TlsProtocolError`](ErrorKind::TlsProtocolError),
/// [`TlsCertificateError`](ErrorKind::TlsCertificateError),
/// [`TlsAlertReceived`](ErrorKind::TlsAlertReceived),
/// [`ConnectionTerminated`](ErrorKind::ConnectionTerminated),
/// [`ResponseIncomplete`](ErrorKind::ResponseIncomplete),
/// [`ResponseHeaderTimeout`](ErrorKind::ResponseHeaderTimeout),
/// [`ProtocolError`](ErrorKind::ProtocolError).
///
/// ```
/// use tower_bad_gateway::upstreams::HealthPolicy;
/// use tower_bad_gateway::ErrorKind;
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let policy = HealthPolicy::new()
///     .consecutive_failures(3)
///     .base_ejection(Duration::from_secs(5))
///     .max_ejection(Duration::from_secs(60))
///     .count_on(StatusCode::SERVICE_UNAVAILABLE)       // an overloaded replica says so
///     .no_count_on(ErrorKind::ResponseHeaderTimeout);  // slow is not dead, here
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    pub(super) failures: u32,
    pub(super) base_ejection: Duration,
    pub(super) max_ejection: Duration,
    pub(super) max_ejection_percent: u8,
    pub(super) short_ejection: Duration,
    pub(super) rate_window: u32,
    pub(super) rate_margin: u32,
    pub(super) slow_start: Duration,
    jitter: bool,
    outcomes: OnOff,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        let kinds = [
            ErrorKind::DnsError,
            ErrorKind::DnsTimeout,
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionTimeout,
            ErrorKind::DestinationUnreachable,
            ErrorKind::TlsProtocolError,
            ErrorKind::TlsCertificateError,
            ErrorKind::TlsAlertReceived,
            ErrorKind::ConnectionTerminated,
            ErrorKind::ResponseIncomplete,
            ErrorKind::ResponseHeaderTimeout,
            ErrorKind::ProtocolError,
        ];
        Self {
            failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
            short_ejection: Duration::from_secs(1),
            rate_window: 50,
            rate_margin: 200,
            slow_start: Duration::ZERO,
            jitter: true,
            outcomes: OnOff::with_defaults(Outcomes::new().kinds(kinds)),
        }
    }
}

impl HealthPolicy {
    /// The defaults (see above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Failures in a row that eject an endpoint; `0` turns ejection off (the set
    /// still balances, and retries still go elsewhere).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.failures = failures;
        self
    }

    /// How long the first ejection lasts.
    pub fn base_ejection(mut self, time: Duration) -> Self {
        self.base_ejection = time;
        self
    }

    /// The longest an ejection lasts, however often the endpoint failed its probe.
    pub fn max_ejection(mut self, time: Duration) -> Self {
        self.max_ejection = time;
        self
    }

    /// The share of the set, in percent, that may be out on a full ejection at once
    /// (default 10; at least one endpoint always may; `100` puts no bound). Beyond it
    /// an endpoint is out for [`short_ejection`](Self::short_ejection) only. Values
    /// above 100 are 100.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::HealthPolicy;
    /// use std::time::Duration;
    /// // Up to a third of a large set may be ejected; beyond, out for 2 s.
    /// let policy = HealthPolicy::new().max_ejection_percent(33).short_ejection(Duration::from_secs(2));
    /// # let _ = policy;
    /// ```
    pub fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent.min(100);
        self
    }

    /// How long an endpoint ejected beyond the
    /// [`max_ejection_percent`](Self::max_ejection_percent) share stays out before
    /// its probe (default 1 s): about how long a blip that hits the whole set lasts
    /// for clients after its cause ends.
    pub fn short_ejection(mut self, time: Duration) -> Self {
        self.short_ejection = time;
        self
    }

    /// Judges each endpoint's failure rate over windows of this many outcomes
    /// (default 50; `0` turns it off), against its peers': an endpoint whose rate
    /// over its last window is above the peers' mean by at least that mean and at
    /// least [`failure_rate_margin`](Self::failure_rate_margin) is ejected (within
    /// the [`max_ejection_percent`](Self::max_ejection_percent) share, as any
    /// ejection). A replica that fails a third of its requests, never five in a row
    /// for long, is found this way; when the whole fleet fails alike, nothing is
    /// ejected for it. Restored by its probe, it is judged again by its next full
    /// window: one lucky success does not clear it.
    pub fn failure_rate_window(mut self, outcomes: u32) -> Self {
        self.rate_window = outcomes;
        self
    }

    /// The least a window's failure rate must stand above its peers' to eject, in
    /// percentage points (default 20).
    pub fn failure_rate_margin(mut self, points: u8) -> Self {
        self.rate_margin = u32::from(points.min(100)) * 10;
        self
    }

    /// Ramps a restored endpoint's share of requests up from nothing to full over
    /// `window` (Envoy's `slow_start_window`, nginx's `slow_start`), so a replica
    /// that just came back, cold, is not handed a full share at once; an endpoint
    /// that joins the set by [`replace`](super::EndpointSet::replace) or
    /// [`discover`](super::EndpointSet::discover) ramps up too. Off by default, as
    /// in both. While every endpoint ramps, each still takes requests: none is
    /// refused for it.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::HealthPolicy;
    /// use std::time::Duration;
    /// let policy = HealthPolicy::new().slow_start(Duration::from_secs(30));
    /// # let _ = policy;
    /// ```
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// Ejects for exactly the times set, without the 10% jitter that keeps
    /// endpoints ejected together from probing together: for tests that assert them.
    pub fn no_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// `time`, jittered by up to 10% either way by `random` (unless turned off).
    pub(super) fn jittered(&self, time: Duration, random: u64) -> Duration {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        let spread = nanos / 5;
        if !self.jitter || spread == 0 {
            return time;
        }
        Duration::from_nanos(nanos - nanos / 10 + random % (spread + 1))
    }

    /// Counts these outcomes against the endpoint: failures of a kind, answers
    /// with a status, or gRPC answers with a code (a trailers-only answer's
    /// `grpc-status`: `UNAVAILABLE` from a replica that is shutting down or
    /// overloaded, say; a status in the trailers comes after the attempt is over,
    /// and does not count), or what a predicate says. Sets accumulate.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::HealthPolicy;
    /// use tower_bad_gateway::{GrpcCode, Outcomes};
    /// let policy = HealthPolicy::new().count_on(Outcomes::new().status(503).grpc(GrpcCode::Unavailable));
    /// # let _ = policy;
    /// ```
    pub fn count_on(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.outcomes = self.outcomes.on(outcomes);
        self
    }

    /// Never counts these outcomes against the endpoint, whatever else says so
    /// and whatever the order of the calls.
    pub fn no_count_on(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.outcomes = self.outcomes.off(outcomes);
        self
    }

    /// Whether a failed attempt counts against its endpoint.
    pub(super) fn counts_error(&self, err: &GatewayError) -> bool {
        self.outcomes.counts(&Outcome::Error(err))
    }

    /// Whether an answer counts against its endpoint.
    pub(super) fn counts_answer(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.outcomes.counts_answer(status, headers)
    }

    /// The length of the `n`th ejection in a row (from 1).
    pub(super) fn ejection(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_ejection
            .saturating_mul(factor)
            .min(self.max_ejection)
            .max(self.base_ejection.min(self.max_ejection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejections_double_up_to_the_cap() {
        let p = HealthPolicy::new()
            .base_ejection(Duration::from_secs(10))
            .max_ejection(Duration::from_secs(35));
        let secs: Vec<u64> = (1..=5).map(|n| p.ejection(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 35, 35, 35]);
        assert_eq!(p.ejection(u32::MAX), Duration::from_secs(35));
    }

    #[test]
    fn ejections_are_jittered_by_up_to_a_tenth_either_way_unless_turned_off() {
        let p = HealthPolicy::new();
        let ten = Duration::from_secs(10);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000u64 {
            let t = p.jittered(ten, i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(
                t >= Duration::from_secs(9) && t <= Duration::from_secs(11),
                "{t:?}"
            );
            seen.insert(t);
        }
        assert!(
            seen.len() > 900,
            "spread over the range: {} distinct",
            seen.len()
        );
        assert_eq!(p.clone().no_jitter().jittered(ten, 12345), ten);
        assert_eq!(p.jittered(Duration::ZERO, 12345), Duration::ZERO);
    }
}
