//! The decision after each attempt: try again (after how long), or stop (and why).

use super::{RetryPolicy, parse_retry_after};
use crate::error::{GatewayError, RequestSent, RetryDefault, RetryDenied};
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
        if err.request_sent() != RequestSent::No && !ctx.idempotent {
            return Decision::Stop(Some(RetryDenied::MaybeSent));
        }
        self.if_allowed(ctx, self.backoff.delay(ctx.attempts))
    }

    /// Decides what to do after the upstream answered.
    pub(super) fn after_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        ctx: &Attempt<'_>,
    ) -> Decision {
        let wanted = !self.outcomes.counts_no_answer()
            && self.outcomes.counts(&Outcome::Response { status, headers });
        // The upstream received the request: only idempotent ones go again.
        if !wanted || !ctx.idempotent {
            return Decision::Stop(None);
        }
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()));
        let delay = match retry_after {
            Some(wait) if wait > self.max_retry_after => return Decision::Stop(None),
            Some(wait) => wait,
            None => self.backoff.delay(ctx.attempts),
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
        if self.budget.as_ref().is_some_and(|b| !b.withdraw()) {
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
    use crate::retry::RetryBudget;

    fn ctx(attempts: u32, idempotent: bool) -> Attempt<'static> {
        Attempt {
            attempts,
            idempotent,
            replayable: &|| true,
            deadline: None,
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
}
