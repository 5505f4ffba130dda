//! What active health checks decide: an endpoint that fails enough checks in a
//! row is down until it passes enough in a row; an ejected endpoint's probe, once
//! its ejection is over, is its next check (see
//! [`EndpointSet::health_checks`](crate::upstreams::EndpointSet::health_checks)).

use super::{DOWN, EJECTED, EJECTING, EndpointState, HEALTHY, PROBING, Peers, nanos};
use crate::upstreams::HealthPolicy;
use crate::upstreams::report::{self, Ejection, Restoration};
use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One check's outcome, with what the checker has counted.
pub(in crate::upstreams) struct Checked<'a> {
    /// Whether it passed.
    pub(in crate::upstreams) passed: bool,
    /// Checks in a row that ended the same way, this one included.
    pub(in crate::upstreams) streak: u32,
    /// Passes in a row that restore an endpoint that is down.
    pub(in crate::upstreams) healthy_threshold: u32,
    /// Failures in a row that take an endpoint down.
    pub(in crate::upstreams) unhealthy_threshold: u32,
    /// About when the next check goes, for a down endpoint's `Retry-After`.
    pub(in crate::upstreams) next_in: Duration,
    /// What the check found, for the event.
    pub(in crate::upstreams) found: &'a dyn Display,
}

impl EndpointState {
    /// Applies a check's outcome at `now`:
    ///
    /// - healthy, or ejected: `unhealthy_threshold` failures in a row take it down;
    /// - ejected, its ejection over: the check is its probe; passing restores it,
    ///   failing ejects it again (for longer), as a request's probe would;
    /// - down: `healthy_threshold` passes in a row restore it.
    pub(in crate::upstreams) fn checked(
        &self,
        check: &Checked<'_>,
        policy: &HealthPolicy,
        now: u64,
        peers: &dyn Peers,
    ) {
        let state = self.state.load(Ordering::Acquire);
        match state {
            HEALTHY | EJECTED if !check.passed && check.streak >= check.unhealthy_threshold => {
                self.take_down(state, check, now);
            }
            EJECTED if now >= self.until.load(Ordering::Acquire) => {
                // The check is the probe; a request holding it (one claimed before
                // the checker started) keeps it.
                if self
                    .state
                    .compare_exchange(EJECTED, PROBING, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    return;
                }
                if check.passed {
                    self.restore(policy, now, Restoration::Probe);
                } else {
                    self.eject(policy, now, true, Ejection::ProbeFailed, peers);
                }
            }
            DOWN if check.passed && check.streak >= check.healthy_threshold => {
                self.restore(policy, now, Restoration::Checks(check.streak));
            }
            DOWN => {
                let next = now.saturating_add(nanos(check.next_in));
                self.until.store(next, Ordering::Release);
            }
            _ => {}
        }
    }

    /// When its ejection ends, in the set's clock, while it is ejected.
    pub(in crate::upstreams) fn ejected_until(&self) -> Option<u64> {
        (self.state.load(Ordering::Acquire) == EJECTED).then(|| self.until.load(Ordering::Acquire))
    }

    /// Down, from `from`: no request goes to it, and only the checker brings it
    /// back. Not a full ejection: it does not count in the ejection share.
    fn take_down(&self, from: u8, check: &Checked<'_>, now: u64) {
        if self
            .state
            .compare_exchange(from, EJECTING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.full.store(false, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        let next = now.saturating_add(nanos(check.next_in));
        self.until.store(next, Ordering::Release);
        self.state.store(DOWN, Ordering::Release);
        report::down(&self.endpoint, check.streak, check.found);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Health;
    use super::super::tests::Room;
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn check(passed: bool, streak: u32) -> Checked<'static> {
        Checked {
            passed,
            streak,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            next_in: Duration::from_secs(5),
            found: &"test",
        }
    }

    fn state() -> EndpointState {
        EndpointState::new("http://127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn failing_the_threshold_of_checks_in_a_row_takes_it_down_and_passing_enough_restores_it() {
        let p = HealthPolicy::new().no_jitter();
        let s = state();
        s.checked(&check(false, 1), &p, 0, &Room);
        s.checked(&check(false, 2), &p, SEC, &Room);
        assert_eq!(s.health(SEC), Health::Healthy, "two failures are not three");
        s.checked(&check(false, 3), &p, 2 * SEC, &Room);
        assert_eq!(
            s.health(2 * SEC),
            Health::Down {
                check_in: Duration::from_secs(5)
            }
        );
        assert!(!s.fully_out(), "down does not count in the ejection share");
        s.checked(&check(true, 1), &p, 7 * SEC, &Room);
        assert!(
            matches!(s.health(7 * SEC), Health::Down { .. }),
            "one pass is not two"
        );
        s.checked(&check(true, 2), &p, 12 * SEC, &Room);
        assert_eq!(s.health(12 * SEC), Health::Healthy);
    }

    #[test]
    fn an_ejected_endpoints_first_check_after_its_ejection_is_its_probe() {
        let p = HealthPolicy::new().no_jitter().consecutive_failures(1);
        let s = state();
        s.record(super::super::Verdict::Failure, false, &p, || 0, &Room);
        assert!(matches!(s.health(0), Health::Ejected { .. }));
        // During the ejection, a passing check changes nothing.
        s.checked(&check(true, 1), &p, 5 * SEC, &Room);
        assert!(matches!(s.health(5 * SEC), Health::Ejected { .. }));
        // After it, a failing one ejects it again, for twice as long.
        s.checked(&check(false, 1), &p, 10 * SEC, &Room);
        assert_eq!(
            s.health(10 * SEC),
            Health::Ejected {
                probe_in: Duration::from_secs(20)
            }
        );
        // And a passing one restores it.
        s.checked(&check(true, 1), &p, 30 * SEC, &Room);
        assert_eq!(s.health(30 * SEC), Health::Healthy);
    }
}
