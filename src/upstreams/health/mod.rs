//! An endpoint's state machine (healthy, ejected, probing, down), by the
//! [`HealthPolicy`] of `policy.rs`: passive health here, what active health
//! checks decide in `checked.rs`.

#[cfg_attr(not(feature = "health-checks"), allow(dead_code))]
mod checked;
mod rate;
mod slow_start;

#[cfg_attr(not(feature = "health-checks"), allow(unused_imports))]
pub(super) use self::checked::Checked;
pub(super) use self::rate::Peers;

use super::report::{self, Ejection, Restoration};
use super::{Endpoint, HealthPolicy};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

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
    /// Failing its active health checks
    /// ([`EndpointSet::health_checks`](super::EndpointSet::health_checks)): no
    /// request goes to it until enough checks in a row pass.
    Down {
        /// Time until its next check, about.
        check_in: Duration,
    },
}

const HEALTHY: u8 = 0;
const EJECTED: u8 = 1;
const PROBING: u8 = 2;
/// Being ejected: its `until` is not written yet, so nothing may probe it.
const EJECTING: u8 = 3;
/// Failing its active health checks: only the checker restores it.
const DOWN: u8 = 4;

/// What happened to an attempt, for its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
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
    /// What an error names as its next hop ([`Endpoint::hop`]).
    pub(super) hop: http::uri::Authority,
    /// The same, inline, for the attempts' metrics: built once, not per attempt.
    pub(super) next_hop: Option<crate::error::NextHop>,
    pub(super) in_flight: AtomicU32,
    failures: AtomicU32,
    state: AtomicU8,
    /// While ejected: when the probe may go; while down: about when the next
    /// check goes.
    until: AtomicU64,
    /// Ejections in a row.
    ejections: AtomicU32,
    /// When it was last restored.
    restored_at: AtomicU64,
    /// Whether its ejection is a full one, within the policy's share of the set
    /// ([`HealthPolicy::max_ejection_percent`]); a short one (beyond the share) is
    /// not counted in the share.
    full: AtomicBool,
    /// The failure-rate window under way: outcomes in the low 32 bits, failures
    /// in the high 32.
    window: AtomicU64,
    /// The last full window's failure rate, in thousandths, plus one (`0`: none
    /// yet), for its peers to compare themselves with.
    rate: AtomicU32,
    /// While it ramps up after a restoration or joining the set (slow start):
    /// when that began, in the set's clock, plus one; `0` when it takes a full share.
    warm_since: AtomicU64,
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
            key: super::key_of(endpoint.hop().as_str()),
            hop: endpoint.hop(),
            next_hop: crate::error::NextHop::of_authority(&endpoint.hop()),
            endpoint,
            in_flight: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            state: AtomicU8::new(HEALTHY),
            until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            restored_at: AtomicU64::new(0),
            full: AtomicBool::new(false),
            window: AtomicU64::new(0),
            rate: AtomicU32::new(0),
            warm_since: AtomicU64::new(0),
        }
    }

    /// Whether a request may go here. A suspect endpoint (failing, not yet
    /// ejected) takes no more requests at once than the failures it has left
    /// before ejection, so that no more than the threshold fail on it before it is
    /// ejected, unless no other endpoint may take the request: a suspect is not
    /// ejected, and failing a request it might answer helps no one. `now` is read
    /// only for an ejected endpoint. While active health checks run (`checked`),
    /// an ejected endpoint's probe is the checker's: no request is one.
    pub(super) fn avail(
        &self,
        policy: &HealthPolicy,
        checked: &AtomicU32,
        now: &mut dyn FnMut() -> u64,
    ) -> Avail {
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
            EJECTED
                if checked.load(Ordering::Relaxed) == 0
                    && now() >= self.until.load(Ordering::Acquire) =>
            {
                Avail::ProbeDue
            }
            _ => Avail::No,
        }
    }

    /// Claims the probe of an endpoint whose ejection is over; only one request wins.
    pub(super) fn claim_probe(&self) -> bool {
        let claimed = self
            .state
            .compare_exchange(EJECTED, PROBING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            report::probing(&self.endpoint);
        }
        claimed
    }

    /// Records an attempt's outcome; `probe` says whether it was the probe. The
    /// clock is read only for a transition: a plain success reads nothing.
    pub(super) fn record(
        &self,
        outcome: Verdict,
        probe: bool,
        policy: &HealthPolicy,
        now: impl FnOnce() -> u64,
        peers: &dyn Peers,
    ) {
        if policy.rate_window != 0 && !probe && outcome != Verdict::Neutral {
            if let Some(rate) = self.count_in_window(outcome, policy.rate_window) {
                if let Some(peers_rate) = self.is_outlier(rate, policy, peers) {
                    let why = Ejection::FailureRate {
                        rate,
                        peers: peers_rate,
                    };
                    self.eject(policy, now(), false, why, peers);
                    return;
                }
            }
        }
        match (outcome, probe) {
            (Verdict::Success, false) => {
                // Written only when it changes: a healthy endpoint's line stays shared.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            (Verdict::Success, true) => self.restore(policy, now(), Restoration::Probe),
            (Verdict::Failure, false) if policy.failures == 0 => {}
            (Verdict::Failure, false) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= policy.failures {
                    let why = Ejection::Consecutive(failures);
                    self.eject(policy, now(), false, why, peers);
                }
            }
            (Verdict::Failure, true) => {
                self.eject(policy, now(), true, Ejection::ProbeFailed, peers)
            }
            (Verdict::Neutral, false) => {}
            (Verdict::Neutral, true) => self.release_probe(),
        }
    }

    /// Takes requests again, from a state only its caller may leave (the probe it
    /// holds, or down, which only the checker leaves).
    fn restore(&self, policy: &HealthPolicy, now: u64, by: Restoration) {
        self.failures.store(0, Ordering::Relaxed);
        self.restored_at.store(now, Ordering::Relaxed);
        self.full.store(false, Ordering::Relaxed);
        // Restored on one success: the next full window judges it again.
        self.window.store(0, Ordering::Relaxed);
        if !policy.slow_start.is_zero() {
            self.start_warming(now);
        }
        self.state.store(HEALTHY, Ordering::Release);
        report::restored(&self.endpoint, by);
    }

    /// A probe that ended without saying anything (cancelled, timed out by a
    /// deadline above, or a failure that does not count) frees its slot: the next
    /// request may probe at once.
    pub(super) fn release_probe(&self) {
        let _ = self
            .state
            .compare_exchange(PROBING, EJECTED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Ejects the endpoint. Within the policy's share of the set, a full ejection:
    /// `base_ejection`, doubling with each one in a row. Beyond it (most of the set
    /// is failing at once: the fleet, not this endpoint, is the likely cause), a
    /// short one, `short_ejection`, so that the set comes back within about that
    /// long of the cause ending, while a set that is all out still fails fast.
    /// Either is jittered, so that endpoints ejected together do not all probe at
    /// the same instant.
    fn eject(
        &self,
        policy: &HealthPolicy,
        now: u64,
        probe: bool,
        why: Ejection,
        peers: &dyn Peers,
    ) {
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
        let full = peers.may_eject_fully(self);
        let (n, time) = if full {
            let healthy_since = now.saturating_sub(self.restored_at.load(Ordering::Relaxed));
            if !probe && healthy_since >= nanos(policy.max_ejection) {
                self.ejections.store(0, Ordering::Relaxed);
            }
            let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
            (n, policy.ejection(n))
        } else {
            (
                self.ejections.load(Ordering::Relaxed),
                policy.short_ejection,
            )
        };
        let time = policy.jittered(time, crate::random::next_u64());
        self.full.store(full, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.until
            .store(now.saturating_add(nanos(time)), Ordering::Release);
        self.state.store(EJECTED, Ordering::Release);
        report::ejected(&self.endpoint, why, n, time, full);
        peers.ejected();
    }

    /// Whether it is out on a full ejection (counted in the share).
    pub(super) fn fully_out(&self) -> bool {
        self.state.load(Ordering::Acquire) != HEALTHY && self.full.load(Ordering::Relaxed)
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
            DOWN => Health::Down {
                check_in: Duration::from_nanos(
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

    /// Peers that always leave room for a full ejection and have no rate.
    pub(super) struct Room;

    impl Peers for Room {
        fn may_eject_fully(&self, _: &EndpointState) -> bool {
            true
        }
        fn peer_rate(&self, _: &EndpointState) -> Option<u32> {
            None
        }
        fn ejected(&self) {}
    }

    /// No checker runs.
    static UNCHECKED: AtomicU32 = AtomicU32::new(0);

    fn state() -> EndpointState {
        EndpointState::new("http://127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn zero_consecutive_failures_turns_ejection_off() {
        let p = HealthPolicy::new().no_jitter().consecutive_failures(0);
        let s = state();
        for _ in 0..100 {
            s.record(Verdict::Failure, false, &p, || 0, &Room);
        }
        assert_eq!(s.health(0), Health::Healthy);
        assert_eq!(s.avail(&p, &UNCHECKED, &mut || 0), Avail::Healthy);
    }

    #[test]
    fn the_threshold_ejects_and_only_one_probe_is_claimed() {
        let p = HealthPolicy::new().no_jitter().consecutive_failures(2);
        let s = state();
        let sec = 1_000_000_000;
        s.record(Verdict::Failure, false, &p, || 0, &Room);
        assert_eq!(s.avail(&p, &UNCHECKED, &mut || 0), Avail::Healthy);
        s.record(Verdict::Failure, false, &p, || 0, &Room);
        assert_eq!(
            s.avail(&p, &UNCHECKED, &mut || sec),
            Avail::No,
            "ejected for 10 s"
        );
        assert_eq!(s.avail(&p, &UNCHECKED, &mut || 10 * sec), Avail::ProbeDue);
        assert!(s.claim_probe());
        assert!(!s.claim_probe(), "a second probe");
        // The probe fails: ejected again, for twice as long.
        s.record(Verdict::Failure, true, &p, || 10 * sec, &Room);
        assert_eq!(
            s.health(10 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(20)
            }
        );
        assert!(s.claim_probe(), "claimable: avail() is the time gate");
        s.record(Verdict::Neutral, true, &p, || 30 * sec, &Room);
        assert!(s.claim_probe(), "a cancelled probe frees the slot");
        s.record(Verdict::Success, true, &p, || 30 * sec, &Room);
        assert_eq!(s.health(30 * sec), Health::Healthy);
    }

    #[test]
    fn a_suspect_endpoint_takes_no_more_requests_than_failures_left() {
        let p = HealthPolicy::new().no_jitter().consecutive_failures(3);
        let s = state();
        s.in_flight.store(10, Ordering::Relaxed);
        assert_eq!(
            s.avail(&p, &UNCHECKED, &mut || 0),
            Avail::Healthy,
            "no failure: busy is fine"
        );
        s.record(Verdict::Failure, false, &p, || 0, &Room);
        assert_eq!(s.avail(&p, &UNCHECKED, &mut || 0), Avail::Suspect);
        s.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(s.avail(&p, &UNCHECKED, &mut || 0), Avail::Healthy);
        s.record(Verdict::Success, false, &p, || 0, &Room);
        s.in_flight.store(10, Ordering::Relaxed);
        assert_eq!(
            s.avail(&p, &UNCHECKED, &mut || 0),
            Avail::Healthy,
            "a success clears it"
        );
    }

    #[test]
    fn an_endpoint_healthy_for_max_ejection_starts_again_from_base() {
        let p = HealthPolicy::new()
            .no_jitter()
            .consecutive_failures(1)
            .base_ejection(Duration::from_secs(1))
            .max_ejection(Duration::from_secs(8));
        let s = state();
        let sec = 1_000_000_000u64;
        s.record(Verdict::Failure, false, &p, || 0, &Room);
        assert!(s.claim_probe());
        s.record(Verdict::Failure, true, &p, || sec, &Room); // 2nd in a row: 2 s
        assert!(s.claim_probe());
        s.record(Verdict::Success, true, &p, || 3 * sec, &Room);
        s.record(Verdict::Failure, false, &p, || 4 * sec, &Room); // soon after: 3rd, 4 s
        assert_eq!(
            s.health(4 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(4)
            }
        );
        assert!(s.claim_probe());
        s.record(Verdict::Success, true, &p, || 8 * sec, &Room);
        s.record(Verdict::Failure, false, &p, || 20 * sec, &Room); // 12 s healthy > 8 s: back to 1 s
        assert_eq!(
            s.health(20 * sec),
            Health::Ejected {
                probe_in: Duration::from_secs(1)
            }
        );
    }
}
