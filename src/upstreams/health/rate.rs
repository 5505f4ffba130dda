//! Failure-rate outlier detection: an endpoint's failure rate over windows of
//! outcomes, judged against its peers' (see
//! [`HealthPolicy::failure_rate_window`]).

use super::{EndpointState, HEALTHY, Verdict};
use crate::upstreams::HealthPolicy;
use std::sync::atomic::Ordering;

/// What an endpoint's ejection asks of the rest of the set; asked only when a
/// failure-rate window closes or an endpoint is ejected, never on a pick.
pub(in crate::upstreams) trait Peers {
    /// Whether `state` may be ejected fully: fewer endpoints than the policy's
    /// share of the set are out on full ejections.
    fn may_eject_fully(&self, state: &EndpointState) -> bool;
    /// The mean failure rate (thousandths) of some of `state`'s peers over their
    /// last windows, if any has one.
    fn peer_rate(&self, state: &EndpointState) -> Option<u32>;
    /// An endpoint was just ejected (an active health checker probes it when its
    /// ejection ends).
    fn ejected(&self);
}

impl EndpointState {
    /// Counts an outcome in the failure-rate window; when it fills the window, the
    /// window's failure rate (thousandths), which is kept for the peers to see.
    pub(super) fn count_in_window(&self, outcome: Verdict, window: u32) -> Option<u32> {
        let add = 1 | u64::from(outcome == Verdict::Failure) << 32;
        let seen = self
            .window
            .fetch_add(add, Ordering::Relaxed)
            .wrapping_add(add);
        if (seen as u32) < window {
            return None;
        }
        // The one that filled it closes it; a racing one finds a fresh window.
        let closed = self.window.swap(0, Ordering::Relaxed);
        let (outcomes, failures) = (u64::from(closed as u32), closed >> 32);
        if outcomes < u64::from(window) {
            return None;
        }
        let rate = u32::try_from(failures.min(outcomes) * 1000 / outcomes).unwrap_or(1000);
        self.rate.store(rate + 1, Ordering::Relaxed);
        Some(rate)
    }

    /// The peers' rate, if a window's failure `rate` is well above it: above it by
    /// at least itself and at least the policy's margin. When every endpoint fails
    /// alike the fleet is the problem, and nothing is ejected for it; an endpoint
    /// with no peer to compare with is never judged so.
    pub(super) fn is_outlier(
        &self,
        rate: u32,
        policy: &HealthPolicy,
        peers: &dyn Peers,
    ) -> Option<u32> {
        if self.state.load(Ordering::Acquire) != HEALTHY {
            return None;
        }
        let peer = peers.peer_rate(self)?;
        (rate >= peer + peer.max(policy.rate_margin)).then_some(peer)
    }

    /// The last window's failure rate, in thousandths, if one closed; else the
    /// rate of the window under way once it holds at least half of `window`
    /// outcomes, so that the first endpoint to fill a window has peers to be
    /// judged against (peers' windows fill at about the same pace).
    pub(in crate::upstreams) fn window_rate(&self, window: u32) -> Option<u32> {
        if let Some(rate) = self.rate.load(Ordering::Relaxed).checked_sub(1) {
            return Some(rate);
        }
        let current = self.window.load(Ordering::Relaxed);
        let (outcomes, failures) = (u64::from(current as u32), current >> 32);
        (outcomes > 0 && outcomes * 2 >= u64::from(window))
            .then(|| u32::try_from(failures.min(outcomes) * 1000 / outcomes).unwrap_or(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EndpointState, Verdict};

    #[test]
    fn a_window_under_way_counts_for_the_peers_once_half_full() {
        let s = EndpointState::new("http://127.0.0.1:1".parse().unwrap());
        for i in 0..24 {
            let outcome = if i % 4 == 0 {
                Verdict::Failure
            } else {
                Verdict::Success
            };
            assert_eq!(s.count_in_window(outcome, 50), None);
        }
        assert_eq!(s.window_rate(50), None, "24 of 50: not yet");
        let _ = s.count_in_window(Verdict::Success, 50);
        assert_eq!(s.window_rate(50), Some(240), "25 of 50, 6 failures");
        for _ in 0..25 {
            let _ = s.count_in_window(Verdict::Failure, 50);
        }
        assert_eq!(s.window_rate(50), Some(620), "the closed window's rate");
    }
}
