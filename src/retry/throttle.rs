//! Retry throttling as gRFC A6 defines it: a token count that failures drain and
//! successes refill, below half of which nothing is retried (or hedged).

use crate::error::GrpcCode;
use http::{HeaderMap, StatusCode};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One token, in the milli-tokens the count is kept in (A6: "Up to 3 decimal
/// places are supported").
const TOKEN: u64 = 1000;

/// Retry throttling as gRPC defines it (gRFC A6, "Throttling Retry Attempts and
/// Hedged RPCs"; the service config's `retryThrottling`): a budget that stops
/// retries while the upstream fails more than a set share of calls.
///
/// The throttle keeps a `token_count`, starting at `max_tokens`, never below 0
/// nor above `max_tokens`. Every attempt changes it by its outcome, as the
/// answer's head (or the failure) arrives:
///
/// - a **failure**, −1: a failure or an answer the policy would retry (its
///   [`retry_on`](super::RetryPolicy::retry_on) sets: a retryable `grpc-status`,
///   a status, a transport failure), or an answer that failed with a pushback
///   saying not to retry (`grpc-retry-pushback-ms` negative or malformed);
/// - a **success**, +`token_ratio`: an answer with `grpc-status: 0`, or with no
///   `grpc-status` in its head (a call that streams its answer) and an HTTP
///   status below 400;
/// - anything else counts neither way: an answer that failed in a way the
///   policy does not retry (`INVALID_ARGUMENT`, a 404; A6: "This avoids
///   conflating server failure with responses to malformed requests"), or a
///   failure of a kind it does not retry, as gRPC's own clients count them.
///
/// A retry (or a hedged attempt) is allowed only while `token_count >
/// max_tokens / 2`; the failure just counted is in the count, so with
/// `max_tokens` 10 the fifth failure in a row is the first not retried. The
/// first attempt of a request is always sent. A throttled retry returns the
/// failure at once, denied as [`BudgetExhausted`](crate::RetryDenied::BudgetExhausted).
///
/// The arithmetic is exact: the count is kept in integer milli-tokens (the
/// ratio rounded to 3 decimal places), with atomics, shared by every clone, so
/// one throttle serves every service of a policy as A6's serves one server
/// name. It counts every request of the policy it is given to; give gRPC
/// calls a policy of their own to throttle them alone.
///
/// ```
/// use tower_bad_gateway::retry::RetryThrottle;
///
/// // gRPC's example: retries stop when more than ~10% of calls fail.
/// let throttle = RetryThrottle::new(10, 0.1);
/// for _ in 0..4 {
///     throttle.record_failure();
/// }
/// assert!(throttle.allows(), "6 tokens > 5");
/// throttle.record_failure();
/// assert!(!throttle.allows(), "5 tokens: not above half");
/// throttle.record_success();
/// assert!(throttle.allows(), "5.1 tokens");
/// assert_eq!(throttle.milli_tokens(), 5100);
/// ```
#[derive(Clone)]
pub struct RetryThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    /// `max_tokens`, in milli-tokens.
    max: u64,
    /// `token_ratio`, in milli-tokens.
    ratio: u64,
    /// `token_count`, in milli-tokens: always within `0..=max`.
    tokens: AtomicU64,
}

impl RetryThrottle {
    /// A throttle of `max_tokens` tokens (at least 1; gRPC requires more than
    /// 0) of which each success earns back `token_ratio`, rounded to 3 decimal
    /// places (at most `max_tokens`; NaN, negative or below 0.0005 earns
    /// nothing, which gRPC's service config would reject).
    ///
    /// ```
    /// use tower_bad_gateway::retry::{RetryPolicy, RetryThrottle};
    /// let policy = RetryPolicy::new().throttle(RetryThrottle::new(10, 0.1));
    /// # let _ = policy;
    /// ```
    pub fn new(max_tokens: u32, token_ratio: f32) -> Self {
        let max = u64::from(max_tokens.max(1)) * TOKEN;
        let ratio = if token_ratio.is_nan() {
            0.0
        } else {
            (f64::from(token_ratio) * TOKEN as f64)
                .round()
                .clamp(0.0, max as f64)
        };
        Self {
            inner: Arc::new(Inner {
                max,
                ratio: ratio as u64,
                tokens: AtomicU64::new(max),
            }),
        }
    }

    /// Whether a retry (or a hedged attempt) may go: the token count is above
    /// half of `max_tokens`.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryThrottle;
    /// assert!(RetryThrottle::new(2, 0.5).allows());
    /// ```
    pub fn allows(&self) -> bool {
        self.inner.tokens.load(Ordering::Acquire) > self.inner.max / 2
    }

    /// Counts a failed attempt: one token less, never below 0.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryThrottle;
    /// let throttle = RetryThrottle::new(2, 0.5);
    /// throttle.record_failure();
    /// assert!(!throttle.allows());
    /// ```
    pub fn record_failure(&self) {
        // `Some` always: the update cannot fail.
        let _ = self
            .inner
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(TOKEN))
            });
    }

    /// Counts a successful attempt: `token_ratio` more, never above
    /// `max_tokens`.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryThrottle;
    /// let throttle = RetryThrottle::new(2, 0.5);
    /// throttle.record_failure();
    /// throttle.record_success();
    /// assert!(throttle.allows(), "1.5 tokens of 2");
    /// ```
    pub fn record_success(&self) {
        let Inner { max, ratio, .. } = *self.inner;
        // `None` (nothing to do) when full.
        let _ = self
            .inner
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < max).then(|| t.saturating_add(ratio).min(max))
            });
    }

    /// The token count, in thousandths of a token.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryThrottle;
    /// assert_eq!(RetryThrottle::new(10, 0.1).milli_tokens(), 10_000);
    /// ```
    pub fn milli_tokens(&self) -> u64 {
        self.inner.tokens.load(Ordering::Acquire)
    }

    /// Counts an answer: a failure when the policy would retry it (`retryable`)
    /// or it failed with a pushback saying not to retry; a success when it did
    /// not fail; neither otherwise (see the type's docs).
    pub(crate) fn record_answer(&self, retryable: bool, status: StatusCode, headers: &HeaderMap) {
        let succeeded = match headers.get(crate::grpc::GRPC_STATUS) {
            Some(_) => crate::grpc::status(headers) == Some(GrpcCode::Ok),
            None => status.as_u16() < 400,
        };
        if retryable
            || (!succeeded && crate::grpc::pushback(headers) == Some(crate::grpc::Pushback::Stop))
        {
            self.record_failure();
        } else if succeeded {
            self.record_success();
        }
    }
}

impl fmt::Debug for RetryThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryThrottle")
            .field("max_milli_tokens", &self.inner.max)
            .field("milli_token_ratio", &self.inner.ratio)
            .field("milli_tokens", &self.milli_tokens())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// How many failures in a row until retries stop, from where it stands.
    fn failures_until_throttled(throttle: &RetryThrottle) -> usize {
        (1..=1000)
            .find(|_| {
                throttle.record_failure();
                !throttle.allows()
            })
            .unwrap_or(usize::MAX)
    }

    /// How many successes in a row until retries resume, from where it stands.
    fn successes_until_allowed(throttle: &RetryThrottle) -> usize {
        (1..=100_000)
            .find(|_| {
                throttle.record_success();
                throttle.allows()
            })
            .unwrap_or(usize::MAX)
    }

    /// A6's example, `maxTokens` 10 and `tokenRatio` 0.1, counted exactly.
    #[test]
    fn a6_example_five_failures_stop_retries_and_one_success_resumes_them() {
        let throttle = RetryThrottle::new(10, 0.1);
        assert_eq!(throttle.milli_tokens(), 10_000, "starts full");
        assert!(throttle.allows());
        assert_eq!(
            failures_until_throttled(&throttle),
            5,
            "10 - 5 = 5, not > 5"
        );
        assert_eq!(throttle.milli_tokens(), 5_000);
        assert_eq!(successes_until_allowed(&throttle), 1, "5.1 > 5");
        assert_eq!(throttle.milli_tokens(), 5_100);
        // One more failure: 4.1, and ten successes to climb past 5 again.
        assert_eq!(failures_until_throttled(&throttle), 1);
        assert_eq!(successes_until_allowed(&throttle), 10);
        assert_eq!(throttle.milli_tokens(), 5_100);
    }

    #[test]
    fn the_count_never_leaves_zero_to_max_tokens() {
        let throttle = RetryThrottle::new(10, 0.1);
        (0..25).for_each(|_| throttle.record_failure());
        assert_eq!(throttle.milli_tokens(), 0, "floored at 0, not -15");
        // From 0: 5.0 after 50 successes is still not above half; 51 are needed.
        assert_eq!(successes_until_allowed(&throttle), 51);
        (0..1000).for_each(|_| throttle.record_success());
        assert_eq!(throttle.milli_tokens(), 10_000, "capped at max_tokens");
        throttle.record_failure();
        assert_eq!(throttle.milli_tokens(), 9_000, "the cap held no excess");
    }

    #[test]
    fn the_ratio_keeps_three_decimal_places() {
        for (ratio, milli) in [
            (0.1, 100),
            (0.7, 700),
            (0.3, 300),
            (0.0125, 13),
            (1.0, 1000),
        ] {
            assert_eq!(RetryThrottle::new(10, ratio).inner.ratio, milli, "{ratio}");
        }
        // 0.7 would truncate to 699 milli-tokens (f32 0.7 is 0.69999...): six
        // failures leave 4, and two successes must reach 5.4, not 5.398.
        let throttle = RetryThrottle::new(10, 0.7);
        (0..6).for_each(|_| throttle.record_failure());
        (0..2).for_each(|_| throttle.record_success());
        assert_eq!(throttle.milli_tokens(), 5_400);
    }

    #[test]
    fn odd_maxima_halve_exactly() {
        let throttle = RetryThrottle::new(3, 1.0);
        throttle.record_failure();
        assert!(throttle.allows(), "2 > 1.5");
        throttle.record_failure();
        assert!(!throttle.allows(), "1 <= 1.5");
    }

    #[test]
    fn clones_share_one_count() {
        let a = RetryThrottle::new(2, 0.5);
        let b = a.clone();
        a.record_failure();
        assert!(!b.allows());
        b.record_success();
        assert!(a.allows());
    }

    #[test]
    fn absurd_settings_are_clamped_not_panicking() {
        for ratio in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1.0,
            1e30,
            0.0001,
        ] {
            let throttle = RetryThrottle::new(0, ratio);
            throttle.record_failure();
            throttle.record_success();
            assert!(throttle.milli_tokens() <= 1000, "{ratio}");
        }
        let max = RetryThrottle::new(u32::MAX, f32::MAX);
        max.record_success();
        assert_eq!(max.milli_tokens(), u64::from(u32::MAX) * 1000);
        assert_eq!(
            RetryThrottle::new(0, 0.5).inner.max,
            1000,
            "at least 1 token"
        );
    }

    #[test]
    fn answers_count_as_a6_counts_calls() {
        let grpc = |code: &'static str, pushback: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", HeaderValue::from_static(code));
            if let Some(p) = pushback {
                headers.insert("grpc-retry-pushback-ms", HeaderValue::from_static(p));
            }
            headers
        };
        let none = HeaderMap::new();
        let after = |retryable, status: u16, headers: &HeaderMap| {
            let throttle = RetryThrottle::new(10, 1.0);
            throttle.record_failure();
            throttle.record_answer(retryable, StatusCode::from_u16(status).unwrap(), headers);
            throttle.milli_tokens()
        };
        let (failure, neither, success) = (8_000, 9_000, 10_000);
        assert_eq!(
            after(true, 200, &grpc("14", None)),
            failure,
            "retryable code"
        );
        assert_eq!(after(true, 503, &none), failure, "retryable status");
        assert_eq!(
            after(false, 200, &grpc("14", Some("-1"))),
            failure,
            "pushback: stop"
        );
        assert_eq!(
            after(false, 200, &grpc("14", Some("soon"))),
            failure,
            "malformed pushback"
        );
        assert_eq!(
            after(false, 200, &grpc("3", None)),
            neither,
            "INVALID_ARGUMENT"
        );
        assert_eq!(
            after(false, 200, &grpc("14", Some("10"))),
            neither,
            "not retried here"
        );
        assert_eq!(after(false, 404, &none), neither, "a 404");
        assert_eq!(
            after(false, 200, &grpc("x", None)),
            neither,
            "an unreadable status"
        );
        assert_eq!(after(false, 200, &grpc("0", None)), success, "OK");
        assert_eq!(
            after(false, 200, &grpc("0", Some("-1"))),
            success,
            "OK, whatever pushback"
        );
        assert_eq!(
            after(false, 200, &none),
            success,
            "a streamed answer's head"
        );
        assert_eq!(after(false, 304, &none), success, "not an error");
    }
}
