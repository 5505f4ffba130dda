use super::future::Retrying;
use super::replay::{KeptHead, Replay};
use super::{ReplayBody, ResponseFuture, RetryLayer, RetryPolicy};
use crate::classify::Carried;
use crate::deadline::Deadline;
use crate::error::{BoxError, GatewayError, NextHop, Phase};
use crate::peer::ClientAddr;
use crate::upstreams::{Trail, Tried};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that retries failed upstream calls by a [`RetryPolicy`]; see the
/// [module docs](super).
///
/// Its inner service must be `Clone` (each retry calls a clone, polled ready
/// first) and take the request body as a [`ReplayBody`]. Its error is the
/// [`GatewayError`] it gave up with, whose [`attempts`](GatewayError::attempts) and
/// [`retry_denied`](GatewayError::retry_denied) say what happened; for an upstream
/// answer, [`Attempts::of`](crate::Attempts::of) says how many attempts it took.
///
/// ```
/// use tower_bad_gateway::retry::{ReplayBody, Retry, RetryPolicy};
/// use tower_bad_gateway::{ErrorKind, RetryDenied};
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let refused = tower::service_fn(|_req: http::Request<ReplayBody<Empty<Bytes>>>| async {
///     Err::<http::Response<()>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
/// });
/// let policy = RetryPolicy::new().backoff(std::time::Duration::ZERO, std::time::Duration::ZERO);
/// let err = Retry::new(refused, policy).oneshot(http::Request::new(Empty::new())).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
/// assert_eq!(err.attempts(), 3);
/// assert_eq!(err.retry_denied(), Some(RetryDenied::AttemptsExhausted));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
}

impl<S> Retry<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self::from_shared(inner, Arc::new(policy))
    }

    pub(super) fn from_shared(inner: S, policy: Arc<RetryPolicy>) -> Self {
        Self { inner, policy }
    }

    /// A [`RetryLayer`] for `policy`.
    pub fn layer(policy: RetryPolicy) -> RetryLayer {
        RetryLayer::new(policy)
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = GatewayError;
    type Future = ResponseFuture<S, S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|e| {
            self.policy
                .classifier
                .classify_owned(e.into(), Phase::Connect)
        })
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // Taken out so that the head kept for retries needs no copy of the map for
        // it; every attempt gets it back.
        let classifier = Carried::take(&self.policy.classifier, &mut parts.extensions);
        let deadline = parts.extensions.get::<Deadline>().copied();
        let client = parts.extensions.get::<ClientAddr>().copied();
        let start = Deadline::start_of(deadline.as_ref());
        let policy = self.policy.clone();
        policy.deposit_at(start);
        let idempotent = policy.is_idempotent(&parts);
        // Hedged: only what may be sent twice, each paying into the hedging budget.
        let hedge = policy
            .hedge
            .as_ref()
            .filter(|h| idempotent && h.max_attempts > 1);
        if let Some(budget) = hedge.and_then(|h| h.budget.as_ref()) {
            budget.deposit_at(start);
        }
        let retries = policy.attempt_cap() > 1;
        let body = ReplayBody::new(body, if retries { policy.max_replay_body } else { 0 });
        // The next hop is read from the kept head; only without it is it copied.
        // The deadline and the client's address are kept aside and put back on
        // every attempt: with no other extension, the map is not copied.
        let replay = if retries {
            let kept = usize::from(deadline.is_some()) + usize::from(client.is_some());
            Replay::Kept(KeptHead::of(&parts, kept))
        } else {
            Replay::Taken(NextHop::of(&parts.uri))
        };
        let trail = hedge.map(|_| Trail::new());
        let below_hold_own = policy.stack_shares_classifier;
        let extensions = &mut parts.extensions;
        if let Some(trail) = &trail {
            extensions.insert(trail.for_attempt(1));
        }
        Carried::put(
            classifier.as_ref(),
            &policy.classifier,
            below_hold_own,
            extensions,
        );
        let first = Request::from_parts(parts, body.next_attempt());
        // The ready service makes the first call; a clone, polled ready when its
        // turn comes, makes any retry.
        let service = self.inner.clone();
        let future = self.inner.call(first);
        ResponseFuture::new(
            future,
            Box::new(Retrying {
                service,
                replay,
                body,
                policy,
                idempotent,
                deadline,
                client,
                start,
                classifier,
                attempts: 1,
                tried: Tried::default(),
                attempt_start: start,
                trail,
                backoff_from: 0,
            }),
        )
    }
}
