//! Hedged requests: another attempt, to another endpoint, while the first is slow.

use super::RetryBudget;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// When a [`Retry`](super::Retry) hedges: sends a request again, to another
/// endpoint, while its first attempt is still waiting for an answer ("The Tail at
/// Scale"'s backup requests, gRFC A6's hedging policy, Finagle's
/// `BackupRequestFilter`). Opt in with [`RetryPolicy::hedge`](super::RetryPolicy::hedge)
/// or [`GatewayLayer::hedge`](crate::GatewayLayer::hedge).
///
/// - **Only requests that may be sent twice**: those the retry policy calls
///   [idempotent](super::RetryPolicy::is_idempotent) (RFC 9110 §9.2.2, or your
///   explicit opt-in: `Idempotency-Key`, [`idempotent_if`](super::RetryPolicy::idempotent_if)),
///   with a body that fit the replay buffer and was read to its end. A `POST` is
///   never hedged.
/// - **After a delay**, fixed ([`after`](Self::after)) or a latency percentile the
///   layer learns from its own attempts in bounded memory
///   ([`percentile`](Self::percentile)), another attempt goes out; one more after
///   each further delay, up to [`max_attempts`](Self::max_attempts) in all
///   (default 2: one hedge). The endpoints of the attempts in flight travel with
///   the hedge, so an [`Upstreams`](crate::upstreams::Upstreams) layer below sends
///   it to another replica whenever one is healthy.
/// - **The first acceptable answer wins**: an answer head, or a failure the retry
///   policy would not retry. A failure it would retry never wins while another
///   attempt is in flight. The moment one wins, the others are dropped: their
///   connection is closed (HTTP/1.1) or their stream reset (HTTP/2). A dropped
///   attempt never counts against its endpoint's health.
/// - **A budget** caps the extra load: hedges may be at most 10% of the requests
///   that could be hedged, by default ([`budget`](Self::budget)). So when every
///   replica is slow, hedging does not double their load.
/// - **gRPC** (gRFC A6): each hedge carries `grpc-previous-rpc-attempts`; a
///   [throttle](super::RetryPolicy::throttle) at half its tokens stops hedges as
///   it stops retries, and counts the attempts that lose; a losing attempt's
///   `grpc-retry-pushback-ms` delays the next hedge by that much (a negative one
///   stops them).
/// - Everything else keeps its meaning: the [`Deadline`](crate::deadline::Deadline)
///   (and `grpc-timeout`) ends the whole exchange, hedges included, and no hedge
///   starts past it; each attempt has its own attempt timeout; the retry budget
///   is not spent by hedges; after every attempt in flight failed, the retry
///   policy decides as usual (hedges count as attempts for
///   [`max_attempts`](super::RetryPolicy::max_attempts)).
///
/// ```
/// use tower_bad_gateway::retry::{HedgePolicy, RetryBudget, RetryPolicy};
/// use std::time::Duration;
///
/// // A hedge after 50 ms.
/// let fixed = RetryPolicy::new().hedge(HedgePolicy::after(Duration::from_millis(50)));
/// // A hedge once an attempt is slower than 95% of the attempts lately (200 ms
/// // until 100 attempts were seen), at most 3 attempts in all, 5% extra load.
/// let learned = RetryPolicy::new().hedge(
///     HedgePolicy::percentile(95.0, Duration::from_millis(200))
///         .max_attempts(3)
///         .budget(RetryBudget::new(0.05, 0, Duration::from_secs(10))),
/// );
/// # let _ = (fixed, learned);
/// ```
#[derive(Clone)]
pub struct HedgePolicy {
    delay: Delay,
    pub(super) max_attempts: u32,
    pub(super) budget: Option<RetryBudget>,
}

#[derive(Clone)]
enum Delay {
    Fixed(Duration),
    Learned(Arc<Learner>),
}

impl HedgePolicy {
    /// Hedges after a fixed `delay`: 2 attempts in all, a budget of 10%.
    pub fn after(delay: Duration) -> Self {
        Self::with_delay(Delay::Fixed(delay))
    }

    /// Hedges once an attempt has waited longer than `percentile` (0 to 100, e.g.
    /// `95.0`) of the attempts this policy saw lately, and after `until_learned`
    /// until it saw 100. The latencies are kept in a histogram of about 19%
    /// resolution over the last 2,048 to 4,096 attempts, in fixed memory (1 KiB);
    /// a dropped loser counts as taking as long as it waited, so the tail it was
    /// cut from still shows. Never less than 1 ms ([`min_delay`](Self::min_delay)).
    pub fn percentile(percentile: f64, until_learned: Duration) -> Self {
        let per_10k = if percentile.is_nan() {
            9_500
        } else {
            (percentile.clamp(0.0, 100.0) * 100.0).round() as u32
        };
        Self::with_delay(Delay::Learned(Arc::new(Learner::new(
            per_10k,
            until_learned,
        ))))
    }

    fn with_delay(delay: Delay) -> Self {
        Self {
            delay,
            max_attempts: 2,
            budget: Some(RetryBudget::new(0.1, 0, Duration::from_secs(10))),
        }
    }

    /// The shortest learned delay (default 1 ms). No effect on a fixed one.
    pub fn min_delay(mut self, min: Duration) -> Self {
        if let Delay::Learned(learner) = &self.delay {
            let mut l = Learner::new(learner.per_10k, learner.until_learned);
            l.min = min;
            self.delay = Delay::Learned(Arc::new(l));
        }
        self
    }

    /// Attempts in all, the first included (default 2; gRFC A6's `maxAttempts`):
    /// one more is sent after each delay while none answered. At least 1 (no
    /// hedging).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Hedges only while `budget` has one to spend; every request that could be
    /// hedged deposits into it. The default, `RetryBudget::new(0.1, 0, 10 s)`,
    /// allows one hedge per ten such requests.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Hedges without a budget: when every replica slows down, every request
    /// is sent [`max_attempts`](Self::max_attempts) times.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The wait before the next hedge.
    pub(super) fn delay(&self) -> Duration {
        match &self.delay {
            Delay::Fixed(delay) => *delay,
            Delay::Learned(learner) => learner.delay(),
        }
    }

    /// An attempt of a hedged request ended (answered, failed or dropped) after
    /// `waited`.
    pub(super) fn observe(&self, waited: Duration) {
        if let Delay::Learned(learner) = &self.delay {
            learner.record(waited);
        }
    }
}

impl fmt::Debug for HedgePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("HedgePolicy");
        match &self.delay {
            Delay::Fixed(delay) => d.field("after", delay),
            Delay::Learned(l) => d
                .field("percentile", &(f64::from(l.per_10k) / 100.0))
                .field("delay", &l.delay()),
        };
        d.field("max_attempts", &self.max_attempts)
            .field("budget", &self.budget)
            .finish()
    }
}

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
struct Learner {
    per_10k: u32,
    until_learned: Duration,
    min: Duration,
    counts: [[AtomicU32; BUCKETS]; 2],
    totals: [AtomicU32; 2],
    current: AtomicUsize,
    rotating: AtomicBool,
    /// The learned delay in µs; 0 until learned.
    learned: AtomicU64,
}

impl Learner {
    fn new(per_10k: u32, until_learned: Duration) -> Self {
        Self {
            per_10k,
            until_learned,
            min: Duration::from_millis(1),
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            totals: [AtomicU32::new(0), AtomicU32::new(0)],
            current: AtomicUsize::new(0),
            rotating: AtomicBool::new(false),
            learned: AtomicU64::new(0),
        }
    }

    fn delay(&self) -> Duration {
        match self.learned.load(Ordering::Relaxed) {
            0 => self.until_learned,
            micros => Duration::from_micros(micros).max(self.min),
        }
    }

    fn record(&self, waited: Duration) {
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
    let log = (63 - micros.leading_zeros()).min(29);
    let sub = if log == 29 && micros >= 1 << 30 {
        u64::from(SUB) - 1
    } else {
        (micros >> (log - 2)) & 3
    };
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

pin_project_lite::pin_project! {
    /// The attempts of a hedged request in flight, and when the next hedge is due.
    /// The race's first attempt and its timer live inline (one allocation for the
    /// whole race when no hedge is sent); hedges are boxed.
    pub(super) struct Race<F> {
        #[pin]
        first: Option<F>,
        first_number: u32,
        first_start: Instant,
        hedges: Vec<Racer<F>>,
        // The next hedge; `None` once no more may be sent.
        #[pin]
        timer: Option<Sleep>,
        // A hedge is due, paid for, waiting for the service to be ready.
        due: bool,
    }
}

/// A hedge in flight.
struct Racer<F> {
    future: Pin<Box<F>>,
    number: u32,
    start: Instant,
}

/// An attempt of the race that ended.
pub(super) struct Finished<T> {
    pub(super) outcome: T,
    /// Its number (1 for the request's first attempt).
    pub(super) number: u32,
    pub(super) start: Instant,
    /// No other attempt is in flight.
    pub(super) last: bool,
    /// It was a hedge (not the race's first attempt).
    pub(super) hedge: bool,
}

impl<F> Race<F> {
    /// A race of one, attempt `number` sent at `start`; the first hedge after
    /// `delay`, if any may be sent.
    pub(super) fn new(first: F, number: u32, start: Instant, delay: Option<Duration>) -> Self {
        Self {
            first: Some(first),
            first_number: number,
            first_start: start,
            hedges: Vec::new(),
            timer: delay.map(tokio::time::sleep),
            due: false,
        }
    }
}

impl<F: Future> Race<F> {
    /// The first attempt in flight that ended, taken out of the race.
    pub(super) fn poll_finished(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Finished<F::Output>> {
        let mut this = self.project();
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            if let Poll::Ready(outcome) = first.poll(cx) {
                this.first.set(None);
                return Poll::Ready(Finished {
                    outcome,
                    number: *this.first_number,
                    start: *this.first_start,
                    last: this.hedges.is_empty(),
                    hedge: false,
                });
            }
        }
        for i in 0..this.hedges.len() {
            if let Poll::Ready(outcome) = this.hedges[i].future.as_mut().poll(cx) {
                let racer = this.hedges.swap_remove(i);
                return Poll::Ready(Finished {
                    outcome,
                    number: racer.number,
                    start: racer.start,
                    last: this.hedges.is_empty() && this.first.is_none(),
                    hedge: true,
                });
            }
        }
        Poll::Pending
    }

    /// The numbers of the attempts in flight.
    pub(super) fn in_flight(&self) -> impl Iterator<Item = u32> + '_ {
        let first = self.first.is_some().then_some(self.first_number);
        first
            .into_iter()
            .chain(self.hedges.iter().map(|r| r.number))
    }

    /// Ready when the next hedge is due (and then at once until it is sent or
    /// given up); pending forever once none may be sent.
    pub(super) fn poll_due(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if *this.due {
            return Poll::Ready(true);
        }
        match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| false),
            None => Poll::Pending,
        }
    }

    /// The hedge is paid for: it goes as soon as the service is ready.
    pub(super) fn set_due(self: Pin<&mut Self>, due: bool) {
        *self.project().due = due;
    }

    /// The next hedge after `delay`, or none.
    pub(super) fn rearm(self: Pin<&mut Self>, delay: Option<Duration>) {
        let mut this = self.project();
        match (delay, this.timer.as_mut().as_pin_mut()) {
            (Some(delay), Some(timer)) => timer.reset(Instant::now() + delay),
            (Some(delay), None) => this.timer.set(Some(tokio::time::sleep(delay))),
            (None, _) => this.timer.set(None),
        }
    }

    /// A hedge sent: attempt `number`, at `start`.
    pub(super) fn push(self: Pin<&mut Self>, future: F, number: u32, start: Instant) {
        self.project().hedges.push(Racer {
            future: Box::pin(future),
            number,
            start,
        });
    }

    /// Drops every attempt still in flight (and the timer), telling `each` when it
    /// started; how many there were.
    pub(super) fn cancel(self: Pin<&mut Self>, mut each: impl FnMut(Instant)) -> usize {
        let mut this = self.project();
        let mut n = 0;
        if this.first.is_some() {
            each(*this.first_start);
            this.first.set(None);
            n += 1;
        }
        for racer in this.hedges.drain(..) {
            each(racer.start);
            n += 1;
        }
        this.timer.set(None);
        n
    }
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
        let learner = Learner::new(9_500, Duration::from_millis(200));
        for _ in 0..99 {
            learner.record(Duration::from_millis(10));
        }
        assert_eq!(
            learner.delay(),
            Duration::from_millis(200),
            "not learned before 100 attempts"
        );
        // 100 attempts: 95 of 10 ms, 5 of 1 s. The 95th is 10 ms (its bucket's end).
        let learner = Learner::new(9_500, Duration::from_millis(200));
        for i in 0..128 {
            let slow = i % 20 == 19;
            learner.record(Duration::from_millis(if slow { 1000 } else { 10 }));
        }
        let delay = learner.delay();
        assert!(
            delay >= Duration::from_millis(10) && delay < Duration::from_millis(12),
            "{delay:?}"
        );
        // The 99th is in the slow tail.
        let learner = Learner::new(9_900, Duration::from_millis(200));
        for i in 0..128 {
            learner.record(Duration::from_millis(if i % 20 == 19 { 1000 } else { 10 }));
        }
        assert!(learner.delay() >= Duration::from_millis(1000));
    }

    #[test]
    fn old_latencies_age_out_in_two_generations() {
        let learner = Learner::new(5_000, Duration::from_millis(200));
        for _ in 0..GENERATION {
            learner.record(Duration::from_secs(1));
        }
        for _ in 0..2 * GENERATION {
            learner.record(Duration::from_millis(5));
        }
        let delay = learner.delay();
        assert!(delay < Duration::from_millis(7), "{delay:?}");
    }

    #[test]
    fn absurd_percentiles_are_clamped_and_the_delay_has_a_floor() {
        for p in [f64::NAN, -5.0, 0.0, 100.0, 1e9] {
            let policy = HedgePolicy::percentile(p, Duration::from_millis(3));
            for _ in 0..200 {
                policy.observe(Duration::ZERO);
            }
            assert!(policy.delay() >= Duration::from_millis(1), "{p}");
        }
        let policy = HedgePolicy::percentile(50.0, Duration::from_millis(3))
            .min_delay(Duration::from_millis(20));
        for _ in 0..200 {
            policy.observe(Duration::from_millis(2));
        }
        assert_eq!(policy.delay(), Duration::from_millis(20));
        assert_eq!(
            HedgePolicy::after(Duration::from_millis(7)).delay(),
            Duration::from_millis(7)
        );
    }
}
