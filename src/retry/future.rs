use super::ReplayBody;
use super::decide::{Attempt, Decision};
use super::policy::RetryPolicy;
use super::race::Race;
use super::replay::Replay;
use super::report;
use crate::classify::{Carried, Classifier};
use crate::deadline::Deadline;
use crate::error::{Attempts, BoxError, GatewayError, Phase, stamp};
use crate::peer::ClientAddr;
use crate::upstreams::{AnsweredBy, Trail, Tried, key_of};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
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
        // Boxed: what a retry needs (the request head, the service, the body
        // kept for replay) is most of this future, and every layer above moves
        // the future; boxed, it is moved once.
        retrying: Box<Retrying<S, B>>,
    }
}

impl<S, F, B> fmt::Debug for ResponseFuture<S, F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.retrying;
        f.debug_struct("Retry::ResponseFuture")
            .field("attempts", &r.attempts)
            .field("idempotent", &r.idempotent)
            .field("deadline", &r.deadline)
            .finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Boxed: the attempt's future (every layer below) is moved once, into
        // the box, not again with this future and each one above it.
        Calling {
            future: Pin<Box<F>>,
        },
        // A hedged request's attempts in flight.
        Racing {
            race: Pin<Box<Race<F>>>,
        },
        // Boxed: only a retry waits, and the timer is most of an inline state.
        Waiting {
            sleep: Pin<Box<Sleep>>,
        },
        Ready,
    }
}

/// Everything of a retried exchange but the attempt under way.
pub(super) struct Retrying<S, B> {
    pub(super) service: S,
    pub(super) replay: Replay,
    pub(super) body: ReplayBody<B>,
    pub(super) policy: Arc<RetryPolicy>,
    pub(super) idempotent: bool,
    pub(super) deadline: Option<Deadline>,
    /// The request's [`ClientAddr`], put back on each further attempt (the kept
    /// parts may have no extensions).
    pub(super) client: Option<ClientAddr>,
    pub(super) start: Instant,
    /// The classifier carried from further out, with the policy's: `None` for the
    /// policy's alone.
    pub(super) classifier: Option<Arc<Classifier>>,
    /// Attempts made so far.
    pub(super) attempts: u32,
    /// The endpoints tried, for the next attempt's pick.
    pub(super) tried: Tried,
    /// When the attempt under way began (for the retry event).
    pub(super) attempt_start: Instant,
    /// Where a hedged request's attempts went: `Some` when it may be hedged.
    pub(super) trail: Option<Trail>,
    /// The attempts made when a gRPC pushback last set the wait (0: never).
    pub(super) backoff_from: u32,
}

impl<S, F, B> ResponseFuture<S, F, B> {
    /// `retrying` comes boxed: built in its box, it is not moved there (it is
    /// hundreds of bytes).
    #[inline(always)]
    pub(super) fn new(future: F, retrying: Box<Retrying<S, B>>) -> Self {
        let state = match retrying.trail {
            None => State::Calling {
                future: Box::pin(future),
            },
            Some(_) => State::Racing {
                race: Box::pin(retrying.race(future)),
            },
        };
        Self { state, retrying }
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
            let delay = match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    match this.retrying.decide(ready!(future.as_mut().poll(cx))) {
                        Next::Done(result) => return Poll::Ready(result),
                        Next::After(delay) => delay,
                    }
                }
                StateProj::Racing { race } => {
                    let (outcome, winner) = ready!(this.retrying.poll_race(race.as_mut(), cx));
                    // The losers are dropped at once: their streams reset, their
                    // connections closed.
                    this.retrying.cancel(race.as_mut(), winner);
                    match this.retrying.decide(outcome) {
                        Next::Done(result) => {
                            this.state.set(State::Ready);
                            return Poll::Ready(result);
                        }
                        Next::After(delay) => delay,
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                    continue;
                }
                StateProj::Ready => {
                    let future = match ready!(this.retrying.next_attempt(cx)) {
                        Ok(future) => future,
                        Err(err) => return Poll::Ready(Err(err)),
                    };
                    if this.retrying.trail.is_some() {
                        let race = Box::pin(this.retrying.race(future));
                        this.state.set(State::Racing { race });
                    } else {
                        this.state.set(State::Calling {
                            future: Box::pin(future),
                        });
                    }
                    continue;
                }
            };
            if delay.is_zero() {
                this.state.set(State::Ready);
            } else {
                this.state.set(State::Waiting {
                    sleep: Box::pin(tokio::time::sleep(delay)),
                });
            }
        }
    }
}

/// What comes after an attempt's outcome.
enum Next<T> {
    Done(Result<T, GatewayError>),
    /// Another attempt, after this wait.
    After(Duration),
}

impl<S, B> Retrying<S, B> {
    /// What comes after an attempt's outcome: it is final, or another attempt
    /// goes out after a wait.
    #[inline]
    fn decide<ResB, E: Into<BoxError>>(
        &mut self,
        outcome: Result<Response<ResB>, E>,
    ) -> Next<Response<ResB>> {
        match outcome {
            Ok(mut res) => match self.after_answer(&mut res) {
                None => Next::Done(Ok(res)),
                Some(delay) => Next::After(delay),
            },
            Err(error) => match self.after_error(error.into()) {
                Err(err) => Next::Done(Err(err)),
                Ok(delay) => Next::After(delay),
            },
        }
    }

    /// What the retry decision needs to know of the exchange so far.
    fn attempt<'a>(&self, replayable: &'a dyn Fn() -> bool) -> Attempt<'a> {
        Attempt {
            attempts: self.attempts,
            idempotent: self.idempotent,
            replayable,
            deadline: self.deadline.map(Deadline::at),
            backoff_from: self.backoff_from,
        }
    }

    /// Decides what comes after an answer: `None`, it is final (and says how many
    /// attempts it took); or another attempt goes out after the wait. The answer
    /// is looked at in place, never moved.
    #[inline]
    fn after_answer<ResB>(&mut self, res: &mut Response<ResB>) -> Option<Duration> {
        let (replay, body) = (&self.replay, &self.body);
        let replayable = || replay.kept().is_some() && body.is_replayable();
        let attempt = self.attempt(&replayable);
        match self
            .policy
            .after_response(res.status(), res.headers(), &attempt)
        {
            Decision::Stop(reason) => {
                report::denied(reason);
                // A first-try answer carries none: `Attempts::of` reads 1.
                if self.attempts > 1 {
                    res.extensions_mut().insert(Attempts(self.attempts));
                }
                None
            }
            Decision::Retry(delay) => {
                if super::grpc::pushed_back(res.headers()) {
                    self.backoff_from = self.attempts;
                }
                if let Some(AnsweredBy(key)) = res.extensions().get() {
                    self.tried.push(*key);
                }
                let attempt_start = self.attempt_start;
                let why = Err(res.status());
                report::retrying(
                    why,
                    &self.replay,
                    &self.policy,
                    self.attempts,
                    attempt_start,
                    delay,
                );
                Some(delay)
            }
        }
    }

    /// Decides what comes after a failed attempt: the error the exchange gives up
    /// with, or another attempt after the wait.
    fn after_error(&mut self, error: BoxError) -> Result<Duration, GatewayError> {
        let err = self.failure(error, Phase::AwaitHead);
        let (replay, body) = (&self.replay, &self.body);
        let replayable = || replay.kept().is_some() && body.is_replayable();
        match self.policy.after_error(&err, &self.attempt(&replayable)) {
            Decision::Stop(reason) => {
                report::denied(reason);
                Err(match reason {
                    Some(reason) => err.with_retry_denied(reason),
                    None => err,
                })
            }
            Decision::Retry(delay) => {
                // The next attempt goes elsewhere if it can.
                if let Some(hop) = err.next_hop() {
                    self.tried.push(key_of(hop.as_str()));
                }
                let attempt_start = self.attempt_start;
                report::retrying(
                    Ok(&err),
                    &self.replay,
                    &self.policy,
                    self.attempts,
                    attempt_start,
                    delay,
                );
                Ok(delay)
            }
        }
    }

    /// Sends the next attempt, once the service is ready.
    #[inline]
    fn next_attempt(&mut self, cx: &mut Context<'_>) -> Poll<Result<S::Future, GatewayError>>
    where
        S: Service<Request<ReplayBody<B>>>,
        S::Error: Into<BoxError>,
    {
        if let Err(error) = ready!(self.service.poll_ready(cx)) {
            return Poll::Ready(Err(self.failure(error.into(), Phase::Connect)));
        }
        let tried = self.tried;
        Poll::Ready(self.send(tried))
    }

    /// Sends an attempt through the ready service: a copy of the request head
    /// (the last attempt the policy allows takes the kept one), the body
    /// replayed, and what the layers below need to know of the attempts so far:
    /// `tried`, the endpoints to avoid.
    pub(super) fn send(&mut self, tried: Tried) -> Result<S::Future, GatewayError>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        let last = self.attempts + 1 >= self.policy.attempt_cap();
        let Some(parts) = self.replay.next(last) else {
            // Unreachable: a retry is decided only while the head is kept, and
            // a kept head always unpacks.
            let err = GatewayError::new(crate::error::ErrorKind::Unclassified);
            let err = stamp(err, self.start, self.replay.next_hop().as_ref());
            return Err(err.with_attempts(self.attempts));
        };
        self.attempts += 1;
        self.attempt_start = Instant::now();
        let mut req = Request::from_parts(parts, self.body.next_attempt());
        super::grpc::mark_attempt(req.headers_mut(), self.attempts - 1);
        let extensions = req.extensions_mut();
        restore(extensions, self.deadline);
        restore(extensions, self.client);
        if !tried.is_empty() {
            extensions.insert(tried);
        }
        if let Some(trail) = &self.trail {
            extensions.insert(trail.for_attempt(self.attempts));
        }
        let policy = &self.policy;
        let below_hold_own = policy.stack_shares_classifier;
        Carried::put(
            self.classifier.as_ref(),
            &policy.classifier,
            below_hold_own,
            extensions,
        );
        Ok(self.service.call(req))
    }

    /// The error the exchange gives up with: classified, timed, with its next hop
    /// and the attempts made.
    fn failure(&self, error: BoxError, phase: Phase) -> GatewayError {
        let classifier = self
            .classifier
            .as_deref()
            .unwrap_or(&self.policy.classifier);
        let err = classifier.classify_owned(error, phase);
        stamp(err, self.start, self.replay.next_hop().as_ref()).with_attempts(self.attempts)
    }
}

/// Puts back an extension kept aside for further attempts, unless the kept
/// parts carry it already (their extension map was copied whole).
fn restore<T: Clone + Send + Sync + 'static>(extensions: &mut http::Extensions, kept: Option<T>) {
    if let Some(value) = kept {
        if extensions.get::<T>().is_none() {
            extensions.insert(value);
        }
    }
}
