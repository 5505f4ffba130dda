//! The checker: one future per set, which keeps a schedule of every endpoint's
//! next check, runs the checks due (one at a time per endpoint, all endpoints
//! at once), and applies their outcomes to the endpoints' states.

use super::HealthCheck;
use super::probe::Found;
use crate::upstreams::Endpoint;
use crate::upstreams::health::{Checked, EndpointState};
use crate::upstreams::set::{Members, Shared};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// One endpoint's check under way: its key, and what the check found.
pub(super) type Check = Pin<Box<dyn Future<Output = (u64, Found)> + Send>>;

/// What the checker knows of one endpoint.
struct Tracked {
    state: Arc<EndpointState>,
    /// When its next scheduled check goes.
    next: Instant,
    /// Its check is under way.
    busy: bool,
    /// Checks in a row that passed (positive) or failed (negative).
    streak: i64,
}

/// Counts the checker among the set's while it lives, so that no request probes
/// an ejected endpoint meanwhile.
struct Running(Weak<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.checkers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Checks `set`'s endpoints by `check`: `launch` makes the check of one endpoint
/// (its key, the endpoint).
pub(super) async fn run(
    set: Arc<Shared>,
    check: Arc<HealthCheck>,
    mut launch: impl FnMut(u64, Endpoint) -> Check,
) {
    set.checkers.fetch_add(1, Ordering::Relaxed);
    let _running = Running(Arc::downgrade(&set));
    let mut checker = Checker {
        tracked: HashMap::new(),
        schedule: BinaryHeap::new(),
        members: None,
        running: Vec::new(),
        scan: true,
    };
    loop {
        // Every other handle of the set is gone (the checker's own, and no pick
        // in flight): nothing is left to check for.
        if Arc::strong_count(&set) == 1 {
            return;
        }
        let now = Instant::now();
        checker.follow(&set, &check, now);
        if std::mem::take(&mut checker.scan) {
            checker.schedule_probes(&set, now);
        }
        checker.start_due(&check, &mut launch, now);
        let wake = checker.schedule.peek().map(|Reverse((at, ..))| *at);
        let ejected = set.ejections.notified();
        let (done, ejected) = Wait {
            running: &mut checker.running,
            sleep: wake.map(|at| Box::pin(tokio::time::sleep_until(at))),
            ejected: Box::pin(ejected),
        }
        .await;
        checker.scan = ejected;
        for (key, found) in done {
            checker.apply(&set, &check, key, &found);
        }
    }
}

/// Waits for checks to end, the next one to fall due, or an endpoint to be
/// ejected: the checks that ended, and whether one was ejected.
struct Wait<'a, N> {
    running: &'a mut Vec<Check>,
    sleep: Option<Pin<Box<Sleep>>>,
    ejected: Pin<Box<N>>,
}

impl<N: Future<Output = ()>> Future for Wait<'_, N> {
    type Output = (Vec<(u64, Found)>, bool);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut done = Vec::new();
        let mut i = 0;
        while i < this.running.len() {
            if let Poll::Ready(out) = this.running[i].as_mut().poll(cx) {
                done.push(out);
                drop(this.running.swap_remove(i));
            } else {
                i += 1;
            }
        }
        let ejected = this.ejected.as_mut().poll(cx).is_ready();
        let due = this
            .sleep
            .as_mut()
            .is_some_and(|s| s.as_mut().poll(cx).is_ready());
        if done.is_empty() && !ejected && !due {
            return Poll::Pending;
        }
        Poll::Ready((done, ejected))
    }
}

struct Checker {
    tracked: HashMap<u64, Tracked>,
    /// Checks due: when, which endpoint, and whether it is an ejected endpoint's
    /// probe (else its scheduled check, valid while it is still `next`).
    schedule: BinaryHeap<Reverse<(Instant, u64, bool)>>,
    /// The membership followed, to see when it changes.
    members: Option<Arc<Members>>,
    running: Vec<Check>,
    /// An endpoint was ejected since the last scan for ejected endpoints.
    scan: bool,
}

impl Checker {
    /// Follows the membership: a new endpoint's first check goes at a random point
    /// of its first interval; a gone one is forgotten (its check under way ends
    /// unheeded).
    fn follow(&mut self, shared: &Shared, check: &HealthCheck, now: Instant) {
        let members = shared.members.load_full();
        if self
            .members
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &members))
        {
            return;
        }
        let mut seen = HashMap::with_capacity(members.list.len());
        for state in &members.list {
            let t = self.tracked.remove(&state.key).unwrap_or_else(|| {
                let next = now + check.first_wait(crate::random::next_u64());
                self.schedule.push(Reverse((next, state.key, false)));
                Tracked {
                    state: state.clone(),
                    next,
                    busy: false,
                    streak: 0,
                }
            });
            seen.insert(state.key, t);
        }
        self.tracked = seen;
        self.members = Some(members);
    }

    /// Schedules a probe for when each ejected endpoint's ejection ends. A scan of
    /// the members, on a wake-up by an ejection; a probe scheduled twice runs once
    /// (a check under way is never doubled, and a restored endpoint ignores it).
    fn schedule_probes(&mut self, shared: &Shared, now: Instant) {
        let at_now = shared.since_epoch(now);
        for t in self.tracked.values() {
            if let Some(until) = t.state.ejected_until() {
                let at = now + Duration::from_nanos(until.saturating_sub(at_now));
                self.schedule.push(Reverse((at, t.state.key, true)));
            }
        }
    }

    /// Starts every check due at `now`: an endpoint's scheduled check (and its
    /// next one scheduled), or an ejected endpoint's probe; never a second check
    /// of an endpoint whose check is under way.
    fn start_due(
        &mut self,
        check: &HealthCheck,
        launch: &mut impl FnMut(u64, Endpoint) -> Check,
        now: Instant,
    ) {
        while let Some(&Reverse((at, key, is_probe))) = self.schedule.peek() {
            if at > now {
                break;
            }
            self.schedule.pop();
            let Some(t) = self.tracked.get_mut(&key) else {
                continue; // gone from the set
            };
            if !is_probe {
                if t.next != at {
                    continue; // rescheduled since
                }
                t.next = now + check.next_wait(crate::random::next_u64());
                self.schedule.push(Reverse((t.next, key, false)));
            } else if t.state.ejected_until().is_none() {
                continue; // restored, or down, since
            }
            if t.busy {
                continue;
            }
            t.busy = true;
            self.running.push(launch(key, t.state.endpoint.clone()));
        }
    }

    fn apply(&mut self, shared: &Shared, check: &HealthCheck, key: u64, found: &Found) {
        let Some(t) = self.tracked.get_mut(&key) else {
            return;
        };
        t.busy = false;
        let passed = *found == Found::Passed;
        t.streak = match (passed, t.streak) {
            (true, s) if s > 0 => s.saturating_add(1),
            (true, _) => 1,
            (false, s) if s < 0 => s.saturating_sub(1),
            (false, _) => -1,
        };
        let now = Instant::now();
        let outcome = Checked {
            passed,
            streak: u32::try_from(t.streak.unsigned_abs()).unwrap_or(u32::MAX),
            healthy_threshold: check.healthy_threshold,
            unhealthy_threshold: check.unhealthy_threshold,
            next_in: t.next.saturating_duration_since(now),
            found,
        };
        t.state
            .checked(&outcome, &shared.policy, shared.since_epoch(now), shared);
    }
}
