//! Slow start: a restored or joining endpoint's share of picks, ramping up over
//! [`HealthPolicy::slow_start`].

use super::{EndpointState, nanos};
use crate::upstreams::HealthPolicy;
use std::sync::atomic::Ordering;

impl EndpointState {
    /// Starts ramping its share up from `now` (slow start).
    pub(in crate::upstreams) fn start_warming(&self, now: u64) {
        self.warm_since
            .store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a healthy endpoint takes this pick, given slow start: one taking a
    /// full share always does; one still ramping up does with the chance of the
    /// share of its window that has passed (`random` decides), so its share grows
    /// from nothing to full over the window. The clock is read only for an
    /// endpoint ramping up.
    pub(in crate::upstreams) fn takes_share(
        &self,
        policy: &HealthPolicy,
        now: &mut dyn FnMut() -> u64,
        random: u64,
    ) -> bool {
        let since = self.warm_since.load(Ordering::Relaxed);
        if since == 0 {
            return true;
        }
        let window = nanos(policy.slow_start).max(1);
        let elapsed = now().saturating_sub(since - 1);
        if elapsed >= window {
            self.warm_since.store(0, Ordering::Relaxed);
            return true;
        }
        // `elapsed / window`, in thousandths, against a random thousandth.
        let share = elapsed.saturating_mul(1000) / window;
        random % 1000 < share
    }
}
