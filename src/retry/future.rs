use super::ReplayBody;
use super::decide::{Attempt, Decision};
use super::policy::RetryPolicy;
use crate::deadline::Deadline;
use crate::error::{Attempts, BoxError, GatewayError, NextHop, Phase, stamp};
use crate::upstreams::{AnsweredBy, Tried, key_of};
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

pin_project! {
    /// Response future of [`Retry`](super::Retry).
    ///
    /// ```
    /// use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
    /// use http_body_util::Empty;
    /// use bytes::Bytes;
    /// use tower::{Layer, Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<ReplayBody<Empty<Bytes>>>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let mut svc = RetryLayer::new(RetryPolicy::new()).layer(upstream);
    /// svc.ready().await.unwrap();
    /// let future = svc.call(http::Request::new(Empty::new()));
    /// let res = future.await.unwrap();
    /// assert_eq!(tower_bad_gateway::Attempts::of(&res), 1);
    /// # }
    /// ```
    pub struct ResponseFuture<S, F, B> {
        #[pin]
        state: State<F>,
        service: S,
        replay: Replay,
        body: ReplayBody<B>,
        policy: Arc<RetryPolicy>,
        attempts: u32,
        idempotent: bool,
        deadline: Option<Deadline>,
        start: Instant,
        tried: Tried,
        // When the attempt under way began (for the retry event).
        attempt_start: Instant,
    }
}

impl<S, F, B> fmt::Debug for ResponseFuture<S, F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry::ResponseFuture")
            .field("attempts", &self.attempts)
            .field("idempotent", &self.idempotent)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// The request head kept for further attempts or, once the last attempt took it
/// (or none was allowed), only the upstream's authority, for the errors.
pub(super) enum Replay {
    Parts(Parts),
    Taken(Option<NextHop>),
}

impl Replay {
    fn parts(&self) -> Option<&Parts> {
        match self {
            Replay::Parts(parts) => Some(parts),
            Replay::Taken(_) => None,
        }
    }

    fn next_hop(&self) -> Option<NextHop> {
        match self {
            Replay::Parts(parts) => NextHop::of(&parts.uri),
            Replay::Taken(hop) => *hop,
        }
    }

    /// The parts for the next attempt: a clone, or, for the last one, the parts.
    fn next(&mut self, last: bool) -> Option<Parts> {
        let Replay::Parts(parts) = self else {
            return None;
        };
        if !last {
            return Some(parts.clone());
        }
        let hop = NextHop::of(&parts.uri);
        match std::mem::replace(self, Replay::Taken(hop)) {
            Replay::Parts(parts) => Some(parts),
            Replay::Taken(_) => None,
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        Waiting {
            #[pin]
            sleep: Sleep,
        },
        Ready,
    }
}

pub(super) struct Exchange<S, B> {
    pub(super) service: S,
    pub(super) replay: Replay,
    pub(super) body: ReplayBody<B>,
    pub(super) policy: Arc<RetryPolicy>,
    pub(super) idempotent: bool,
    pub(super) deadline: Option<Deadline>,
    pub(super) start: Instant,
}

impl<S, F, B> ResponseFuture<S, F, B> {
    pub(super) fn new(future: F, ex: Exchange<S, B>) -> Self {
        Self {
            state: State::Calling { future },
            service: ex.service,
            replay: ex.replay,
            body: ex.body,
            policy: ex.policy,
            attempts: 1,
            idempotent: ex.idempotent,
            deadline: ex.deadline,
            start: ex.start,
            tried: Tried::default(),
            attempt_start: ex.start,
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, S::Future, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResB>, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let (replay, body) = (&*this.replay, &*this.body);
                    let replayable = || replay.parts().is_some() && body.is_replayable();
                    let attempt = Attempt {
                        attempts: *this.attempts,
                        idempotent: *this.idempotent,
                        replayable: &replayable,
                        deadline: this.deadline.map(Deadline::at),
                    };
                    let delay = match result {
                        Ok(mut res) => {
                            match this
                                .policy
                                .after_response(res.status(), res.headers(), &attempt)
                            {
                                Decision::Stop(reason) => {
                                    note_denied(reason);
                                    // A first-try answer carries none: `Attempts::of` reads 1.
                                    if *this.attempts > 1 {
                                        res.extensions_mut().insert(Attempts(*this.attempts));
                                    }
                                    return Poll::Ready(Ok(res));
                                }
                                Decision::Retry(delay) => {
                                    if let Some(AnsweredBy(key)) = res.extensions().get() {
                                        this.tried.push(*key);
                                    }
                                    note_retry(
                                        Err(res.status()),
                                        this.replay,
                                        *this.attempts,
                                        *this.attempt_start,
                                        delay,
                                    );
                                    delay
                                }
                            }
                        }
                        Err(error) => {
                            let err = failure(
                                this.policy,
                                error.into(),
                                Phase::AwaitHead,
                                *this.start,
                                this.replay,
                                *this.attempts,
                            );
                            match this.policy.after_error(&err, &attempt) {
                                Decision::Stop(reason) => {
                                    note_denied(reason);
                                    let err = match reason {
                                        Some(reason) => err.with_retry_denied(reason),
                                        None => err,
                                    };
                                    return Poll::Ready(Err(err));
                                }
                                Decision::Retry(delay) => {
                                    // The next attempt goes elsewhere if it can.
                                    if let Some(hop) = err.next_hop() {
                                        this.tried.push(key_of(hop.as_str()));
                                    }
                                    note_retry(
                                        Ok(&err),
                                        this.replay,
                                        *this.attempts,
                                        *this.attempt_start,
                                        delay,
                                    );
                                    delay
                                }
                            }
                        }
                    };
                    if delay.is_zero() {
                        this.state.set(State::Ready);
                    } else {
                        this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(delay),
                        });
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(error) = ready!(this.service.poll_ready(cx)) {
                        let err = failure(
                            this.policy,
                            error.into(),
                            Phase::Connect,
                            *this.start,
                            this.replay,
                            *this.attempts,
                        );
                        return Poll::Ready(Err(err));
                    }
                    // The last attempt the policy allows takes the parts; earlier ones clone.
                    let last = *this.attempts + 1 >= this.policy.max_attempts;
                    let Some(parts) = this.replay.next(last) else {
                        // Unreachable: `replayable` above requires the parts.
                        let err = GatewayError::new(crate::error::ErrorKind::Unclassified);
                        let err = stamp(err, *this.start, this.replay.next_hop().as_ref());
                        return Poll::Ready(Err(err.with_attempts(*this.attempts)));
                    };
                    *this.attempts += 1;
                    *this.attempt_start = Instant::now();
                    let mut req = Request::from_parts(parts, this.body.next_attempt());
                    if let Some(deadline) = *this.deadline {
                        if req.extensions().get::<Deadline>().is_none() {
                            req.extensions_mut().insert(deadline);
                        }
                    }
                    if !this.tried.is_empty() {
                        req.extensions_mut().insert(*this.tried);
                    }
                    let future = this.service.call(req);
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

/// The error an exchange gives up with: classified, timed, with its next hop and
/// the attempts made.
fn failure(
    policy: &RetryPolicy,
    error: BoxError,
    phase: Phase,
    start: Instant,
    replay: &Replay,
    attempts: u32,
) -> GatewayError {
    let err = policy.classifier.classify_owned(error, phase);
    stamp(err, start, replay.next_hop().as_ref()).with_attempts(attempts)
}

/// A retry denied: counted when the budget refused it (feature `metrics`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
fn note_denied(reason: Option<crate::error::RetryDenied>) {
    #[cfg(feature = "metrics")]
    if reason == Some(crate::error::RetryDenied::BudgetExhausted) {
        crate::metrics::retry_budget_exhausted();
    }
}

/// A retry: counted (feature `metrics`) and logged (feature `tracing`): why (the
/// failure's `error.type`, or the status answered), which attempt failed and how
/// long it took, and the wait before the next one; field names as on the failure
/// event.
#[cfg_attr(
    not(all(feature = "metrics", feature = "tracing")),
    allow(unused_variables)
)]
fn note_retry(
    why: Result<&GatewayError, http::StatusCode>,
    replay: &Replay,
    attempt: u32,
    attempt_start: Instant,
    delay: std::time::Duration,
) {
    #[cfg(feature = "metrics")]
    crate::metrics::retry(why.map(|e| e.kind().as_str()));
    #[cfg(feature = "tracing")]
    log_retry(why, replay, attempt, attempt_start, delay);
}

#[cfg(feature = "tracing")]
fn log_retry(
    why: Result<&GatewayError, http::StatusCode>,
    replay: &Replay,
    attempt: u32,
    attempt_start: Instant,
    delay: std::time::Duration,
) {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let hop = replay.next_hop().and_then(|h| h.authority());
    tracing::info!(
        "error.type" = why.ok().map(|e| e.kind().as_str()),
        "http.response.status_code" = why.err().map(|s| s.as_u16()),
        "http.request.method" = replay.parts().map(|p| crate::otel::method(&p.method)),
        "server.address" = hop.as_ref().map(|a| a.host()),
        "server.port" = hop.as_ref().and_then(|a| a.port_u16()),
        attempt,
        attempt_duration_ms = ms(attempt_start.elapsed()),
        delay_ms = ms(delay),
        "retrying upstream request",
    );
}
