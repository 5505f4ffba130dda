//! Which outcomes of an attempt count: one set type, [`Outcomes`], for every
//! policy that asks the question.
//!
//! An attempt ends with an [`Outcome`]: the upstream answered, or the call failed
//! with a [`GatewayError`]. Each policy holds sets of outcomes and one verb for
//! them, with `no_` in front to take outcomes out:
//!
//! | policy | counts | verbs |
//! |---|---|---|
//! | [`RetryPolicy`](crate::retry::RetryPolicy) | outcomes tried again | `retry_on`, `no_retry_on` |
//! | [`HealthPolicy`](crate::upstreams::HealthPolicy) | outcomes held against the endpoint | `count_on`, `no_count_on` |
//! | [`ResponsePolicy`](crate::ResponsePolicy) | answers rejected, answers intercepted | `reject_on`, `intercept_on` |
//!
//! A set holds error [kinds](ErrorKind), statuses (a [`StatusCode`], or a number),
//! gRPC [codes](GrpcCode) (read from a trailers-only answer's `grpc-status`), and
//! predicates over the outcome. Anything that converts into a set can be given
//! where a set is taken: a kind, a status, a code, or an array of one of them.
//!
//! `no_` always wins, whatever the order of the calls: an outcome counts when it is
//! in a set given to the verb (or in the policy's defaults) and in none given to its
//! `no_` form, so the order of the calls never changes the result.
//!
//! ```
//! use tower_bad_gateway::retry::RetryPolicy;
//! use tower_bad_gateway::upstreams::HealthPolicy;
//! use tower_bad_gateway::{ErrorKind, GrpcCode, Outcome, Outcomes, ResponsePolicy};
//!
//! let retry = RetryPolicy::new()
//!     .retry_on(ErrorKind::ResponseHeaderTimeout)
//!     .retry_on([502, 503])
//!     .retry_on(GrpcCode::Unavailable)
//!     .no_retry_on(ErrorKind::ConnectionTerminated);
//! let health = HealthPolicy::new()
//!     .count_on(Outcomes::new().status(503).grpc(GrpcCode::Unavailable))
//!     .no_count_on(ErrorKind::ResponseHeaderTimeout);
//! let answers = ResponsePolicy::new()
//!     .reject_on(Outcomes::new().when(|outcome| match outcome {
//!         Outcome::Response { headers, .. } => headers.contains_key("x-debug-trace"),
//!         _ => false,
//!     }))
//!     .intercept_statuses([500, 502, 503]);
//! # let _ = (retry, health, answers);
//! ```

mod on_off;
mod status;

pub(crate) use self::on_off::OnOff;
pub use self::status::IntoStatus;

use self::status::StatusSet;
use crate::error::{CodeSet, ErrorKind, ErrorStatus, GatewayError, GrpcCode, KindSet};
use http::{HeaderMap, StatusCode};
use std::fmt;
use std::sync::Arc;

/// What an attempt ended with, as a set's predicate sees it.
///
/// ```
/// use tower_bad_gateway::{ErrorKind, Outcome, Outcomes};
///
/// // Also count an upstream that says it is draining.
/// let draining = Outcomes::new().when(|outcome| match outcome {
///     Outcome::Response { headers, .. } => headers.contains_key("x-draining"),
///     Outcome::Error(err) => err.kind() == ErrorKind::ConnectionTerminated,
///     _ => false,
/// });
/// # let _ = draining;
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

type Predicate = dyn Fn(&Outcome<'_>) -> bool + Send + Sync;

/// A set of outcomes: error kinds, statuses, gRPC codes and predicates. See the
/// [module docs](self).
///
/// ```
/// use tower_bad_gateway::{ErrorKind, GatewayError, GrpcCode, Outcome, Outcomes};
/// use http::{HeaderMap, StatusCode};
///
/// let set = Outcomes::new()
///     .kind(ErrorKind::ConnectionRefused)
///     .statuses([502, 503])
///     .grpc(GrpcCode::Unavailable);
/// let refused = GatewayError::new(ErrorKind::ConnectionRefused);
/// assert!(set.contains(&Outcome::Error(&refused)));
/// let headers = HeaderMap::new();
/// assert!(set.contains(&Outcome::Response { status: StatusCode::SERVICE_UNAVAILABLE, headers: &headers }));
/// assert!(!set.contains(&Outcome::Response { status: StatusCode::OK, headers: &headers }));
/// let mut grpc = HeaderMap::new();
/// grpc.insert("grpc-status", "14".parse().unwrap());
/// assert!(set.contains(&Outcome::Response { status: StatusCode::OK, headers: &grpc }));
/// ```
#[derive(Clone, Default)]
pub struct Outcomes {
    kinds: KindSet,
    statuses: StatusSet,
    grpc: CodeSet,
    predicates: Vec<Arc<Predicate>>,
    /// Whether any answer can be in the set (a status, a code or a predicate):
    /// kept up to date by every setter, so the policies asked about every answer
    /// see an empty set at the cost of one load.
    answers: bool,
}

impl Outcomes {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn of_kinds(kinds: KindSet) -> Self {
        Self {
            kinds,
            ..Self::default()
        }
    }

    /// Adds failures of this kind.
    pub fn kind(mut self, kind: ErrorKind) -> Self {
        self.kinds = self.kinds.with(kind);
        self
    }

    /// Adds failures of these kinds.
    pub fn kinds(self, kinds: impl IntoIterator<Item = ErrorKind>) -> Self {
        kinds.into_iter().fold(self, Self::kind)
    }

    /// Adds answers with this status: a [`StatusCode`], an [`ErrorStatus`], or a
    /// number (one that is no HTTP status, outside `100..=999`, matches nothing).
    pub fn status(mut self, status: impl IntoStatus) -> Self {
        self.statuses.insert(status.into_status());
        self.refreshed()
    }

    /// Adds answers with any of these statuses.
    pub fn statuses<S: IntoStatus>(self, statuses: impl IntoIterator<Item = S>) -> Self {
        statuses.into_iter().fold(self, Self::status)
    }

    /// Adds gRPC answers whose `grpc-status`, in a trailers-only answer, is `code`.
    /// (A status in the trailers comes after the attempt is over.)
    pub fn grpc(mut self, code: GrpcCode) -> Self {
        self.grpc = self.grpc.with(code);
        self.refreshed()
    }

    /// Adds gRPC answers with any of these codes.
    pub fn grpc_codes(self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        codes.into_iter().fold(self, Self::grpc)
    }

    /// Adds the outcomes for which `f` returns `true`. Predicates accumulate.
    pub fn when<F>(mut self, f: F) -> Self
    where
        F: Fn(&Outcome<'_>) -> bool + Send + Sync + 'static,
    {
        self.predicates.push(Arc::new(f));
        self.refreshed()
    }

    /// Adds everything in `other`.
    pub fn union(mut self, other: impl Into<Outcomes>) -> Self {
        let other = other.into();
        self.kinds = self.kinds.union(other.kinds);
        self.statuses.union(&other.statuses);
        self.grpc = self.grpc.union(other.grpc);
        self.predicates.extend(other.predicates);
        self.refreshed()
    }

    fn refreshed(mut self) -> Self {
        self.answers =
            !(self.statuses.is_empty() && self.grpc.is_empty() && self.predicates.is_empty());
        self
    }

    /// Whether `outcome` is in the set.
    pub fn contains(&self, outcome: &Outcome<'_>) -> bool {
        let by_value = match outcome {
            Outcome::Error(err) => self.kinds.contains(err.kind()),
            Outcome::Response { .. } if !self.answers => return false,
            Outcome::Response { status, headers } => {
                self.statuses.contains(status.as_u16())
                    || (!self.grpc.is_empty()
                        && crate::grpc::status(headers).is_some_and(|c| self.grpc.contains(c)))
            }
        };
        by_value || self.predicates.iter().any(|f| f(outcome))
    }

    /// Whether the set holds failures of `kind` (predicates aside).
    pub fn contains_kind(&self, kind: ErrorKind) -> bool {
        self.kinds.contains(kind)
    }

    /// Whether the set holds answers with `status` (predicates aside).
    pub fn contains_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(status.as_u16())
    }

    /// Whether nothing is in the set.
    pub fn is_empty(&self) -> bool {
        self.kinds == KindSet::default() && !self.answers
    }

    /// Whether no answer can be in the set (only kinds, no statuses, codes or
    /// predicates): a fast path for policies asked about every answer.
    pub(crate) fn holds_no_answer(&self) -> bool {
        !self.answers
    }

    /// The statuses in the set, ascending.
    pub(crate) fn status_list(&self) -> impl Iterator<Item = u16> + '_ {
        self.statuses.iter()
    }

    /// The set without the statuses that `keep` refuses.
    pub(crate) fn retain_statuses(mut self, keep: impl Fn(u16) -> bool) -> Self {
        self.statuses.retain(keep);
        self.refreshed()
    }
}

/// A kind, a status or a code is the set of it alone.
impl From<ErrorKind> for Outcomes {
    fn from(kind: ErrorKind) -> Self {
        Self::new().kind(kind)
    }
}

impl From<StatusCode> for Outcomes {
    fn from(status: StatusCode) -> Self {
        Self::new().status(status)
    }
}

impl From<ErrorStatus> for Outcomes {
    fn from(status: ErrorStatus) -> Self {
        Self::new().status(status)
    }
}

impl From<u16> for Outcomes {
    fn from(status: u16) -> Self {
        Self::new().status(status)
    }
}

impl From<GrpcCode> for Outcomes {
    fn from(code: GrpcCode) -> Self {
        Self::new().grpc(code)
    }
}

/// An array of kinds, statuses or codes is the set of them all.
impl<T: Into<Outcomes>, const N: usize> From<[T; N]> for Outcomes {
    fn from(items: [T; N]) -> Self {
        items.into_iter().fold(Self::new(), Self::union)
    }
}

impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcomes")
            .field("kinds", &self.kinds)
            .field("statuses", &self.status_list().collect::<Vec<_>>())
            .field("grpc", &self.grpc)
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_hold_numbers_and_codes_alike_and_nothing_else() {
        let set = Outcomes::new()
            .status(503)
            .status(StatusCode::BAD_GATEWAY)
            .status(1000u16);
        let h = HeaderMap::new();
        let answer = |s: u16| Outcome::Response {
            status: StatusCode::from_u16(s).unwrap(),
            headers: &h,
        };
        assert!(set.contains(&answer(503)));
        assert!(set.contains(&answer(502)));
        assert!(!set.contains(&answer(500)));
        assert!(!set.contains(&answer(999)));
        assert_eq!(set.status_list().collect::<Vec<_>>(), [502, 503]);
    }

    #[test]
    fn no_wins_whatever_the_order() {
        let kind = ErrorKind::ConnectionRefused;
        let err = GatewayError::new(kind);
        let a = OnOff::default().on(kind).off(kind);
        let b = OnOff::default().off(kind).on(kind);
        assert!(!a.counts(&Outcome::Error(&err)));
        assert!(!b.counts(&Outcome::Error(&err)));
    }

    #[test]
    fn arrays_and_predicates_are_sets_too() {
        let set: Outcomes = [ErrorKind::DnsError, ErrorKind::DnsTimeout].into();
        assert!(set.contains_kind(ErrorKind::DnsTimeout));
        assert!(!set.contains_kind(ErrorKind::ConnectionRefused));
        let set = set.when(|o| matches!(o, Outcome::Error(e) if e.attempts() > 1));
        let err = GatewayError::new(ErrorKind::ConnectionRefused).with_attempts(2);
        assert!(set.contains(&Outcome::Error(&err)));
    }
}
