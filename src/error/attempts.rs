use std::fmt;

/// Why a failed request was not tried again (set by the
/// [`RetryLayer`](crate::retry::RetryLayer) on the error it gives up with).
///
/// ```
/// use tower_bad_gateway::{ErrorKind, GatewayError, RetryDenied};
/// let err = GatewayError::new(ErrorKind::ConnectionTerminated).with_retry_denied(RetryDenied::MaybeSent);
/// assert_eq!(err.retry_denied().map(RetryDenied::as_str), Some("maybe_sent"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryDenied {
    /// The failure is not one the policy retries.
    NotRetryable,
    /// The request may have reached the upstream and its method is not idempotent.
    MaybeSent,
    /// The policy's maximum number of attempts was reached.
    AttemptsExhausted,
    /// The retry budget was spent.
    BudgetExhausted,
    /// The deadline leaves no time for another attempt.
    Deadline,
    /// The request body cannot be sent again (it outgrew the replay buffer, or failed).
    BodyNotReplayable,
}

impl RetryDenied {
    /// A lowercase name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetryDenied::NotRetryable => "not_retryable",
            RetryDenied::MaybeSent => "maybe_sent",
            RetryDenied::AttemptsExhausted => "attempts_exhausted",
            RetryDenied::BudgetExhausted => "budget_exhausted",
            RetryDenied::Deadline => "deadline",
            RetryDenied::BodyNotReplayable => "body_not_replayable",
        }
    }
}

impl fmt::Display for RetryDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many attempts an exchange took.
///
/// A [`RetryLayer`](crate::retry::RetryLayer) puts it in the extensions of an
/// upstream answer that took more than one attempt, and of every synthetic answer;
/// an answer without it took one attempt. [`Attempts::of`] reads it either way, so a
/// first-try success costs no allocation.
///
/// ```
/// use tower_bad_gateway::Attempts;
/// let mut res = http::Response::new(());
/// assert_eq!(Attempts::of(&res), 1);
/// res.extensions_mut().insert(Attempts(2));
/// assert_eq!(Attempts::of(&res), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts a response took: its `Attempts` extension, or 1 without one.
    pub fn of<B>(response: &http::Response<B>) -> u32 {
        response.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
}
