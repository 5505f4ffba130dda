//! Racing a hedged request's attempts: polling them, sending the next hedge
//! when it is due, and dropping the losers.

use super::ReplayBody;
use super::future::Retrying;
use super::race::Race;
use super::report;
use crate::error::BoxError;
use crate::grpc::Pushback;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;
use tower_service::Service;

/// The outcome a race ended with, and its attempt's number.
type Won<T, E> = (Result<T, E>, u32);

/// Whether a hedge may go out now.
enum HedgeNow {
    Yes,
    /// Not yet: the body is still being read.
    Later(Duration),
    Never,
}

impl<S, B> Retrying<S, B> {
    /// A race of one: the attempt just sent, and the first hedge's timer.
    pub(super) fn race<F>(&self, future: F) -> Race<F> {
        Race::new(
            future,
            self.attempts,
            self.attempt_start,
            self.next_hedge_delay(),
        )
    }

    /// The wait before the next hedge, if another may be sent.
    fn next_hedge_delay(&self) -> Option<Duration> {
        let hedge = self.policy.hedge.as_ref()?;
        (self.attempts < hedge.max_attempts).then(|| hedge.delay())
    }

    /// Whether a hedge may go out now; the budget is spent only when it may.
    fn may_hedge(&self) -> HedgeNow {
        let Some(hedge) = &self.policy.hedge else {
            return HedgeNow::Never;
        };
        if self.attempts >= hedge.max_attempts || self.replay.kept().is_none() {
            return HedgeNow::Never;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d.at())
            || self.policy.throttle.as_ref().is_some_and(|t| !t.allows())
        {
            return HedgeNow::Never;
        }
        if !self.body.is_complete() {
            // Still streaming into the replay buffer: try again after another delay.
            return if self.body.is_replayable() {
                HedgeNow::Later(hedge.delay())
            } else {
                HedgeNow::Never
            };
        }
        if hedge.budget.as_ref().is_some_and(|b| !b.withdraw()) {
            report::hedge_refused();
            return HedgeNow::Never;
        }
        HedgeNow::Yes
    }

    /// Whether an attempt's outcome must wait for the others in flight: a failure
    /// (no answer), or an answer the policy would retry.
    fn loses_to_pending<ResB, E>(&self, outcome: &Result<Response<ResB>, E>) -> bool {
        match outcome {
            Err(_) => true,
            Ok(res) => self
                .policy
                .outcomes
                .counts_answer(res.status(), res.headers()),
        }
    }

    /// An attempt that ended while others are in flight, and lost to them: the
    /// throttle counts it (gRFC A6), and its gRPC pushback, if any, says when
    /// the next hedge may go.
    fn lost<ResB, E>(&self, outcome: &Result<Response<ResB>, E>) -> Option<Pushback> {
        match outcome {
            Err(_) => {
                if let Some(throttle) = &self.policy.throttle {
                    throttle.record_failure();
                }
                None
            }
            Ok(res) => {
                if let Some(throttle) = &self.policy.throttle {
                    throttle.record_answer(true, res.status(), res.headers());
                }
                crate::grpc::pushback(res.headers())
            }
        }
    }

    /// Drops the attempts still in flight: a winner was found.
    pub(super) fn cancel<F: Future>(&self, race: Pin<&mut Race<F>>, winner: u32) {
        let hedge = self.policy.hedge.as_ref();
        let cancelled = race.cancel(|start| {
            if let Some(hedge) = hedge {
                hedge.observe(start.elapsed());
            }
        });
        if cancelled > 0 {
            report::race_won(&self.replay, &self.policy, winner, self.attempts, cancelled);
        }
    }
    /// Polls a hedged request's attempts, and sends the next hedge when it is
    /// due. Ready with the first outcome that wins (an answer the policy would
    /// not retry), or with the last attempt's outcome; and its attempt's number.
    pub(super) fn poll_race<ResB>(
        &mut self,
        mut race: Pin<&mut Race<S::Future>>,
        cx: &mut Context<'_>,
    ) -> Poll<Won<Response<ResB>, S::Error>>
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
        S::Error: Into<BoxError>,
    {
        loop {
            while let Poll::Ready(ended) = race.as_mut().poll_finished(cx) {
                if let Some(hedge) = &self.policy.hedge {
                    hedge.observe(ended.start.elapsed());
                }
                if ended.last || !self.loses_to_pending(&ended.outcome) {
                    self.attempt_start = ended.start;
                    if ended.hedge {
                        report::hedge_won();
                    }
                    return Poll::Ready((ended.outcome, ended.number));
                }
                // Another attempt in flight may still answer; this endpoint is
                // not asked again.
                if let Some(key) = self.trail.as_ref().and_then(|t| t.key(ended.number)) {
                    self.tried.push(key);
                }
                let pushback = self.lost(&ended.outcome);
                match pushback {
                    Some(Pushback::Stop) => race.as_mut().rearm(None),
                    Some(Pushback::After(wait)) => race.as_mut().rearm(Some(wait)),
                    None => {}
                }
                report::race_lost(ended.number, pushback);
            }
            let paid = ready!(race.as_mut().poll_due(cx));
            if !paid {
                match self.may_hedge() {
                    HedgeNow::Yes => race.as_mut().set_due(true),
                    HedgeNow::Later(delay) => {
                        race.as_mut().rearm(Some(delay));
                        continue;
                    }
                    HedgeNow::Never => {
                        race.as_mut().rearm(None);
                        return Poll::Pending;
                    }
                }
            }
            match self.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => race.as_mut().set_due(false),
                Poll::Ready(Err(_)) => {
                    // No hedge: the attempts in flight go on.
                    race.as_mut().set_due(false);
                    race.as_mut().rearm(None);
                    return Poll::Pending;
                }
            }
            // Away from every endpoint still in flight.
            let mut tried = self.tried;
            if let Some(trail) = &self.trail {
                for number in race.in_flight() {
                    if let Some(key) = trail.key(number) {
                        tried.push(key);
                    }
                }
            }
            let Ok(future) = self.send(tried) else {
                race.as_mut().rearm(None);
                return Poll::Pending;
            };
            report::hedged(&self.replay, &self.policy, self.attempts);
            race.as_mut()
                .push(future, self.attempts, self.attempt_start);
            race.as_mut().rearm(self.next_hedge_delay());
        }
    }
}
