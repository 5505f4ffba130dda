//! The pick: which endpoint of an [`EndpointSet`] takes an attempt, and the
//! [`Pick`] that holds it (in flight, the probe slot) until the attempt ends.

use super::HealthPolicy;
use super::health::{Avail, EndpointState, Health, Verdict};
use super::set::{Shared, Unresolved};
use super::{Endpoint, EndpointSet, Tried};
use crate::error::{ErrorKind, GatewayError};
use crate::timeout::HeadDeadline;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An endpoint chosen for one attempt: it counts as in flight, and holds the probe
/// slot if it is the probe, until it is dropped. A dropped pick that recorded no
/// outcome (a cancelled attempt) frees its probe slot; dropped at or after its
/// [`HeadDeadline`], it was a timed-out attempt, and records that.
pub(crate) struct Pick {
    state: Arc<EndpointState>,
    shared: Arc<Shared>,
    /// When a `Timeout` above ends the wait for the head, in the set's clock
    /// ([`Shared::now`]); [`NO_HEAD_DEADLINE`] without one.
    head_deadline: u64,
    probe: bool,
    recorded: bool,
}

/// A [`Pick`] no `Timeout` above watches.
const NO_HEAD_DEADLINE: u64 = u64::MAX;

/// No endpoint may take the request.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    /// Time until the next probe may go, when one is scheduled.
    pub(crate) retry_after: Option<Duration>,
    /// The set has no endpoint at all.
    pub(crate) empty: bool,
    /// Why, when the set follows a name.
    pub(crate) unresolved: Option<Arc<Unresolved>>,
}

impl EndpointSet {
    /// Picks an endpoint for one attempt: power of two choices on requests in
    /// flight among the endpoints that may take it, preferring one `tried` does not
    /// hold, and a due probe over a healthy endpoint (so that ejected endpoints come
    /// back). Expected O(1); a full scan only when most endpoints are out.
    pub(crate) fn pick(&self, tried: Option<&Tried>, random: u64) -> Result<Pick, Unavailable> {
        let members = self.shared.members.load();
        let list = &members.list;
        let policy = &self.shared.policy;
        let checked = &self.shared.checkers;
        let mut clock = None;
        let mut now = || *clock.get_or_insert_with(|| self.shared.now());
        let fresh = |s: &EndpointState| tried.is_none_or(|t| !t.contains(s.key));
        let n = list.len();
        if n == 0 {
            return Err(Unavailable {
                retry_after: None,
                empty: true,
                unresolved: self.shared.unresolved.load_full(),
            });
        }
        // Sampling: two distinct endpoints per round, three rounds.
        let mut r = random;
        for _ in 0..if n == 1 { 1 } else { 3 } {
            let a = (r as u32 as usize) % n;
            let b = if n == 1 {
                a
            } else {
                let b = ((r >> 32) as u32 as usize) % (n - 1);
                if b >= a { b + 1 } else { b }
            };
            r = r.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (sa, sb) = (&list[a], &list[b]);
            // A healthy endpoint ramping up (slow start) takes its share of picks.
            let warm = |s: &EndpointState, v: Avail, now: &mut dyn FnMut() -> u64, bits: u64| {
                if v == Avail::Healthy && !s.takes_share(policy, now, bits) {
                    Avail::No
                } else {
                    v
                }
            };
            let va = if fresh(sa) {
                let v = sa.avail(policy, checked, &mut now);
                warm(sa, v, &mut now, r >> 11)
            } else {
                Avail::No
            };
            let vb = if a != b && fresh(sb) {
                let v = sb.avail(policy, checked, &mut now);
                warm(sb, v, &mut now, r >> 23)
            } else {
                Avail::No
            };
            for (s, v) in [(sa, va), (sb, vb)] {
                if v == Avail::ProbeDue && s.claim_probe() {
                    return Ok(self.take(s, true));
                }
            }
            let chosen = match (va, vb) {
                (Avail::Healthy, Avail::Healthy) => {
                    let (la, lb) = (
                        sa.in_flight.load(Ordering::Relaxed),
                        sb.in_flight.load(Ordering::Relaxed),
                    );
                    Some(if lb < la { sb } else { sa })
                }
                (Avail::Healthy, _) => Some(sa),
                (_, Avail::Healthy) => Some(sb),
                _ => None,
            };
            if let Some(s) = chosen {
                return Ok(self.take(s, false));
            }
        }
        // Most endpoints are out, tried, or busy failing: scan from a random start,
        // first for one not tried, then for any, then for a suspect as a last
        // resort (one not ejected may still answer).
        let start = (random >> 7) as usize % n;
        let mut suspect = None;
        for allow_tried in [false, true] {
            if allow_tried && tried.is_none() {
                break;
            }
            for i in 0..n {
                let s = &list[(start + i) % n];
                if !allow_tried && !fresh(s) {
                    continue;
                }
                match s.avail(policy, checked, &mut now) {
                    Avail::Healthy => return Ok(self.take(s, false)),
                    Avail::ProbeDue if s.claim_probe() => return Ok(self.take(s, true)),
                    Avail::Suspect => {
                        suspect.get_or_insert(s);
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = suspect {
            return Ok(self.take(s, false));
        }
        let now = now();
        let next_probe = list
            .iter()
            .filter_map(|s| match s.health(now) {
                Health::Ejected { probe_in } => Some(probe_in),
                Health::Down { check_in } => Some(check_in),
                _ => None,
            })
            .min();
        Err(Unavailable {
            retry_after: next_probe,
            empty: false,
            unresolved: None,
        })
    }

    fn take(&self, state: &Arc<EndpointState>, probe: bool) -> Pick {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Pick {
            state: state.clone(),
            shared: self.shared.clone(),
            head_deadline: NO_HEAD_DEADLINE,
            probe,
            recorded: false,
        }
    }
}

impl Pick {
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.state.endpoint
    }

    pub(crate) fn key(&self) -> u64 {
        self.state.key
    }

    /// What an error of this attempt names as its next hop.
    pub(crate) fn hop(&self) -> &http::uri::Authority {
        &self.state.hop
    }

    /// The same, inline (for the attempt's metrics).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) fn next_hop(&self) -> Option<&crate::error::NextHop> {
        self.state.next_hop.as_ref()
    }

    pub(super) fn policy(&self) -> &HealthPolicy {
        &self.shared.policy
    }

    /// The attempt is dropped at `head.at()` by a `Timeout` above, if it has not
    /// ended by then: dropped unanswered then or later, it timed out.
    pub(super) fn watch(&mut self, head: HeadDeadline) {
        self.head_deadline = self.shared.since_epoch(head.at());
    }

    /// Records the attempt's outcome for the endpoint's health.
    pub(super) fn record(&mut self, outcome: Verdict) {
        self.recorded = true;
        let shared = &self.shared;
        self.state.record(
            outcome,
            self.probe,
            &shared.policy,
            || shared.now(),
            &**shared,
        );
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.recorded
            && self.head_deadline != NO_HEAD_DEADLINE
            && self.shared.now() >= self.head_deadline
        {
            // The error the `Timeout` raised is classified `ResponseHeaderTimeout`.
            let timed_out = GatewayError::new(ErrorKind::ResponseHeaderTimeout);
            let counts = self.shared.policy.counts_error(&timed_out);
            self.record(if counts {
                Verdict::Failure
            } else {
                Verdict::Neutral
            });
        }
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe && !self.recorded {
            self.state.release_probe();
        }
    }
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("endpoint", &self.state.endpoint)
            .field("probe", &self.probe)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstreams::key_of;

    fn set(urls: &[&str], failures: u32) -> EndpointSet {
        EndpointSet::from_urls(urls)
            .unwrap()
            .health_policy(HealthPolicy::new().consecutive_failures(failures))
    }

    #[test]
    fn a_busy_lone_endpoint_with_one_failure_still_takes_requests() {
        let set = set(&["http://10.0.0.1:1"], 5);
        let mut busy: Vec<Pick> = (0..10).map(|i| set.pick(None, i).unwrap()).collect();
        busy.pop().unwrap().record(Verdict::Failure);
        // Suspect (1 failure, 9 in flight): a last resort, but not refused.
        let pick = set.pick(None, 99).expect("a suspect is not ejected");
        assert_eq!(pick.endpoint().authority(), "10.0.0.1:1");
    }

    #[test]
    fn a_suspect_is_passed_over_while_a_healthy_endpoint_remains() {
        let set = set(&["http://10.0.0.1:1", "http://10.0.0.2:1"], 5);
        // Ten requests on the first, steered there by having "tried" the second.
        let mut not_second = Tried::default();
        not_second.push(key_of("10.0.0.2:1"));
        let mut on_first: Vec<Pick> = (0..10)
            .map(|i| set.pick(Some(&not_second), i).unwrap())
            .collect();
        assert!(
            on_first
                .iter()
                .all(|p| p.endpoint().authority() == "10.0.0.1:1")
        );
        on_first.pop().unwrap().record(Verdict::Failure);
        for i in 0..50 {
            let pick = set.pick(None, i * 7919).unwrap();
            assert_eq!(pick.endpoint().authority(), "10.0.0.2:1");
        }
    }

    /// Threads racing picks and outcomes on one endpoint that keeps being ejected
    /// (for no time: its probe is always due) never have two probes out at once.
    #[test]
    fn racing_threads_never_have_two_probes_out() {
        use std::sync::atomic::AtomicUsize;
        let set = EndpointSet::from_urls(["http://10.0.0.1:1"])
            .unwrap()
            .health_policy(
                HealthPolicy::new()
                    .consecutive_failures(1)
                    .base_ejection(Duration::ZERO)
                    .max_ejection(Duration::ZERO),
            );
        let probes_out = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (set, probes_out, most) = (set.clone(), probes_out.clone(), most.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let Ok(mut pick) = set.pick(None, i.wrapping_mul(t + 1)) else {
                            continue;
                        };
                        if pick.probe {
                            let now = probes_out.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                        }
                        let outcome = match i % 3 {
                            0 => Verdict::Success,
                            1 => Verdict::Failure,
                            _ => Verdict::Neutral,
                        };
                        let was_probe = pick.probe;
                        if was_probe {
                            // Leave the count before the outcome frees the slot.
                            probes_out.fetch_sub(1, Ordering::SeqCst);
                        }
                        pick.record(outcome);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "probes out at once");
        assert_eq!(set.in_flight(), 0);
    }

    /// Dropped unanswered before the wait for its head ends, an attempt was
    /// cancelled and counts for nothing; at or after it, it timed out and counts
    /// (here: one failure ejects).
    #[tokio::test(start_paused = true)]
    async fn a_pick_dropped_at_its_head_deadline_timed_out_and_one_dropped_before_was_not() {
        let set = set(&["http://10.0.0.1:1"], 1);
        let at = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut cancelled = set.pick(None, 1).unwrap();
        cancelled.watch(HeadDeadline::new(at));
        tokio::time::advance(Duration::from_millis(999)).await;
        drop(cancelled);
        assert_eq!(set.health()[0].1, Health::Healthy);

        let mut timed_out = set.pick(None, 2).unwrap();
        timed_out.watch(HeadDeadline::new(at));
        tokio::time::advance(Duration::from_millis(1)).await;
        drop(timed_out);
        assert!(matches!(set.health()[0].1, Health::Ejected { .. }));
        assert_eq!(set.in_flight(), 0);
    }

    /// A verdict recorded before the drop is the only one.
    #[tokio::test(start_paused = true)]
    async fn a_pick_that_recorded_its_outcome_records_nothing_when_dropped_late() {
        let set = set(&["http://10.0.0.1:1"], 1);
        let mut pick = set.pick(None, 1).unwrap();
        pick.watch(HeadDeadline::new(tokio::time::Instant::now()));
        pick.record(Verdict::Success);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(pick);
        assert_eq!(set.health()[0].1, Health::Healthy);
    }

    #[test]
    fn a_retry_goes_to_an_endpoint_not_tried_and_back_only_when_none_is_left() {
        let set = set(
            &[
                "http://10.0.0.1:1",
                "http://10.0.0.2:1",
                "http://10.0.0.3:1",
            ],
            5,
        );
        let mut tried = Tried::default();
        for i in 0..3 {
            let pick = set.pick(Some(&tried), i * 31).unwrap();
            assert!(!tried.contains(pick.key()), "attempt {i} went back");
            tried.push(pick.key());
        }
        assert!(
            set.pick(Some(&tried), 5).is_ok(),
            "all tried: any healthy one"
        );
    }
}
