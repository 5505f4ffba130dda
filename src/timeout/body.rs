use crate::error::{BodyTimeout, BodyTimeoutKind, BoxError, DeadlineExceeded};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Response body of [`Timeout`](super::Timeout): the upstream body with an idle
    /// timeout (for each wait for a frame) and a total timeout.
    ///
    /// When one expires the body yields a [`BodyTimeout`] error and ends; the
    /// upstream body is dropped, which closes its connection.
    /// ```
    /// use tower_bad_gateway::timeout::TimeoutBody;
    /// use tower_bad_gateway::error::{BodyTimeout, BodyTimeoutKind};
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
        total: Option<Duration>,
        // When the total timer ends: `total` from the start, or the deadline.
        end: Option<Instant>,
        // One timer for both, armed for whichever is due first, and only once the
        // body has to wait: a body that is there at once (a small answer read with
        // its head) never touches the timer wheel. Boxed, because the body is moved
        // with every response and a `Sleep` is about 100 bytes.
        sleep: Option<Pin<Box<Sleep>>>,
        // Whether `end` is the request's deadline rather than `total`.
        end_is_deadline: bool,
        ended: bool,
    }
}

/// The idle timeout, and since when the body has been waiting for its next frame:
/// the wait starts when the body is first asked for a frame and has none (before
/// its first frame, or after any other), read off the clock then, not on every
/// frame. A time the
/// reader of the body takes between two frames is not the upstream's idleness.
/// The timer is re-armed for a later wait only when it fires, not on every frame
/// (a reset takes the timer wheel's lock).
#[derive(Debug, Clone, Copy)]
struct Idle {
    after: Duration,
    waiting_since: Option<Instant>,
}

impl Idle {
    fn due(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + self.after)
    }
}

impl<B> TimeoutBody<B> {
    /// Wraps `body`; the total timer starts now, the idle one whenever the body
    /// waits for a frame.
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
        // No clock read without a total timer: the idle one reads it when the
        // body first has to wait.
        let by_total = total.map(|t| Instant::now() + t);
        let idle = idle.map(|after| Idle {
            after,
            waiting_since: None,
        });
        let (end, end_is_deadline) = match (by_total, deadline) {
            (Some(t), Some(d)) if d < t => (Some(d), true),
            (None, Some(d)) => (Some(d), true),
            (t, _) => (t, false),
        };
        Self {
            body,
            idle,
            total,
            end,
            sleep: None,
            end_is_deadline,
            ended: false,
        }
    }
}

/// When the timer must next fire: the end, or the idle timeout if that is sooner.
fn earliest(end: Option<Instant>, idle: Option<Idle>) -> Option<Instant> {
    match (end, idle.and_then(|i| i.due())) {
        (Some(end), Some(idle)) => Some(end.min(idle)),
        (end, idle) => end.or(idle),
    }
}

impl<B: fmt::Debug> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutBody")
            .field("body", &self.body)
            .field("idle", &self.idle.map(|i| i.after))
            .field("total", &self.total)
            .field("end", &self.end)
            .field("ended", &self.ended)
            .finish()
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
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            if let Some(idle) = this.idle {
                idle.waiting_since = None;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(idle) = this.idle {
            idle.waiting_since.get_or_insert_with(Instant::now);
        }
        let err: BoxError = match expired(this.sleep, *this.end, *this.idle, cx) {
            None => return Poll::Pending,
            Some(BodyTimeoutKind::Total) if *this.end_is_deadline => {
                super::report::deadline_exceeded("read_body");
                DeadlineExceeded.into()
            }
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

/// Which timeout has expired, if any. The timer is armed for the earliest one;
/// when it fires early for the idle timeout (frames came since it was armed), it
/// is re-armed for what is due next and polled again. The total timeout wins a tie.
fn expired(
    sleep: &mut Option<Pin<Box<Sleep>>>,
    end: Option<Instant>,
    idle: Option<Idle>,
    cx: &mut Context<'_>,
) -> Option<BodyTimeoutKind> {
    let due = earliest(end, idle)?;
    let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        if end.is_some_and(|end| end <= now) {
            return Some(BodyTimeoutKind::Total);
        }
        if idle
            .and_then(|idle| idle.due())
            .is_some_and(|due| due <= now)
        {
            return Some(BodyTimeoutKind::Idle);
        }
        // Fired for an idle timeout that frames have since pushed back.
        timer.as_mut().reset(earliest(end, idle)?);
    }
}
