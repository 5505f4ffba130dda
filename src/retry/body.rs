//! A request body that can be sent again: buffered as the first attempt streams it.

use crate::error::BoxError;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

/// The request body of every attempt made by [`Retry`](super::Retry).
///
/// The first attempt reads the original body and keeps each chunk (a zero-copy
/// `Bytes` clone) in a buffer bounded by the policy's replay limit; a retry replays
/// the buffer, then goes on reading the original where the last attempt left off.
/// A body that outgrows the limit is still streamed to the attempt reading it, but
/// it is no longer kept, so it cannot be replayed: no retry ever sends a truncated
/// copy. A body whose size is known to exceed the limit is never buffered (it can
/// still be retried if no attempt read any of it, e.g. after a refused connection).
///
/// ```
/// use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
/// use http_body_util::{BodyExt, Full};
/// use bytes::Bytes;
/// use tower::{Layer, ServiceExt};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // The inner service receives each attempt's body as a `ReplayBody`.
/// let upstream = tower::service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
///     let body = req.into_body().collect().await?.to_bytes();
///     Ok::<_, tower_bad_gateway::BoxError>(http::Response::new(Full::new(body)))
/// });
/// let svc = RetryLayer::new(RetryPolicy::new()).layer(upstream);
/// let res = svc.oneshot(http::Request::new(Full::new(Bytes::from("echo")))).await.unwrap();
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "echo");
/// # }
/// ```
pub struct ReplayBody<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    /// The original had nothing to send.
    Empty,
    Shared {
        shared: Arc<Mutex<Shared<B>>>,
        /// Which attempt this body belongs to; only the newest reads the original.
        generation: u64,
        /// How many data chunks this attempt has sent.
        index: usize,
        trailers_sent: bool,
        hint: SizeHint,
    },
}

struct Shared<B> {
    /// The rest of the original body; `None` once it ended or failed.
    body: Option<B>,
    chunks: Vec<Bytes>,
    buffered: u64,
    limit: u64,
    /// Buffering was given up: only a reader that has seen every chunk read so far
    /// may go on.
    capped: bool,
    /// Data chunks read from the original so far.
    read: usize,
    ended: bool,
    failed: bool,
    trailers: Option<HeaderMap>,
    generation: u64,
}

/// Why an attempt's body could not be sent.
///
/// ```
/// use tower_bad_gateway::retry::ReplayError;
/// let err: tower_bad_gateway::BoxError = ReplayError::NotReplayable.into();
/// assert_eq!(err.to_string(), "request body too large to send again");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A newer attempt took over the body.
    #[error("request body taken over by a newer attempt")]
    Superseded,
    /// The body outgrew the replay buffer before this attempt could read it.
    #[error("request body too large to send again")]
    NotReplayable,
    /// Reading the original body failed in an earlier attempt.
    #[error("request body failed in an earlier attempt")]
    Failed,
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, keeping at most `limit` bytes for replays.
    pub(crate) fn new(body: B, limit: u64) -> Self {
        if body.is_end_stream() {
            return Self {
                inner: Inner::Empty,
            };
        }
        let hint = body.size_hint();
        let shared = Shared {
            body: Some(body),
            chunks: Vec::new(),
            buffered: 0,
            limit,
            // Known to be too large: do not even start buffering.
            capped: hint.lower() > limit,
            read: 0,
            ended: false,
            failed: false,
            trailers: None,
            generation: 0,
        };
        Self {
            inner: Inner::Shared {
                shared: Arc::new(Mutex::new(shared)),
                generation: 0,
                index: 0,
                trailers_sent: false,
                hint,
            },
        }
    }
}

impl<B> ReplayBody<B> {
    /// Whether a new attempt could send the whole body again.
    pub(crate) fn is_replayable(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Shared { shared, .. } => {
                let s = lock(shared);
                !s.failed && (!s.capped || s.read == 0)
            }
        }
    }

    /// Whether the whole body was read and kept, so that another attempt can send
    /// it while this one is still in flight (a hedge): older attempts go on
    /// reading the kept chunks.
    pub(crate) fn is_complete(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Shared { shared, .. } => {
                let s = lock(shared);
                s.ended && !s.capped && !s.failed
            }
        }
    }

    /// The body for a new attempt: it replays from the start, and older attempts
    /// may no longer read the original.
    pub(crate) fn next_attempt(&self) -> Self {
        match &self.inner {
            Inner::Empty => Self {
                inner: Inner::Empty,
            },
            Inner::Shared { shared, hint, .. } => {
                let mut s = lock(shared);
                s.generation += 1;
                Self {
                    inner: Inner::Shared {
                        shared: shared.clone(),
                        generation: s.generation,
                        index: 0,
                        trailers_sent: false,
                        hint: *hint,
                    },
                }
            }
        }
    }
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Inner::Shared {
            shared,
            generation,
            index,
            trailers_sent,
            ..
        } = &mut self.get_mut().inner
        else {
            return Poll::Ready(None);
        };
        let mut s = lock(shared);
        if !s.capped && *index < s.chunks.len() {
            let chunk = s.chunks[*index].clone();
            *index += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if *index < s.read {
            return Poll::Ready(Some(Err(ReplayError::NotReplayable.into())));
        }
        if s.ended {
            if *trailers_sent {
                return Poll::Ready(None);
            }
            *trailers_sent = true;
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        if s.failed {
            return Poll::Ready(Some(Err(ReplayError::Failed.into())));
        }
        if *generation != s.generation {
            return Poll::Ready(Some(Err(ReplayError::Superseded.into())));
        }
        let Some(body) = s.body.as_mut() else {
            return Poll::Ready(Some(Err(ReplayError::Failed.into())));
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.ended = true;
                s.body = None;
                *trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                s.failed = true;
                s.body = None;
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    s.read += 1;
                    *index += 1;
                    if !s.capped {
                        s.buffered = s.buffered.saturating_add(data.len() as u64);
                        if s.buffered > s.limit {
                            s.capped = true;
                            s.chunks = Vec::new();
                        } else {
                            s.chunks.push(data.clone());
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    s.trailers = Some(trailers.clone());
                    s.ended = true;
                    s.body = None;
                    *trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Shared {
                shared,
                index,
                trailers_sent,
                ..
            } => {
                let s = lock(shared);
                s.ended && *trailers_sent && *index >= s.read
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            // Every attempt sends the whole body.
            Inner::Shared { hint, .. } => *hint,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Empty => f.write_str("ReplayBody::Empty"),
            Inner::Shared {
                generation, index, ..
            } => f
                .debug_struct("ReplayBody")
                .field("generation", generation)
                .field("index", index)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// A body of data chunks, each returned by its own poll.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(parts: &[&'static str]) -> Chunks {
        Chunks(
            parts
                .iter()
                .map(|p| Bytes::from_static(p.as_bytes()))
                .collect(),
        )
    }

    async fn read_all<B>(body: B) -> Result<Bytes, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_retry_replays_what_the_first_attempt_read_then_the_rest() {
        let first = ReplayBody::new(chunks(&["ab", "cd", "ef"]), 1024);
        let mut partial = first.next_attempt();
        drop(first);
        // The first attempt read only one chunk before failing.
        let one = partial.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(one, "ab");
        assert!(partial.is_replayable());
        let retry = partial.next_attempt();
        drop(partial);
        assert_eq!(read_all(retry).await.unwrap(), "abcdef");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_streamed_once_and_not_replayable() {
        let first = ReplayBody::new(chunks(&["0123", "4567", "89"]), 6);
        let retry = first.next_attempt();
        assert_eq!(read_all(first.next_attempt()).await.unwrap(), "0123456789");
        assert!(!retry.is_replayable());
        // An attempt that still tries gets an error, never a truncated body.
        let err = read_all(retry.next_attempt()).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ReplayError>(),
            Some(ReplayError::NotReplayable)
        ));
    }

    #[tokio::test]
    async fn an_older_attempt_cannot_read_past_what_was_buffered() {
        let first = ReplayBody::new(chunks(&["ab", "cd"]), 1024);
        let mut old = first.next_attempt();
        let new = old.next_attempt();
        let err = old.frame().await.unwrap().unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ReplayError>(),
            Some(ReplayError::Superseded)
        ));
        assert_eq!(read_all(new).await.unwrap(), "abcd");
    }

    #[tokio::test]
    async fn an_empty_body_is_free_to_replay() {
        let body = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 0);
        assert!(body.is_end_stream());
        assert!(body.next_attempt().is_replayable());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn a_known_oversized_body_is_replayable_only_while_untouched() {
        let full =
            http_body_util::Full::new(Bytes::from(vec![7u8; 100])).map_err(|never| match never {});
        let body = ReplayBody::new(full, 10);
        assert!(
            body.is_replayable(),
            "nothing read yet: a refused connection can be retried"
        );
        let retry = body.next_attempt();
        assert_eq!(retry.size_hint().exact(), Some(100));
        assert_eq!(read_all(retry).await.unwrap().len(), 100);
        assert!(!body.is_replayable());
    }
}
