//! Passive health: what counts against an endpoint, and its state machine.

use super::Endpoint;
use crate::error::{CodeSet, ErrorKind, GatewayError, GrpcCode, KindSet};
use http::{HeaderMap, StatusCode};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
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
///
/// What counts: only failures of the endpoint itself, the kinds below, by default.
/// An upstream's own answers (a 500, a 503, a gRPC `UNAVAILABLE`) do not, unless
/// [`count_status`](Self::count_status) or [`count_grpc`](Self::count_grpc) says so; nor do local limits, a
/// misconfiguration, or failures of the response body (the attempt is over by then).
///
/// [`DnsError`](ErrorKind::DnsError), [`DnsTimeout`](ErrorKind::DnsTimeout),
/// [`ConnectionRefused`](ErrorKind::ConnectionRefused),
/// [`ConnectionTimeout`](ErrorKind::ConnectionTimeout),
/// [`DestinationUnreachable`](ErrorKind::DestinationUnreachable),
/// [`TlsProtocolError`](ErrorKind::TlsProtocolError),
/// [`TlsCertificateError`](ErrorKind::TlsCertificateError),
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
///     .count_status(StatusCode::SERVICE_UNAVAILABLE)   // an overloaded replica says so
///     .ignore(ErrorKind::ResponseHeaderTimeout);        // slow is not dead, here
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    pub(super) failures: u32,
    pub(super) base_ejection: Duration,
    pub(super) max_ejection: Duration,
    kinds: KindSet,
    statuses: Vec<StatusCode>,
    grpc_codes: CodeSet,
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
            ErrorKind::ConnectionTerminated,
            ErrorKind::ResponseIncomplete,
            ErrorKind::ResponseHeaderTimeout,
            ErrorKind::ProtocolError,
        ]
        .into_iter()
        .fold(KindSet::default(), KindSet::with);
        Self {
            failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            kinds,
            statuses: Vec::new(),
            grpc_codes: CodeSet::default(),
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

    /// Counts failures of this kind against the endpoint.
    pub fn count(mut self, kind: ErrorKind) -> Self {
        self.kinds = self.kinds.with(kind);
        self
    }

    /// Does not count failures of this kind against the endpoint.
    pub fn ignore(mut self, kind: ErrorKind) -> Self {
        self.kinds = self.kinds.without(kind);
        self
    }

    /// Counts an answer with this status as a failure of the endpoint.
    pub fn count_status(mut self, status: StatusCode) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Counts a gRPC answer with this status (a trailers-only answer's
    /// `grpc-status`) as a failure of the endpoint: `UNAVAILABLE` from a replica
    /// that is shutting down or overloaded, say. A status in the trailers comes
    /// after the attempt is over, and does not count.
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::HealthPolicy;
    /// use tower_bad_gateway::GrpcCode;
    /// let policy = HealthPolicy::new().count_grpc(GrpcCode::Unavailable);
    /// # let _ = policy;
    /// ```
    pub fn count_grpc(mut self, code: GrpcCode) -> Self {
        self.grpc_codes = self.grpc_codes.with(code);
        self
    }

    /// Whether a failed attempt counts against its endpoint.
    pub(super) fn counts_error(&self, err: &GatewayError) -> bool {
        self.kinds.contains(err.kind())
    }

    /// Whether an answer counts against its endpoint.
    pub(super) fn counts_answer(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        (!self.statuses.is_empty() && self.statuses.contains(&status))
            || (!self.grpc_codes.is_empty()
                && crate::grpc::status(headers).is_some_and(|code| self.grpc_codes.contains(code)))
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

/// What an endpoint's state is, as [`EndpointSet::health`](super::EndpointSet::health)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Taking requests.
    Healthy,
    /// Ejected: no request goes to it for the time given.
    Ejected {
        /// Time until its probe may go.
        probe_in: Duration,
    },
    /// One request is on its way to it as a probe; no other goes.
    Probing,
}

const HEALTHY: u8 = 0;
const EJECTED: u8 = 1;
const PROBING: u8 = 2;
/// Being ejected: its `until` is not written yet, so nothing may probe it.
const EJECTING: u8 = 3;

/// What happened to an attempt, for its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The endpoint answered (with a status that does not count).
    Success,
    /// A failure of the endpoint itself.
    Failure,
    /// A failure that says nothing about the endpoint, or no outcome at all (the
    /// attempt was cancelled).
    Neutral,
}

/// One endpoint's shared state: what picks read on the hot path are atomics; the
/// transitions are compare-and-swaps on `state`, so no lock is ever taken.
///
/// Times are nanoseconds since the set's epoch.
pub(crate) struct EndpointState {
    pub(super) endpoint: Endpoint,
    pub(super) key: u64,
    pub(super) in_flight: AtomicU32,
    failures: AtomicU32,
    state: AtomicU8,
    /// While ejected: when the probe may go.
    until: AtomicU64,
    /// Ejections in a row.
    ejections: AtomicU32,
    /// When it was last restored.
    restored_at: AtomicU64,
}

/// Whether a pick may use an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Avail {
    Healthy,
    /// Failing, not yet ejected, and busy with as many requests as it has
    /// failures left: a last resort.
    Suspect,
    /// Its ejection is over: a request may claim the probe.
    ProbeDue,
    No,
}

impl EndpointState {
    pub(super) fn new(endpoint: Endpoint) -> Self {
        Self {
            key: super::key_of(endpoint.authority().as_str()),
            endpoint,
            in_flight: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            state: AtomicU8::new(HEALTHY),
            until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            restored_at: AtomicU64::new(0),
        }
    }

    /// Whether a request may go here. A suspect endpoint (failing, not yet
    /// ejected) takes no more requests at once than the failures it has left
    /// before ejection, so that no more than the threshold fail on it before it is
    /// ejected, unless no other endpoint may take the request: a suspect is not
    /// ejected, and failing a request it might answer helps no one. `now` is read
    /// only for an ejected endpoint.
    pub(super) fn avail(&self, policy: &HealthPolicy, now: &mut dyn FnMut() -> u64) -> Avail {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => {
                let failures = self.failures.load(Ordering::Relaxed);
                if failures == 0
                    || policy.failures == 0
                    || failures + self.in_flight.load(Ordering::Relaxed) < policy.failures
                {
                    Avail::Healthy
                } else {
                    Avail::Suspect
                }
            }
            EJECTED if now() >= self.until.load(Ordering::Acquire) => Avail::ProbeDue,
            _ => Avail::No,
        }
    }

    /// Claims the probe of an endpoint whose ejection is over; only one request wins.
    pub(super) fn claim_probe(&self) -> bool {
        let claimed = self
            .state
            .compare_exchange(EJECTED, PROBING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        #[cfg(feature = "metrics")]
        if claimed {
            crate::metrics::endpoint_state_change("probing", self.endpoint.authority().as_str());
        }
        #[cfg(feature = "tracing")]
        if claimed {
            tracing::info!(
                endpoint = %self.endpoint,
                "upstream endpoint probing: one request goes to it",
            );
        }
        claimed
    }

    /// Records an attempt's outcome; `probe` says whether it was the probe. The
    /// clock is read only for a transition: a plain success reads nothing.
    pub(super) fn record(
        &self,
        outcome: Outcome,
        probe: bool,
        policy: &HealthPolicy,
        now: impl FnOnce() -> u64,
    ) {
        match (outcome, probe) {
            (Outcome::Success, false) => {
                // Written only when it changes: a healthy endpoint's line stays shared.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            (Outcome::Success, true) => {
                self.failures.store(0, Ordering::Relaxed);
                self.restored_at.store(now(), Ordering::Relaxed);
                self.state.store(HEALTHY, Ordering::Release);
                #[cfg(feature = "metrics")]
                crate::metrics::endpoint_state_change(
                    "restored",
                    self.endpoint.authority().as_str(),
                );
                #[cfg(feature = "tracing")]
                tracing::info!(endpoint = %self.endpoint, "upstream endpoint restored: its probe succeeded");
            }
            (Outcome::Failure, false) if policy.failures == 0 => {}
            (Outcome::Failure, false) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= policy.failures {
                    self.eject(policy, now(), false, failures);
                }
            }
            (Outcome::Failure, true) => self.eject(policy, now(), true, 1),
            (Outcome::Neutral, false) => {}
            (Outcome::Neutral, true) => self.release_probe(),
        }
    }

    /// A probe that ended without saying anything (cancelled, timed out by a
    /// deadline above, or a failure that does not count) frees its slot: the next
    /// request may probe at once.
    pub(super) fn release_probe(&self) {
        let _ = self
            .state
            .compare_exchange(PROBING, EJECTED, Ordering::AcqRel, Ordering::Acquire);
    }

    fn eject(&self, policy: &HealthPolicy, now: u64, probe: bool, failures: u32) {
        let from = if probe { PROBING } else { HEALTHY };
        // Only one of the failures racing past the threshold ejects. Until its
        // `until` is written, the endpoint is `EJECTING`, which no pick takes: an
        // `EJECTED` with last ejection's `until` would let a probe through at once.
        if self
            .state
            .compare_exchange(from, EJECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let healthy_since = now.saturating_sub(self.restored_at.load(Ordering::Relaxed));
        if !probe && healthy_since >= nanos(policy.max_ejection) {
            self.ejections.store(0, Ordering::Relaxed);
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = policy.ejection(n);
        self.failures.store(0, Ordering::Relaxed);
        self.until
            .store(now.saturating_add(nanos(time)), Ordering::Release);
        self.state.store(EJECTED, Ordering::Release);
        #[cfg(feature = "metrics")]
        crate::metrics::endpoint_state_change("ejected", self.endpoint.authority().as_str());
        #[cfg(feature = "tracing")]
        tracing::warn!(
            endpoint = %self.endpoint,
            failures,
            ejections = n,
            ejected_ms = u64::try_from(time.as_millis()).unwrap_or(u64::MAX),
            probe_failed = probe,
            "upstream endpoint ejected",
        );
        #[cfg(not(feature = "tracing"))]
        let _ = failures;
    }

    /// The endpoint's state at `now`.
    pub(super) fn health(&self, now: u64) -> Health {
        match self.state.load(Ordering::Acquire) {
            HEALTHY => Health::Healthy,
            EJECTED | EJECTING => Health::Ejected {
                probe_in: Duration::from_nanos(
                    self.until.load(Ordering::Acquire).saturating_sub(now),
                ),
            },
            _ => Health::Probing,
        }
    }
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> EndpointState {
        EndpointState::new("http://127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn zero_consecutive_failures_turns_ejection_off() {
        let p = HealthPolicy::new().consecutive_failures(0);
        let s = state();
        for _ in 0..100 {
            s.record(Outcome::Failure, false, &p, || 0);
        }
        assert_eq!(s.health(0), Health::Healthy);
        assert_eq!(s.avail(&p, &mut || 0), Avail::Healthy);
    }

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
    fn the_threshold_ejects_and_only_one_probe_is_claimed() {
        let p = HealthPolicy::new().consecutive_failures(2);
        let s = state();
        let sec = 1_000_000_000;
        s.record(Outcome::Failure, false, &p, || 0);
        assert_eq!(s.avail(&p, &mut || 0), Avail::Healthy);
        s.record(Outcome::Failure, false, &p, || 0);
        assert_eq!(s.avail(&p, &mut || sec), Avail::No, "ejected for 10 s");
        assert_eq!(s.avail(&p, &mut || 10 * sec), Avail::ProbeDue);
        assert!(s.claim_probe());
        assert!(!s.claim_probe(), "a second probe");
        // The probe fails: ejected again, for twice as long.
        s.record(Outcome::Failure, true, &p, || 10 * sec);
        assert_eq!(
            s.health(10 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(20)
            }
        );
        assert!(s.claim_probe(), "claimable: avail() is the time gate");
        s.record(Outcome::Neutral, true, &p, || 30 * sec);
        assert!(s.claim_probe(), "a cancelled probe frees the slot");
        s.record(Outcome::Success, true, &p, || 30 * sec);
        assert_eq!(s.health(30 * sec), Health::Healthy);
    }

    #[test]
    fn a_suspect_endpoint_takes_no_more_requests_than_failures_left() {
        let p = HealthPolicy::new().consecutive_failures(3);
        let s = state();
        s.in_flight.store(10, Ordering::Relaxed);
        assert_eq!(
            s.avail(&p, &mut || 0),
            Avail::Healthy,
            "no failure: busy is fine"
        );
        s.record(Outcome::Failure, false, &p, || 0);
        assert_eq!(s.avail(&p, &mut || 0), Avail::Suspect);
        s.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(s.avail(&p, &mut || 0), Avail::Healthy);
        s.record(Outcome::Success, false, &p, || 0);
        s.in_flight.store(10, Ordering::Relaxed);
        assert_eq!(
            s.avail(&p, &mut || 0),
            Avail::Healthy,
            "a success clears it"
        );
    }

    #[test]
    fn an_endpoint_healthy_for_max_ejection_starts_again_from_base() {
        let p = HealthPolicy::new()
            .consecutive_failures(1)
            .base_ejection(Duration::from_secs(1))
            .max_ejection(Duration::from_secs(8));
        let s = state();
        let sec = 1_000_000_000u64;
        s.record(Outcome::Failure, false, &p, || 0);
        assert!(s.claim_probe());
        s.record(Outcome::Failure, true, &p, || sec); // 2nd in a row: 2 s
        assert!(s.claim_probe());
        s.record(Outcome::Success, true, &p, || 3 * sec);
        s.record(Outcome::Failure, false, &p, || 4 * sec); // soon after: 3rd, 4 s
        assert_eq!(
            s.health(4 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(4)
            }
        );
        assert!(s.claim_probe());
        s.record(Outcome::Success, true, &p, || 8 * sec);
        s.record(Outcome::Failure, false, &p, || 20 * sec); // 12 s healthy > 8 s: back to 1 s
        assert_eq!(
            s.health(20 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(1)
            }
        );
    }
}
