//! A retry budget: retries may be at most a fraction of requests, plus a floor.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// One retry costs this many milli-tokens; a request deposits `ratio × 1000`.
const RETRY_COST: i64 = 1000;
const SLOTS: usize = 10;

/// Limits retries to a fraction of requests over a sliding window, plus a small
/// floor per second so that a quiet service can still retry: like Envoy's retry
/// budget and tower's `TpsBudget`, shared by every clone.
///
/// Exact where tower's is not: tower computes the cost of a retry as
/// `(1.0 / ratio) as isize`, which truncates (a 30% budget allows 33%, a 70% budget
/// allows 100%). Here each request deposits `round(ratio × 1000)` milli-tokens and
/// each retry withdraws 1000, so a 20% budget allows one retry per five requests.
///
/// ```
/// use tower_bad_gateway::retry::RetryBudget;
/// use std::time::Duration;
///
/// // 20% of requests, and no floor.
/// let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "10 requests buy 2 retries");
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

/// Deposits, on every request, are one atomic add to the current slot; only
/// withdrawals (retries) and moving to a new slot take a lock.
struct Inner {
    deposit: i64,
    reserve: i64,
    slot_nanos: u64,
    base: Instant,
    slots: [AtomicI64; SLOTS],
    /// The slot number (time since `base` in slots) the ring was last moved to.
    epoch: AtomicU64,
    rotate: Mutex<()>,
    withdraw: Mutex<()>,
}

impl Default for RetryBudget {
    /// 20% of requests, plus 10 retries per second, over a 10 second window.
    fn default() -> Self {
        Self::new(0.2, 10, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// Retries may be `ratio` of the requests (clamped to `0.0..=1000.0`; NaN counts
    /// as 0) plus `min_per_sec` per second, counted over the last `window`
    /// (clamped to 1 to 60 seconds).
    pub fn new(ratio: f32, min_per_sec: u32, window: Duration) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let window = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let deposit = (f64::from(ratio) * RETRY_COST as f64).round() as i64;
        let reserve = i64::from(min_per_sec)
            .saturating_mul(window.as_secs() as i64)
            .saturating_mul(RETRY_COST);
        let slot_nanos = u64::try_from((window / SLOTS as u32).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            inner: Arc::new(Inner {
                deposit,
                reserve,
                slot_nanos,
                base: Instant::now(),
                slots: std::array::from_fn(|_| AtomicI64::new(0)),
                epoch: AtomicU64::new(0),
                rotate: Mutex::new(()),
                withdraw: Mutex::new(()),
            }),
        }
    }

    /// Records a request: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// [`deposit`](Self::deposit) with the caller's clock reading.
    pub(crate) fn deposit_at(&self, now: Instant) {
        if self.inner.deposit == 0 {
            return;
        }
        let slot = self.slot_at(now);
        self.inner.slots[slot].fetch_add(self.inner.deposit, Ordering::Relaxed);
    }

    /// Spends one retry if the budget has one; `false` if it is spent.
    pub fn withdraw(&self) -> bool {
        let _serial = self
            .inner
            .withdraw
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = self.slot_at(Instant::now());
        let balance: i64 = self.inner.reserve
            + self
                .inner
                .slots
                .iter()
                .map(|s| s.load(Ordering::Acquire))
                .sum::<i64>();
        if balance < RETRY_COST {
            return false;
        }
        self.inner.slots[slot].fetch_sub(RETRY_COST, Ordering::AcqRel);
        true
    }

    /// The slot for `now`, after clearing the slots that fell out of the window.
    fn slot_at(&self, now: Instant) -> usize {
        let inner = &*self.inner;
        let since = now.saturating_duration_since(inner.base);
        let now = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) / inner.slot_nanos;
        if now > inner.epoch.load(Ordering::Acquire) {
            // One caller moves the ring; the others deposit into the new slot. A
            // deposit racing with the clearing may be lost, which only makes the
            // budget stricter.
            if let Ok(_moving) = inner.rotate.try_lock() {
                let last = inner.epoch.load(Ordering::Acquire);
                for epoch in (last + 1..=now).take(SLOTS) {
                    inner.slots[(epoch % SLOTS as u64) as usize].store(0, Ordering::Release);
                }
                if now > last {
                    inner.epoch.store(now, Ordering::Release);
                }
            }
        }
        (now % SLOTS as u64) as usize
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("deposit_milli", &self.inner.deposit)
            .field("reserve_milli", &self.inner.reserve)
            .field(
                "window",
                &Duration::from_nanos(self.inner.slot_nanos.saturating_mul(SLOTS as u64)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retries_after(budget: &RetryBudget, requests: usize) -> usize {
        (0..requests).for_each(|_| budget.deposit());
        std::iter::from_fn(|| budget.withdraw().then_some(()))
            .take(100_000)
            .count()
    }

    #[test]
    fn ratios_are_exact_where_tower_truncates() {
        for (ratio, requests, retries) in [
            (0.2, 100, 20),
            (0.3, 100, 30),
            (0.7, 100, 70),
            (0.0, 100, 0),
            (2.0, 10, 20),
        ] {
            let budget = RetryBudget::new(ratio, 0, Duration::from_secs(10));
            assert_eq!(retries_after(&budget, requests), retries, "ratio {ratio}");
        }
    }

    #[test]
    fn the_floor_allows_retries_without_requests() {
        let budget = RetryBudget::new(0.0, 2, Duration::from_secs(5));
        assert_eq!(retries_after(&budget, 0), 10);
    }

    #[test]
    fn clones_share_one_budget() {
        let a = RetryBudget::new(0.5, 0, Duration::from_secs(10));
        let b = a.clone();
        a.deposit();
        a.deposit();
        assert!(b.withdraw());
        assert!(!a.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_leave_the_window_after_it_passes() {
        let budget = RetryBudget::new(0.5, 0, Duration::from_secs(1));
        (0..10).for_each(|_| budget.deposit());
        assert!(budget.withdraw(), "fresh deposits buy retries");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(!budget.withdraw(), "a second later they are gone");
        (0..2).for_each(|_| budget.deposit());
        assert!(budget.withdraw(), "new deposits count again");
    }

    #[test]
    fn absurd_settings_are_clamped_not_panicking() {
        for ratio in [f32::NAN, f32::INFINITY, -1.0, 1e30] {
            let _ = retries_after(&RetryBudget::new(ratio, u32::MAX, Duration::ZERO), 3);
        }
        let _ = RetryBudget::new(0.2, 1, Duration::MAX).withdraw();
    }
}
