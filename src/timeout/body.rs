use super::error::{BodyTimeout, BodyTimeoutKind, DeadlineExceeded};
use crate::BoxError;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Response body of [`Timeout`](super::Timeout): the upstream body with an idle
    /// timeout (reset by every frame) and a total timeout.
    ///
    /// When one expires the body yields a [`BodyTimeout`] error and ends; the
    /// upstream body is dropped, which closes its connection.
    /// ```
    /// use tower_bad_gateway::timeout::TimeoutBody;
    /// use tower_bad_gateway::timeout::error::{BodyTimeout, BodyTimeoutKind};
    /// use http_body_util::BodyExt;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // A body that never sends anything.
    /// # struct Stalled;
    /// # impl http_body::Body for Stalled {
    /// #     type Data = bytes::Bytes;
    /// #     type Error = std::io::Error;
    /// #     fn poll_frame(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> { std::task::Poll::Pending }
    /// # }
    /// let stalled = Stalled;
    /// let body = TimeoutBody::new(stalled, Some(Duration::from_millis(10)), None);
    /// let err = body.collect().await.unwrap_err();
    /// let timeout = err.downcast_ref::<BodyTimeout>().unwrap();
    /// assert_eq!(timeout.kind(), BodyTimeoutKind::Idle);
    /// # }
    /// ```
    pub struct TimeoutBody<B> {
        #[pin]
        body: B,
        idle: Option<Idle>,
        #[pin]
        idle_sleep: Option<Sleep>,
        total: Option<Duration>,
        #[pin]
        total_sleep: Option<Sleep>,
        // Whether the total timer is the request's deadline rather than `total`.
        total_is_deadline: bool,
        ended: bool,
    }
}

/// The idle timeout, and when the last frame arrived: the idle timer is re-armed
/// from it only when it fires, not on every frame (a reset takes the timer
/// wheel's lock).
#[derive(Debug, Clone, Copy)]
struct Idle {
    after: Duration,
    last_frame: Instant,
}

impl<B> TimeoutBody<B> {
    /// Wraps `body`; both timers start now.
    pub fn new(body: B, idle: Option<Duration>, total: Option<Duration>) -> Self {
        Self::with_deadline(body, idle, total, None)
    }

    /// Wraps `body`; the total timer ends at the earlier of `total` from now and
    /// `deadline`.
    pub(crate) fn with_deadline(
        body: B,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Self {
        // No clock read when no body timer is set.
        let now = (idle.is_some() || total.is_some()).then(Instant::now);
        let by_total = total.zip(now).map(|(t, now)| now + t);
        let idle = idle.zip(now).map(|(after, now)| Idle {
            after,
            last_frame: now,
        });
        let (end, total_is_deadline) = match (by_total, deadline) {
            (Some(t), Some(d)) if d < t => (Some(d), true),
            (None, Some(d)) => (Some(d), true),
            (t, _) => (t, false),
        };
        Self {
            body,
            idle,
            idle_sleep: idle.map(|idle| tokio::time::sleep_until(idle.last_frame + idle.after)),
            total,
            total_sleep: end.map(tokio::time::sleep_until),
            total_is_deadline,
            ended: false,
        }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            if let Some(idle) = this.idle {
                idle.last_frame = Instant::now();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let expired = if fired(this.total_sleep.as_mut().as_pin_mut(), cx) {
            Some(BodyTimeoutKind::Total)
        } else if idle_expired(this.idle_sleep.as_mut(), *this.idle, cx) {
            Some(BodyTimeoutKind::Idle)
        } else {
            None
        };
        let err: BoxError = match expired {
            None => return Poll::Pending,
            Some(BodyTimeoutKind::Total) if *this.total_is_deadline => DeadlineExceeded.into(),
            Some(kind) => BodyTimeout {
                kind,
                after: match kind {
                    BodyTimeoutKind::Total => this.total.unwrap_or_default(),
                    _ => this.idle.map(|i| i.after).unwrap_or_default(),
                },
            }
            .into(),
        };
        *this.ended = true;
        Poll::Ready(Some(Err(err)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether no frame arrived for `idle`: when the timer fires early (frames came
/// since it was armed), it is re-armed from the last frame and polled again.
fn idle_expired(
    mut sleep: Pin<&mut Option<Sleep>>,
    idle: Option<Idle>,
    cx: &mut Context<'_>,
) -> bool {
    let Some(Idle { after, last_frame }) = idle else {
        return false;
    };
    while let Some(mut timer) = sleep.as_mut().as_pin_mut() {
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let due = last_frame + after;
        if due <= Instant::now() {
            return true;
        }
        timer.reset(due);
    }
    false
}

/// Polls a timer, if there is one: whether it has fired.
fn fired(sleep: Option<Pin<&mut Sleep>>, cx: &mut Context<'_>) -> bool {
    sleep.is_some_and(|sleep| sleep.poll(cx).is_ready())
}
