//! Hedged requests: another attempt, to another endpoint, while the first is
//! slow. The policy; the learned delay is in `latency.rs`, the race of the
//! attempts in `race.rs` and `hedging.rs`.

use super::RetryBudget;
use super::latency::Learner;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    Learned {
        learner: Arc<Learner>,
        until_learned: Duration,
        min: Duration,
    },
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
        Self::with_delay(Delay::Learned {
            learner: Arc::new(Learner::new(per_10k)),
            until_learned,
            min: Duration::from_millis(1),
        })
    }

    fn with_delay(delay: Delay) -> Self {
        Self {
            delay,
            max_attempts: 2,
            budget: Some(RetryBudget::new(0.1, 0, Duration::from_secs(10))),
        }
    }

    /// The shortest learned delay (default 1 ms). No effect on a fixed one.
    pub fn min_delay(mut self, new: Duration) -> Self {
        if let Delay::Learned { min, .. } = &mut self.delay {
            *min = new;
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
            Delay::Learned {
                learner,
                until_learned,
                min,
            } => learner.learned().map_or(*until_learned, |d| d.max(*min)),
        }
    }

    /// An attempt of a hedged request ended (answered, failed or dropped) after
    /// `waited`.
    pub(super) fn observe(&self, waited: Duration) {
        if let Delay::Learned { learner, .. } = &self.delay {
            learner.record(waited);
        }
    }
}

impl fmt::Debug for HedgePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("HedgePolicy");
        match &self.delay {
            Delay::Fixed(delay) => d.field("after", delay),
            Delay::Learned { learner, .. } => d
                .field("percentile", &(f64::from(learner.per_10k) / 100.0))
                .field("delay", &self.delay()),
        };
        d.field("max_attempts", &self.max_attempts)
            .field("budget", &self.budget)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for _ in 0..99 {
            policy.observe(Duration::from_millis(2));
        }
        assert_eq!(
            policy.delay(),
            Duration::from_millis(3),
            "until learned, not held to the floor"
        );
        for _ in 0..101 {
            policy.observe(Duration::from_millis(2));
        }
        assert_eq!(policy.delay(), Duration::from_millis(20));
        assert_eq!(
            HedgePolicy::after(Duration::from_millis(7)).delay(),
            Duration::from_millis(7)
        );
    }
}
