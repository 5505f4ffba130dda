//! The latency a hedge waits for, learned: a percentile of the attempts seen
//! lately, in fixed memory.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: 4, so a bucket is at most 19% wide.
const SUB: u32 = 4;
/// Buckets of microseconds up to 2^30 µs (about 18 minutes).
const BUCKETS: usize = 30 * SUB as usize;
/// Attempts per generation: the histogram holds the last one or two.
const GENERATION: u32 = 2048;
/// Attempts seen before the percentile is trusted.
const LEARNED_AFTER: u32 = 100;
/// The percentile is read again after this many attempts.
const RECOMPUTE_EVERY: u32 = 32;

/// A latency histogram in two generations: the current one fills; when it holds
/// [`GENERATION`] attempts, the older one is cleared and becomes current. The
/// percentile is read over both, so over the last 2,048 to 4,096 attempts.
/// Relaxed atomics: a count lost to a race only blurs a percentile.
pub(super) struct Learner {
    pub(super) per_10k: u32,
    counts: [[AtomicU32; BUCKETS]; 2],
    totals: [AtomicU32; 2],
    current: AtomicUsize,
    rotating: AtomicBool,
    /// The learned delay in µs; 0 until learned.
    learned: AtomicU64,
}

impl Learner {
    pub(super) fn new(per_10k: u32) -> Self {
        Self {
            per_10k,
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            totals: [AtomicU32::new(0), AtomicU32::new(0)],
            current: AtomicUsize::new(0),
            rotating: AtomicBool::new(false),
            learned: AtomicU64::new(0),
        }
    }

    /// The percentile of the attempts seen lately, once enough were.
    pub(super) fn learned(&self) -> Option<Duration> {
        match self.learned.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    pub(super) fn record(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        let generation = self.current.load(Ordering::Relaxed) & 1;
        self.counts[generation][bucket(micros)].fetch_add(1, Ordering::Relaxed);
        let n = self.totals[generation].fetch_add(1, Ordering::Relaxed) + 1;
        if n % RECOMPUTE_EVERY == 0 {
            self.recompute();
        }
        if n >= GENERATION
            && self
                .rotating
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            if self.current.load(Ordering::Relaxed) & 1 == generation {
                let older = generation ^ 1;
                for count in &self.counts[older] {
                    count.store(0, Ordering::Relaxed);
                }
                self.totals[older].store(0, Ordering::Relaxed);
                self.current.store(older, Ordering::Relaxed);
            }
            self.rotating.store(false, Ordering::Release);
        }
    }

    fn recompute(&self) {
        let total: u64 = self
            .totals
            .iter()
            .map(|t| u64::from(t.load(Ordering::Relaxed)))
            .sum();
        if total < u64::from(LEARNED_AFTER) {
            return;
        }
        // The smallest bucket at or above the rank of the percentile.
        let rank = (total * u64::from(self.per_10k)).div_ceil(10_000).max(1);
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += self
                .counts
                .iter()
                .map(|g| u64::from(g[i].load(Ordering::Relaxed)))
                .sum::<u64>();
            if seen >= rank {
                self.learned.store(upper_bound(i).max(1), Ordering::Relaxed);
                return;
            }
        }
    }
}

/// The bucket of a latency in µs: below 4 µs one per µs, then [`SUB`] per power
/// of two.
fn bucket(micros: u64) -> usize {
    if micros < u64::from(SUB) {
        return micros as usize;
    }
    // Longer ones fall in the last bucket.
    let micros = micros.min((1 << 30) - 1);
    let log = 63 - micros.leading_zeros();
    let sub = (micros >> (log - 2)) & 3;
    (log * SUB) as usize + sub as usize
}

/// The largest latency (µs) in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < u64::from(SUB) {
        return i;
    }
    let (log, sub) = (i / u64::from(SUB), i % u64::from(SUB));
    ((u64::from(SUB) + sub + 1) << (log - 2)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bounded() {
        let mut last = 0;
        for micros in (0..5_000u64).chain([1 << 20, (1 << 30) - 1, 1 << 30, u64::MAX]) {
            let b = bucket(micros);
            assert!(b < BUCKETS, "{micros} µs");
            assert!(b >= last, "{micros} µs");
            last = b;
            if micros < 1 << 30 {
                assert!(upper_bound(b) >= micros, "{micros} µs in bucket {b}");
                assert!(
                    upper_bound(b) as f64 <= (micros as f64 * 1.25).max(3.0),
                    "{micros} µs: bucket {b} ends at {}",
                    upper_bound(b)
                );
            }
        }
    }

    #[test]
    fn the_learned_delay_is_the_percentile_of_the_attempts() {
        let learner = Learner::new(9_500);
        for _ in 0..99 {
            learner.record(Duration::from_millis(10));
        }
        assert_eq!(learner.learned(), None, "not learned before 100 attempts");
        // 100 attempts: 95 of 10 ms, 5 of 1 s. The 95th is 10 ms (its bucket's end).
        let learner = Learner::new(9_500);
        for i in 0..128 {
            let slow = i % 20 == 19;
            learner.record(Duration::from_millis(if slow { 1000 } else { 10 }));
        }
        let delay = learner.learned().unwrap();
        assert!(
            delay >= Duration::from_millis(10) && delay < Duration::from_millis(12),
            "{delay:?}"
        );
        // The 99th is in the slow tail.
        let learner = Learner::new(9_900);
        for i in 0..128 {
            learner.record(Duration::from_millis(if i % 20 == 19 { 1000 } else { 10 }));
        }
        assert!(learner.learned().unwrap() >= Duration::from_millis(1000));
    }

    #[test]
    fn old_latencies_age_out_in_two_generations() {
        let learner = Learner::new(5_000);
        for _ in 0..GENERATION {
            learner.record(Duration::from_secs(1));
        }
        for _ in 0..2 * GENERATION {
            learner.record(Duration::from_millis(5));
        }
        let delay = learner.learned().unwrap();
        assert!(delay < Duration::from_millis(7), "{delay:?}");
    }
}
