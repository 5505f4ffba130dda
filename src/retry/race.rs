//! The attempts of a hedged request in flight, and when the next hedge is due.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// The attempts of a hedged request in flight, and when the next hedge is due.
    /// The race's first attempt and its timer live inline (one allocation for the
    /// whole race when no hedge is sent); hedges are boxed.
    pub(super) struct Race<F> {
        #[pin]
        first: Option<F>,
        first_number: u32,
        first_start: Instant,
        hedges: Vec<Racer<F>>,
        // The next hedge; `None` once no more may be sent.
        #[pin]
        timer: Option<Sleep>,
        // A hedge is due, paid for, waiting for the service to be ready.
        due: bool,
    }
}

/// A hedge in flight.
struct Racer<F> {
    future: Pin<Box<F>>,
    number: u32,
    start: Instant,
}

/// An attempt of the race that ended.
pub(super) struct Finished<T> {
    pub(super) outcome: T,
    /// Its number (1 for the request's first attempt).
    pub(super) number: u32,
    pub(super) start: Instant,
    /// No other attempt is in flight.
    pub(super) last: bool,
    /// It was a hedge (not the race's first attempt).
    pub(super) hedge: bool,
}

impl<F> Race<F> {
    /// A race of one, attempt `number` sent at `start`; the first hedge after
    /// `delay`, if any may be sent.
    pub(super) fn new(first: F, number: u32, start: Instant, delay: Option<Duration>) -> Self {
        Self {
            first: Some(first),
            first_number: number,
            first_start: start,
            hedges: Vec::new(),
            timer: delay.map(tokio::time::sleep),
            due: false,
        }
    }
}

impl<F: Future> Race<F> {
    /// The first attempt in flight that ended, taken out of the race.
    pub(super) fn poll_finished(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Finished<F::Output>> {
        let mut this = self.project();
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            if let Poll::Ready(outcome) = first.poll(cx) {
                this.first.set(None);
                return Poll::Ready(Finished {
                    outcome,
                    number: *this.first_number,
                    start: *this.first_start,
                    last: this.hedges.is_empty(),
                    hedge: false,
                });
            }
        }
        for i in 0..this.hedges.len() {
            if let Poll::Ready(outcome) = this.hedges[i].future.as_mut().poll(cx) {
                let racer = this.hedges.swap_remove(i);
                return Poll::Ready(Finished {
                    outcome,
                    number: racer.number,
                    start: racer.start,
                    last: this.hedges.is_empty() && this.first.is_none(),
                    hedge: true,
                });
            }
        }
        Poll::Pending
    }

    /// The numbers of the attempts in flight.
    pub(super) fn in_flight(&self) -> impl Iterator<Item = u32> + '_ {
        let first = self.first.is_some().then_some(self.first_number);
        first
            .into_iter()
            .chain(self.hedges.iter().map(|r| r.number))
    }

    /// Ready when the next hedge is due (and then at once until it is sent or
    /// given up); pending forever once none may be sent.
    pub(super) fn poll_due(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if *this.due {
            return Poll::Ready(true);
        }
        match this.timer.as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| false),
            None => Poll::Pending,
        }
    }

    /// The hedge is paid for: it goes as soon as the service is ready.
    pub(super) fn set_due(self: Pin<&mut Self>, due: bool) {
        *self.project().due = due;
    }

    /// The next hedge after `delay`, or none.
    pub(super) fn rearm(self: Pin<&mut Self>, delay: Option<Duration>) {
        let mut this = self.project();
        match (delay, this.timer.as_mut().as_pin_mut()) {
            (Some(delay), Some(timer)) => timer.reset(Instant::now() + delay),
            (Some(delay), None) => this.timer.set(Some(tokio::time::sleep(delay))),
            (None, _) => this.timer.set(None),
        }
    }

    /// A hedge sent: attempt `number`, at `start`.
    pub(super) fn push(self: Pin<&mut Self>, future: F, number: u32, start: Instant) {
        self.project().hedges.push(Racer {
            future: Box::pin(future),
            number,
            start,
        });
    }

    /// Drops every attempt still in flight (and the timer), telling `each` when it
    /// started; how many there were.
    pub(super) fn cancel(self: Pin<&mut Self>, mut each: impl FnMut(Instant)) -> usize {
        let mut this = self.project();
        let mut n = 0;
        if this.first.is_some() {
            each(*this.first_start);
            this.first.set(None);
            n += 1;
        }
        for racer in this.hedges.drain(..) {
            each(racer.start);
            n += 1;
        }
        this.timer.set(None);
        n
    }
}
