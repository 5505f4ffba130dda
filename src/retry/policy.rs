use super::{Backoff, HedgePolicy, RetryBudget, RetryThrottle};
use crate::classify::Classifier;
use crate::error::KindSet;
use crate::outcome::{OnOff, Outcomes};
use http::request::Parts;
use http::{HeaderName, Method};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The `Idempotency-Key` request header (IETF httpapi draft).
///
/// ```
/// use tower_bad_gateway::retry::{IDEMPOTENCY_KEY, RetryPolicy};
/// let req = http::Request::post("/orders").header(IDEMPOTENCY_KEY, "8e03978e").body(()).unwrap();
/// assert!(RetryPolicy::new().idempotency_key(true).is_idempotent(&req.into_parts().0));
/// ```
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

type Idempotent = dyn Fn(&Parts) -> bool + Send + Sync;

/// When and how [`Retry`](super::Retry) tries again.
///
/// A request is retried only when **all** of these hold:
///
/// 1. the outcome is in the sets given to [`retry_on`](Self::retry_on) (the
///    defaults: the failures listed there) and in none given to
///    [`no_retry_on`](Self::no_retry_on): a failure's [`ErrorKind`](crate::ErrorKind), an upstream
///    answer's status or gRPC code, or a predicate (see [`Outcomes`]);
/// 2. it is safe: the request provably did not reach the upstream
///    ([`RequestSent::No`](crate::RequestSent::No): refused or timed-out connections, refused HTTP/2
///    streams), or it is idempotent: its method is (`GET`, `HEAD`, `OPTIONS`,
///    `TRACE`, `PUT`, `DELETE`; RFC 9110 §9.2.2), or, when opted in, it carries an
///    `Idempotency-Key`, or [you declare it so](Self::idempotent_if);
/// 3. fewer than [`max_attempts`](Self::max_attempts) attempts were made;
/// 4. its body can be sent again (it fit the [replay buffer](Self::max_replay_body));
/// 5. a [`Deadline`](crate::deadline::Deadline), if set, leaves time after the wait;
/// 6. the [budget](Self::budget) has a retry to spend, and the
///    [throttle](Self::throttle), if set, allows one (gRFC A6).
///
/// A `POST` that may have reached the upstream is never sent twice.
///
/// # gRPC's retry protocol (gRFC A6)
///
/// - **Pushback.** An answer retried for its `grpc-status` (or status) may carry
///   the server's `grpc-retry-pushback-ms`. A non-negative integer is the wait
///   before the next attempt, exactly, instead of the backoff (and of any
///   `Retry-After`), and the backoff after it starts again from its first step;
///   a wait over [`max_retry_after`](Self::max_retry_after) returns the answer at
///   once. A negative or malformed value means do not retry: the answer is
///   returned. Pushback never makes an answer retryable that the policy does not
///   retry.
/// - **Attempts.** Every further attempt of a gRPC call (`content-type:
///   application/grpc...`) carries `grpc-previous-rpc-attempts`: 1 on the second
///   attempt, 2 on the third (added to the caller's own count, when it sent
///   one). The first attempt goes as it came.
/// - **Throttling.** [`throttle`](Self::throttle) with a [`RetryThrottle`]: A6's
///   `retryThrottling` (`maxTokens`, `tokenRatio`).
///
/// ```
/// use tower_bad_gateway::retry::{RetryPolicy, RetryThrottle};
/// use tower_bad_gateway::GrpcCode;
///
/// // A6's `retryPolicy` for idempotent methods, and its `retryThrottling`.
/// let grpc = RetryPolicy::new()
///     .max_attempts(4)
///     .retry_on(GrpcCode::Unavailable)
///     .idempotent_if(|req| req.uri.path().starts_with("/catalog.Catalog/Get"))
///     .throttle(RetryThrottle::new(10, 0.1));
/// # let _ = grpc;
/// ```
///
/// ```
/// use tower_bad_gateway::retry::{RetryBudget, RetryPolicy};
/// use tower_bad_gateway::{ErrorKind, GrpcCode};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::new()
///     .max_attempts(4)
///     .retry_on(ErrorKind::ResponseHeaderTimeout)  // opt-in: idempotent requests only
///     .retry_on(StatusCode::SERVICE_UNAVAILABLE)   // honours Retry-After
///     .retry_on(GrpcCode::Unavailable)
///     .idempotency_key(true)
///     .backoff(Duration::from_millis(50), Duration::from_secs(1))
///     .budget(RetryBudget::new(0.1, 5, Duration::from_secs(10)));
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(super) outcomes: OnOff,
    idempotency_key: bool,
    idempotent_if: Vec<Arc<Idempotent>>,
    pub(super) backoff: Backoff,
    pub(super) max_retry_after: Duration,
    pub(super) budget: Option<RetryBudget>,
    pub(crate) throttle: Option<RetryThrottle>,
    pub(crate) max_replay_body: u64,
    pub(crate) classifier: Arc<Classifier>,
    /// Every layer below holds the same classifier (a `GatewayLayer`'s stack):
    /// requests need not carry it.
    pub(crate) stack_shares_classifier: bool,
    /// The header the retry event reads the request id from.
    pub(crate) request_id_header: http::HeaderName,
    /// Hedging, when opted in.
    pub(super) hedge: Option<HedgePolicy>,
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
    /// requests plus 10 retries a second, and no [throttle](Self::throttle); bodies
    /// replayed up to 64 KiB.
    pub fn new() -> Self {
        Self {
            max_attempts: 3,
            outcomes: OnOff::with_defaults(Outcomes::of_kinds(KindSet::defaults())),
            idempotency_key: false,
            idempotent_if: Vec::new(),
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(3),
            budget: Some(RetryBudget::default()),
            throttle: None,
            max_replay_body: 64 * 1024,
            classifier: Arc::default(),
            stack_shares_classifier: false,
            request_id_header: crate::render::X_REQUEST_ID,
            hedge: None,
        }
    }

    /// Reads the request id the retry event logs from this header (default
    /// `x-request-id`; a [`GatewayLayer`](crate::GatewayLayer) sets its renderer's).
    pub fn request_id_header(mut self, name: http::HeaderName) -> Self {
        self.request_id_header = name;
        self
    }

    /// Attempts in all, the first included (default 3; at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Retries these outcomes (still subject to the safety rules): failures of a
    /// kind, answers with a status or a gRPC code, or what a predicate says (see
    /// [`Outcomes`]). Sets accumulate.
    ///
    /// The failures retried by default are the taxonomy's
    /// [`retry_default`](crate::ErrorKind::retry_default). On: `DnsTimeout`,
    /// `ConnectionRefused`, `ConnectionTimeout`, `DestinationUnreachable`,
    /// `RefusedStream` and `ConnectionLimitReached` (none of which reached the
    /// upstream, so any method), and `ConnectionTerminated`, `ResponseIncomplete`
    /// and `WriteTimeout` (idempotent requests only, unless the request was provably
    /// never dispatched). Off, opt in: the others, e.g. `ResponseHeaderTimeout`.
    /// `ReadTimeout` and `ProxyConfigurationError` are never retried, whatever the
    /// sets say. No answer is retried by default.
    ///
    /// An answer is retried only for idempotent requests (the upstream received
    /// it); its `Retry-After` is honoured up to [`max_retry_after`](Self::max_retry_after).
    /// gRPC calls are `POST`s: declare the methods that are safe with
    /// [`idempotent_if`](Self::idempotent_if).
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryPolicy;
    /// use tower_bad_gateway::{ErrorKind, GrpcCode, Outcome, Outcomes};
    ///
    /// let policy = RetryPolicy::new()
    ///     .retry_on([502, 503])
    ///     .retry_on(GrpcCode::Unavailable)
    ///     .retry_on(Outcomes::new().when(|outcome| match outcome {
    ///         Outcome::Response { headers, .. } => headers.contains_key("x-retry-me"),
    ///         _ => false,
    ///     }));
    /// # let _ = policy;
    /// ```
    pub fn retry_on(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.outcomes = self.outcomes.on(outcomes);
        self
    }

    /// Never retries these outcomes, whatever else says so and whatever the order
    /// of the calls.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryPolicy;
    /// use tower_bad_gateway::ErrorKind;
    /// let policy = RetryPolicy::new().no_retry_on(ErrorKind::ConnectionTerminated);
    /// # let _ = policy;
    /// ```
    pub fn no_retry_on(mut self, outcomes: impl Into<Outcomes>) -> Self {
        self.outcomes = self.outcomes.off(outcomes);
        self
    }

    /// Treats requests carrying an `Idempotency-Key` header as idempotent.
    pub fn idempotency_key(mut self, honour: bool) -> Self {
        self.idempotency_key = honour;
        self
    }

    /// Declares more requests idempotent, e.g. gRPC methods by path. Declarations
    /// accumulate: a request is idempotent when any of them says so.
    ///
    /// ```
    /// use tower_bad_gateway::retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::new()
    ///     .retry_on(tower_bad_gateway::GrpcCode::Unavailable)
    ///     .idempotent_if(|req| req.uri.path().starts_with("/catalog.Catalog/Get"));
    /// # let _ = policy;
    /// ```
    pub fn idempotent_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.idempotent_if.push(Arc::new(f));
        self
    }

    /// Full-jitter exponential backoff from `base`, capped at `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Backoff::new(base, cap);
        self
    }

    /// Retries at once, without waiting ([`Backoff::no_backoff`]). For tests, and
    /// for upstreams that are never overloaded by a retry.
    pub fn no_backoff(mut self) -> Self {
        self.backoff = Backoff::no_backoff();
        self
    }

    /// The longest `Retry-After` (or gRPC `grpc-retry-pushback-ms`) waited for
    /// (default 3 s); longer ones return the upstream's answer at once.
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

    /// Throttles retries as gRPC does (gRFC A6): `throttle`'s token count falls
    /// by one with every failure the policy would retry and rises by its ratio
    /// with every success, and retries go only while it is above half of its
    /// maximum. Shared by every clone of the throttle (so it can also serve
    /// another policy, or a hedging layer, for the same upstream); on top of
    /// the [budget](Self::budget), which still applies. No throttle by default.
    ///
    /// ```
    /// use tower_bad_gateway::retry::{RetryPolicy, RetryThrottle};
    /// use tower_bad_gateway::GrpcCode;
    ///
    /// let throttle = RetryThrottle::new(10, 0.1);
    /// let policy = RetryPolicy::new()
    ///     .retry_on(GrpcCode::Unavailable)
    ///     .throttle(throttle.clone());
    /// assert!(throttle.allows());
    /// # let _ = policy;
    /// ```
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.throttle = Some(throttle);
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

    /// Hedges idempotent requests by `policy`: after its delay, another attempt
    /// goes to another endpoint while the first is still waiting, and the first
    /// acceptable answer wins. Off by default; see [`HedgePolicy`].
    ///
    /// ```
    /// use tower_bad_gateway::retry::{HedgePolicy, RetryPolicy};
    /// use std::time::Duration;
    /// let policy = RetryPolicy::new().hedge(HedgePolicy::after(Duration::from_millis(50)));
    /// # let _ = policy;
    /// ```
    pub fn hedge(mut self, policy: HedgePolicy) -> Self {
        self.hedge = Some(policy);
        self
    }

    /// The most attempts any request may take: retries and hedges.
    pub(super) fn attempt_cap(&self) -> u32 {
        match &self.hedge {
            Some(hedge) => self.max_attempts.max(hedge.max_attempts),
            None => self.max_attempts,
        }
    }

    /// Classifies failures with `classifier`, here and in the layers below (an
    /// [`UpstreamsLayer`](crate::upstreams::UpstreamsLayer) judging endpoints). A
    /// classifier set further out, on a [`BadGatewayLayer`](crate::BadGatewayLayer),
    /// reaches this layer with each request and its rules come first; there is no
    /// need to give both the same one.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// The same policy, retrying failures of `kind` or not, over what it said.
    pub(crate) fn force_kind(mut self, kind: crate::error::ErrorKind, on: bool) -> Self {
        self.outcomes = self.outcomes.force_kind(kind, on);
        self
    }

    /// The same policy, classifying with `classifier` shared as it is.
    pub(crate) fn shared_classifier(mut self, classifier: Arc<Classifier>) -> Self {
        self.classifier = classifier;
        self.stack_shares_classifier = true;
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
            || self.idempotent_if.iter().any(|f| f(request))
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("outcomes", &self.outcomes)
            .field("idempotency_key", &self.idempotency_key)
            .field("idempotent_if", &self.idempotent_if.len())
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("budget", &self.budget)
            .field("throttle", &self.throttle)
            .field("max_replay_body", &self.max_replay_body)
            .field("hedge", &self.hedge)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn idempotent_if_declarations_accumulate() {
        let policy = RetryPolicy::new()
            .idempotent_if(|p| p.uri.path() == "/a")
            .idempotent_if(|p| p.uri.path() == "/b");
        for (path, idempotent) in [("/a", true), ("/b", true), ("/c", false)] {
            let req = http::Request::post(path).body(()).unwrap().into_parts().0;
            assert_eq!(policy.is_idempotent(&req), idempotent, "{path}");
        }
    }
}
