//! The decision after each attempt: try again (after how long), or stop (and why).

use super::{RetryPolicy, parse_retry_after};
use crate::error::{GatewayError, RequestSent, RetryDefault, RetryDenied};
use crate::grpc::{self, Pushback};
use crate::outcome::Outcome;
use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

impl RetryPolicy {
    pub(super) fn deposit_at(&self, now: Instant) {
        if let Some(budget) = &self.budget {
            budget.deposit_at(now);
        }
    }

    /// Decides what to do after a failed attempt.
    pub(super) fn after_error(&self, err: &GatewayError, ctx: &Attempt<'_>) -> Decision {
        let wanted = err.kind().retry_default() != RetryDefault::Never
            && self.outcomes.counts(&Outcome::Error(err));
        if !wanted {
            return Decision::Stop(Some(RetryDenied::NotRetryable));
        }
        // A failure the policy retries counts, whatever else stops the retry.
        if let Some(throttle) = &self.throttle {
            throttle.record_failure();
        }
        if err.request_sent() != RequestSent::No && !ctx.idempotent {
            return Decision::Stop(Some(RetryDenied::MaybeSent));
        }
        self.if_allowed(ctx, self.backoff.delay(ctx.retry()))
    }

    /// Decides what to do after the upstream answered.
    pub(super) fn after_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        ctx: &Attempt<'_>,
    ) -> Decision {
        let wanted = self.outcomes.counts_answer(status, headers);
        if let Some(throttle) = &self.throttle {
            throttle.record_answer(wanted, status, headers);
        }
        // The upstream received the request: only idempotent ones go again.
        if !wanted || !ctx.idempotent {
            return Decision::Stop(None);
        }
        // The server's word on the wait: gRPC's pushback (A6) first, exact and
        // in milliseconds; else `Retry-After`.
        let server_wait = match grpc::pushback(headers) {
            Some(Pushback::Stop) => return Decision::Stop(None),
            Some(Pushback::After(wait)) => Some(wait),
            None => headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now())),
        };
        let delay = match server_wait {
            Some(wait) if wait > self.max_retry_after => return Decision::Stop(None),
            Some(wait) => wait,
            None => self.backoff.delay(ctx.retry()),
        };
        match self.if_allowed(ctx, delay) {
            Decision::Stop(_) => Decision::Stop(None),
            retry @ Decision::Retry(_) => retry,
        }
    }

    /// The limits every retry must pass; the budget is spent only when all others pass.
    fn if_allowed(&self, ctx: &Attempt<'_>, delay: Duration) -> Decision {
        if ctx.attempts >= self.max_attempts {
            return Decision::Stop(Some(RetryDenied::AttemptsExhausted));
        }
        if !(ctx.replayable)() {
            return Decision::Stop(Some(RetryDenied::BodyNotReplayable));
        }
        if ctx
            .deadline
            .is_some_and(|deadline| Instant::now() + delay >= deadline)
        {
            return Decision::Stop(Some(RetryDenied::Deadline));
        }
        if self.throttle.as_ref().is_some_and(|t| !t.allows())
            || self.budget.as_ref().is_some_and(|b| !b.withdraw())
        {
            return Decision::Stop(Some(RetryDenied::BudgetExhausted));
        }
        Decision::Retry(delay)
    }
}

/// What the decision needs to know of the exchange so far.
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    /// Attempts made so far.
    pub(super) attempts: u32,
    pub(super) idempotent: bool,
    /// Whether the body can be sent again: asked only when a retry is considered
    /// (for a buffered body it takes a lock).
    pub(super) replayable: &'a dyn Fn() -> bool,
    pub(super) deadline: Option<Instant>,
    /// The attempts made when a pushback last set the wait (0: never): the
    /// backoff counts its steps from there.
    pub(super) backoff_from: u32,
}

impl Attempt<'_> {
    /// The backoff step of the next retry (1-based).
    fn retry(&self) -> u32 {
        self.attempts.saturating_sub(self.backoff_from)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Retry(Duration),
    Stop(Option<RetryDenied>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::retry::{RetryBudget, RetryThrottle};

    fn ctx(attempts: u32, idempotent: bool) -> Attempt<'static> {
        Attempt {
            attempts,
            idempotent,
            replayable: &|| true,
            deadline: None,
            backoff_from: 0,
        }
    }

    #[test]
    fn a_post_that_may_have_been_sent_is_never_retried() {
        let policy = RetryPolicy::new().no_budget();
        let terminated = GatewayError::new(ErrorKind::ConnectionTerminated);
        assert_eq!(
            policy.after_error(&terminated, &ctx(1, false)),
            Decision::Stop(Some(RetryDenied::MaybeSent))
        );
        assert!(matches!(
            policy.after_error(&terminated, &ctx(1, true)),
            Decision::Retry(_)
        ));
        let refused = GatewayError::new(ErrorKind::ConnectionRefused);
        assert!(matches!(
            policy.after_error(&refused, &ctx(1, false)),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn never_kinds_cannot_be_enabled() {
        let policy = RetryPolicy::new()
            .no_budget()
            .retry_on(ErrorKind::ReadTimeout);
        let err = GatewayError::new(ErrorKind::ReadTimeout);
        assert_eq!(
            policy.after_error(&err, &ctx(1, true)),
            Decision::Stop(Some(RetryDenied::NotRetryable))
        );
        let head = GatewayError::new(ErrorKind::ResponseHeaderTimeout);
        assert_eq!(
            policy.after_error(&head, &ctx(1, true)),
            Decision::Stop(Some(RetryDenied::NotRetryable))
        );
        let policy = policy.retry_on(ErrorKind::ResponseHeaderTimeout);
        assert!(matches!(
            policy.after_error(&head, &ctx(1, true)),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn limits_in_order_attempts_body_deadline_budget() {
        let policy = RetryPolicy::new().budget(RetryBudget::new(0.0, 0, Duration::from_secs(1)));
        let refused = GatewayError::new(ErrorKind::ConnectionRefused);
        assert_eq!(
            policy.after_error(&refused, &ctx(3, true)),
            Decision::Stop(Some(RetryDenied::AttemptsExhausted))
        );
        let body = Attempt {
            replayable: &|| false,
            ..ctx(1, true)
        };
        assert_eq!(
            policy.after_error(&refused, &body),
            Decision::Stop(Some(RetryDenied::BodyNotReplayable))
        );
        let late = Attempt {
            deadline: Some(Instant::now()),
            ..ctx(1, true)
        };
        assert_eq!(
            policy.after_error(&refused, &late),
            Decision::Stop(Some(RetryDenied::Deadline))
        );
        assert_eq!(
            policy.after_error(&refused, &ctx(1, true)),
            Decision::Stop(Some(RetryDenied::BudgetExhausted))
        );
    }

    #[test]
    fn statuses_and_grpc_codes_are_opt_in_and_retry_after_is_capped() {
        let policy = RetryPolicy::new().no_budget();
        let mut headers = HeaderMap::new();
        assert_eq!(
            policy.after_response(StatusCode::SERVICE_UNAVAILABLE, &headers, &ctx(1, true)),
            Decision::Stop(None)
        );
        let policy = policy
            .retry_on(StatusCode::SERVICE_UNAVAILABLE)
            .retry_on(crate::GrpcCode::Unavailable);
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(
            policy.after_response(StatusCode::SERVICE_UNAVAILABLE, &headers, &ctx(1, true)),
            Decision::Retry(Duration::from_secs(2))
        );
        headers.insert("retry-after", "3600".parse().unwrap());
        assert_eq!(
            policy.after_response(StatusCode::SERVICE_UNAVAILABLE, &headers, &ctx(1, true)),
            Decision::Stop(None)
        );
        assert_eq!(
            policy.after_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                &ctx(1, false)
            ),
            Decision::Stop(None)
        );
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(matches!(
            policy.after_response(StatusCode::OK, &grpc, &ctx(1, true)),
            Decision::Retry(_)
        ));
        grpc.insert("grpc-status", "13".parse().unwrap());
        assert_eq!(
            policy.after_response(StatusCode::OK, &grpc, &ctx(1, true)),
            Decision::Stop(None)
        );
    }

    fn unavailable(pushback: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "14".parse().unwrap());
        if let Some(p) = pushback {
            headers.insert("grpc-retry-pushback-ms", p.parse().unwrap());
        }
        headers
    }

    fn grpc_policy() -> RetryPolicy {
        RetryPolicy::new()
            .no_budget()
            .backoff(Duration::from_secs(10), Duration::from_secs(10))
            .retry_on(crate::GrpcCode::Unavailable)
    }

    #[test]
    fn a_pushback_is_the_exact_wait_over_backoff_and_retry_after() {
        let policy = grpc_policy();
        let mut headers = unavailable(Some("120"));
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(
            policy.after_response(StatusCode::OK, &headers, &ctx(1, true)),
            Decision::Retry(Duration::from_millis(120))
        );
        assert_eq!(
            policy.after_response(StatusCode::OK, &unavailable(Some("0")), &ctx(1, true)),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            policy.after_response(StatusCode::OK, &unavailable(Some("3000")), &ctx(1, true)),
            Decision::Retry(Duration::from_secs(3)),
            "up to max_retry_after"
        );
        assert_eq!(
            policy.after_response(StatusCode::OK, &unavailable(Some("3001")), &ctx(1, true)),
            Decision::Stop(None),
            "past max_retry_after: the answer, at once"
        );
        assert_eq!(
            policy.after_response(StatusCode::OK, &unavailable(Some("10")), &ctx(3, true)),
            Decision::Stop(None),
            "not past max_attempts"
        );
    }

    #[test]
    fn a_negative_or_malformed_pushback_stops_and_none_makes_an_answer_retryable() {
        let policy = grpc_policy();
        for stop in ["-1", "soon", "", "1.5"] {
            assert_eq!(
                policy.after_response(StatusCode::OK, &unavailable(Some(stop)), &ctx(1, true)),
                Decision::Stop(None),
                "{stop:?}"
            );
        }
        let mut internal = unavailable(Some("10"));
        internal.insert("grpc-status", "13".parse().unwrap());
        assert_eq!(
            policy.after_response(StatusCode::OK, &internal, &ctx(1, true)),
            Decision::Stop(None),
            "INTERNAL is not retried, pushback or not"
        );
    }

    #[test]
    fn after_a_pushback_the_backoff_starts_again_from_its_first_step() {
        let policy = RetryPolicy::new()
            .no_budget()
            .max_attempts(10)
            .backoff(Duration::from_millis(100), Duration::from_secs(10));
        let refused = GatewayError::new(ErrorKind::ConnectionRefused);
        let reset = Attempt {
            backoff_from: 3,
            ..ctx(4, true)
        };
        assert_eq!(reset.retry(), 1);
        let delays = |ctx: &Attempt<'_>| -> Vec<Duration> {
            (0..200)
                .map(|_| match policy.after_error(&refused, ctx) {
                    Decision::Retry(d) => d,
                    stop @ Decision::Stop(_) => panic!("{stop:?}"),
                })
                .collect()
        };
        let first_step = Duration::from_millis(100);
        assert!(delays(&reset).iter().all(|d| *d <= first_step));
        // Without the reset the fourth retry waits up to 800 ms: some of 200
        // draws fall past the first step (all would with probability 8^-200).
        assert!(delays(&ctx(4, true)).iter().any(|d| *d > first_step));
    }

    #[test]
    fn the_throttle_counts_every_attempt_and_stops_retries_at_half() {
        let throttle = RetryThrottle::new(4, 1.0);
        let policy = grpc_policy().no_backoff().throttle(throttle.clone());
        let ok = {
            let mut h = HeaderMap::new();
            h.insert("grpc-status", "0".parse().unwrap());
            h
        };
        // 4 tokens: the first failure leaves 3 (> 2), retried; the second 2, not.
        assert!(matches!(
            policy.after_response(StatusCode::OK, &unavailable(None), &ctx(1, true)),
            Decision::Retry(_)
        ));
        assert_eq!(
            policy.after_response(StatusCode::OK, &unavailable(None), &ctx(1, true)),
            Decision::Stop(None)
        );
        assert_eq!(throttle.milli_tokens(), 2000);
        // A failure counts even when nothing else would let it be retried.
        let _ = policy.after_response(StatusCode::OK, &unavailable(None), &ctx(1, false));
        assert_eq!(throttle.milli_tokens(), 1000);
        // Transport failures the policy retries count too, and are denied as the
        // budget is.
        let refused = GatewayError::new(ErrorKind::ConnectionRefused);
        assert_eq!(
            policy.after_error(&refused, &ctx(1, true)),
            Decision::Stop(Some(RetryDenied::BudgetExhausted))
        );
        assert_eq!(throttle.milli_tokens(), 0);
        // Two successes: 2, still not above half; a third: 3, retries resume.
        for _ in 0..2 {
            let _ = policy.after_response(StatusCode::OK, &ok, &ctx(1, true));
        }
        assert!(!throttle.allows());
        let _ = policy.after_response(StatusCode::OK, &ok, &ctx(1, true));
        assert!(
            matches!(
                policy.after_error(&refused, &ctx(1, true)),
                Decision::Stop(Some(RetryDenied::BudgetExhausted))
            ),
            "3 - 1 = 2: this failure is itself counted first"
        );
        for _ in 0..2 {
            let _ = policy.after_response(StatusCode::OK, &ok, &ctx(1, true));
        }
        assert!(
            matches!(
                policy.after_error(&refused, &ctx(1, true)),
                Decision::Retry(_)
            ),
            "4 - 1 = 3 > 2"
        );
        // A failure the policy does not retry is no failure to the throttle.
        let tokens = throttle.milli_tokens();
        let tls = GatewayError::new(ErrorKind::TlsCertificateError);
        let _ = policy.after_error(&tls, &ctx(1, true));
        assert_eq!(throttle.milli_tokens(), tokens);
    }
}
