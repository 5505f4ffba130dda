use super::{Backoff, RetryBudget, parse_retry_after};
use crate::classify::Classifier;
use crate::error::{ErrorKind, GatewayError, RequestSent, RetryDenied};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The `Idempotency-Key` request header (IETF httpapi draft).
///
/// ```
/// use tower_bad_gateway::retry::{IDEMPOTENCY_KEY, RetryPolicy};
/// let req = http::Request::post("/orders").header(IDEMPOTENCY_KEY, "8e03978e").body(()).unwrap();
/// assert!(RetryPolicy::new().idempotency_key(true).is_idempotent(&req.into_parts().0));
/// ```
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What an attempt ended with, as a custom retry condition sees it.
///
/// ```
/// use tower_bad_gateway::retry::{Outcome, RetryPolicy};
/// use tower_bad_gateway::ErrorKind;
///
/// // Also retry a refused stream's cousin: an upstream that says it is draining.
/// let policy = RetryPolicy::new().retry_if(|outcome| match outcome {
///     Outcome::Response { headers, .. } => headers.get("x-draining").is_some(),
///     Outcome::Error(err) => err.kind() == ErrorKind::ConnectionTerminated,
///     _ => false,
/// });
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The upstream answered.
    Response {
        /// Its status.
        status: StatusCode,
        /// Its headers (a gRPC trailers-only answer has `grpc-status` here).
        headers: &'a HeaderMap,
    },
    /// The call failed.
    Error(&'a GatewayError),
}

type Condition = dyn Fn(&Outcome<'_>) -> bool + Send + Sync;
type Idempotent = dyn Fn(&Parts) -> bool + Send + Sync;

/// When and how [`Retry`](super::Retry) tries again.
///
/// A request is retried only when **all** of these hold:
///
/// 1. a condition matches: the failure's [`ErrorKind`] is enabled (see
///    [`retry_on`](Self::retry_on) for the defaults), or the upstream answered with an
///    opted-in status or gRPC code, or a [custom condition](Self::retry_if) says so;
/// 2. it is safe: the request provably did not reach the upstream
///    ([`RequestSent::No`]: refused or timed-out connections, refused HTTP/2
///    streams), or it is idempotent: its method is (`GET`, `HEAD`, `OPTIONS`,
///    `TRACE`, `PUT`, `DELETE`; RFC 9110 §9.2.2), or, when opted in, it carries an
///    `Idempotency-Key`, or [you declare it so](Self::idempotent_if);
/// 3. fewer than [`max_attempts`](Self::max_attempts) attempts were made;
/// 4. its body can be sent again (it fit the [replay buffer](Self::max_replay_body));
/// 5. a [`Deadline`](crate::timeout::Deadline), if set, leaves time after the wait;
/// 6. the [budget](Self::budget) has a retry to spend.
///
/// A `POST` that may have reached the upstream is never sent twice.
///
/// ```
/// use tower_bad_gateway::retry::{RetryBudget, RetryPolicy};
/// use tower_bad_gateway::ErrorKind;
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::new()
///     .max_attempts(4)
///     .retry_on(ErrorKind::ResponseHeaderTimeout)        // opt-in: idempotent requests only
///     .retry_on_status(StatusCode::SERVICE_UNAVAILABLE)  // honours Retry-After
///     .retry_on_grpc(14)                                 // UNAVAILABLE
///     .idempotency_key(true)
///     .backoff(Duration::from_millis(50), Duration::from_secs(1))
///     .budget(RetryBudget::new(0.1, 5, Duration::from_secs(10)));
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    kinds: u64,
    statuses: Vec<StatusCode>,
    grpc_codes: u32,
    condition: Option<Arc<Condition>>,
    idempotency_key: bool,
    idempotent_if: Option<Arc<Idempotent>>,
    backoff: Backoff,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    pub(crate) max_replay_body: u64,
    pub(crate) classifier: Classifier,
}

const DEFAULT_KINDS: &[ErrorKind] = &[
    ErrorKind::DnsTimeout,
    ErrorKind::ConnectionRefused,
    ErrorKind::ConnectionTimeout,
    ErrorKind::DestinationUnreachable,
    ErrorKind::ConnectionTerminated,
    ErrorKind::RefusedStream,
    ErrorKind::ResponseIncomplete,
    ErrorKind::WriteTimeout,
    ErrorKind::ConnectionLimitReached,
];

/// Kinds that are never retried: a body timeout happens after the answer began, and
/// a misconfigured gateway fails the same way every time.
const NEVER: &[ErrorKind] = &[ErrorKind::ReadTimeout, ErrorKind::ProxyConfigurationError];

const fn bit(kind: ErrorKind) -> u64 {
    1 << (kind as u32)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// The default policy: 3 attempts in all; retry the kinds listed under
    /// [`retry_on`](Self::retry_on); no status or gRPC retries; full-jitter backoff
    /// from 25 ms to 250 ms; `Retry-After` honoured up to 3 s; a budget of 20% of
    /// requests plus 10 retries a second; bodies replayed up to 64 KiB.
    pub fn new() -> Self {
        Self {
            max_attempts: 3,
            kinds: DEFAULT_KINDS.iter().fold(0, |set, k| set | bit(*k)),
            statuses: Vec::new(),
            grpc_codes: 0,
            condition: None,
            idempotency_key: false,
            idempotent_if: None,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(3),
            budget: Some(RetryBudget::default()),
            max_replay_body: 64 * 1024,
            classifier: Classifier::new(),
        }
    }

    /// Attempts in all, the first included (default 3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Retries failures of this kind (still subject to the safety rules).
    ///
    /// On by default: `DnsTimeout`, `ConnectionRefused`, `ConnectionTimeout`,
    /// `DestinationUnreachable`, `RefusedStream` and `ConnectionLimitReached` (none
    /// of which reached the upstream, so any method), and `ConnectionTerminated`,
    /// `ResponseIncomplete` and `WriteTimeout` (idempotent requests only, unless
    /// the request was provably never dispatched). Off by default, opt in:
    /// `ResponseHeaderTimeout`. `ReadTimeout` and `ProxyConfigurationError` are never
    /// retried: this call is ignored for them.
    pub fn retry_on(mut self, kind: ErrorKind) -> Self {
        if !NEVER.contains(&kind) {
            self.kinds |= bit(kind);
        }
        self
    }

    /// Stops retrying failures of this kind.
    pub fn no_retry_on(mut self, kind: ErrorKind) -> Self {
        self.kinds &= !bit(kind);
        self
    }

    /// Retries upstream answers with this status (for idempotent requests: the
    /// upstream received it). `Retry-After` is honoured up to
    /// [`max_retry_after`](Self::max_retry_after).
    pub fn retry_on_status(mut self, status: StatusCode) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Retries gRPC answers whose `grpc-status` (in a trailers-only answer) is
    /// `code`, e.g. 14 (`UNAVAILABLE`). gRPC calls are `POST`s: declare the
    /// methods that are safe with [`idempotent_if`](Self::idempotent_if).
    pub fn retry_on_grpc(mut self, code: u8) -> Self {
        if code <= 16 {
            self.grpc_codes |= 1 << code;
        }
        self
    }

    /// Adds a custom retry condition (the safety rules, attempts, deadline and
    /// budget still apply).
    ///
    /// ```
    /// use tower_bad_gateway::retry::{Outcome, RetryPolicy};
    ///
    /// let policy = RetryPolicy::new().retry_if(|outcome| match outcome {
    ///     Outcome::Response { headers, .. } => headers.contains_key("x-retry-me"),
    ///     _ => false,
    /// });
    /// # let _ = policy;
    /// ```
    pub fn retry_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Outcome<'_>) -> bool + Send + Sync + 'static,
    {
        self.condition = Some(Arc::new(f));
        self
    }

    /// Treats requests carrying an `Idempotency-Key` header as idempotent.
    pub fn idempotency_key(mut self, honour: bool) -> Self {
        self.idempotency_key = honour;
        self
    }

    /// Declares more requests idempotent, e.g. gRPC methods by path.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::new()
    ///     .retry_on_grpc(14)
    ///     .idempotent_if(|req| req.uri.path().starts_with("/catalog.Catalog/Get"));
    /// # let _ = policy;
    /// ```
    pub fn idempotent_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.idempotent_if = Some(Arc::new(f));
        self
    }

    /// Full-jitter exponential backoff from `base`, capped at `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff::new(base, cap);
        self
    }

    /// The longest `Retry-After` waited for (default 3 s); longer ones return the
    /// upstream's answer at once.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Shares `budget` between the services of this policy (and whoever else holds
    /// a clone of it).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries without a budget: every request may be retried up to
    /// `max_attempts`. Under an outage that multiplies the load on the upstream.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// The largest request body kept for replays (default 64 KiB). A larger body is
    /// sent once and not retried once any of it was sent.
    pub fn max_replay_body(mut self, bytes: u64) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// Classifies failures with `classifier` (use the same as your
    /// [`BadGatewayLayer`](crate::BadGatewayLayer)'s).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Whether the request may be sent twice: RFC 9110 §9.2.2, plus the opt-ins.
    pub fn is_idempotent(&self, request: &Parts) -> bool {
        matches!(
            request.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || (self.idempotency_key
            && request
                .headers
                .get(IDEMPOTENCY_KEY)
                .is_some_and(|v| !v.is_empty()))
            || self.idempotent_if.as_ref().is_some_and(|f| f(request))
    }

    pub(crate) fn deposit_at(&self, now: Instant) {
        if let Some(budget) = &self.budget {
            budget.deposit_at(now);
        }
    }

    /// Decides what to do after a failed attempt.
    pub(crate) fn after_error(&self, err: &GatewayError, ctx: &Attempt) -> Decision {
        let wanted = self.kinds & bit(err.kind()) != 0 && !NEVER.contains(&err.kind())
            || self
                .condition
                .as_ref()
                .is_some_and(|f| f(&Outcome::Error(err)));
        if !wanted {
            return Decision::Stop(Some(RetryDenied::NotRetryable));
        }
        if err.request_sent() != RequestSent::No && !ctx.idempotent {
            return Decision::Stop(Some(RetryDenied::MaybeSent));
        }
        self.if_allowed(ctx, self.backoff.delay(ctx.attempts))
    }

    /// Decides what to do after the upstream answered.
    pub(crate) fn after_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        ctx: &Attempt,
    ) -> Decision {
        let by_status = self.statuses.contains(&status);
        let wanted = by_status
            || (self.grpc_codes != 0 && self.grpc_code_matches(headers))
            || self
                .condition
                .as_ref()
                .is_some_and(|f| f(&Outcome::Response { status, headers }));
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
            retry => retry,
        }
    }

    fn grpc_code_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(GRPC_STATUS)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.parse::<u8>().ok())
            .is_some_and(|code| code <= 16 && self.grpc_codes & (1 << code) != 0)
    }

    /// The limits every retry must pass; the budget is spent only when all others pass.
    fn if_allowed(&self, ctx: &Attempt, delay: Duration) -> Decision {
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
pub(crate) struct Attempt<'a> {
    /// Attempts made so far.
    pub(crate) attempts: u32,
    pub(crate) idempotent: bool,
    /// Whether the body can be sent again: asked only when a retry is considered
    /// (for a buffered body it takes a lock).
    pub(crate) replayable: &'a dyn Fn() -> bool,
    pub(crate) deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop(Option<RetryDenied>),
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<_> = ErrorKind::ALL
            .iter()
            .filter(|k| self.kinds & bit(**k) != 0)
            .collect();
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("kinds", &kinds)
            .field("statuses", &self.statuses)
            .field("grpc_codes", &format_args!("{:#b}", self.grpc_codes))
            .field("condition", &self.condition.is_some())
            .field("idempotency_key", &self.idempotency_key)
            .field("idempotent_if", &self.idempotent_if.is_some())
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("budget", &self.budget)
            .field("max_replay_body", &self.max_replay_body)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(attempts: u32, idempotent: bool) -> Attempt<'static> {
        Attempt {
            attempts,
            idempotent,
            replayable: &|| true,
            deadline: None,
        }
    }

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn rfc_9110_idempotent_methods_and_the_opt_ins() {
        let policy = RetryPolicy::new();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(policy.is_idempotent(&parts(m, &[])));
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!policy.is_idempotent(&parts(m, &[])));
        }
        let keyed = parts(Method::POST, &[("idempotency-key", "8e03978e")]);
        assert!(
            !policy.is_idempotent(&keyed),
            "the key counts only when opted in"
        );
        assert!(policy.clone().idempotency_key(true).is_idempotent(&keyed));
        assert!(
            !policy
                .clone()
                .idempotency_key(true)
                .is_idempotent(&parts(Method::POST, &[("idempotency-key", "")]))
        );
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
            .retry_on_status(StatusCode::SERVICE_UNAVAILABLE)
            .retry_on_grpc(14);
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
