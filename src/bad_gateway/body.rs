use super::Answering;
use crate::error::{BoxError, ErrorKind, GatewayError, Phase};
use crate::grpc::{self, Framing};
use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response body of [`BadGateway`](super::BadGateway): the upstream's body,
    /// watched, or a synthetic answer.
    ///
    /// When the upstream body fails, or grows past the
    /// [`ResponsePolicy`](crate::ResponsePolicy)'s limit, or ends short of the size it
    /// announced, the failure is classified and reported once and the stream ends
    /// with a [`GatewayError`], never cleanly, so the server aborts the connection
    /// (HTTP/1.1) or resets the stream (HTTP/2). A gRPC response ends instead with
    /// `grpc-status` trailers.
    ///
    /// ```
    /// use tower_bad_gateway::BadGatewayLayer;
    /// use tower_bad_gateway::bad_gateway::ResponseBody;
    /// use http_body_util::{BodyExt, Full};
    /// use bytes::Bytes;
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from("hello"))))
    /// });
    /// let res = BadGatewayLayer::new().layer(upstream).oneshot(http::Request::new(())).await.unwrap();
    /// let body: ResponseBody<Full<Bytes>> = res.into_body();
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Upstream {
            #[pin]
            body: B,
            tally: Tally,
        },
        Synthetic {
            #[pin]
            body: Full<Bytes>,
        },
        Done,
    }
}

/// How a stream that fails after its head ends.
#[derive(Debug)]
pub(crate) enum End {
    /// With the error: the server aborts the connection or resets the stream.
    Error,
    /// With `grpc-status` trailers (native gRPC, where trailers reach the caller).
    GrpcTrailers,
    /// With a gRPC-Web trailer frame in the body when the body stands at a message
    /// boundary (base64 for `-text` callers); mid-message, with the error. Boxed:
    /// the body of every response carries this.
    GrpcWeb(Box<Framing>),
}

/// What the body counts, and needs to classify and report a failure.
struct Tally {
    /// The settings, the request, the next hop and the start.
    answering: Box<Answering>,
    end: End,
    /// The body size limit; `u64::MAX` for none. (Plain integers rather than
    /// `Option`s keep the body, moved with every response, 16 bytes smaller.)
    limit: u64,
    /// The exact size the upstream announced; `u64::MAX` if it did not.
    expected: u64,
    received: u64,
    status: StatusCode,
}

impl<B: Body> ResponseBody<B> {
    pub(super) fn upstream(
        body: B,
        answering: Box<Answering>,
        end: End,
        limit: Option<u64>,
        status: StatusCode,
    ) -> Self {
        let expected = body.size_hint().exact().unwrap_or(u64::MAX);
        let tally = Tally {
            answering,
            end,
            limit: limit.unwrap_or(u64::MAX),
            expected,
            received: 0,
            status,
        };
        Self {
            inner: Inner::Upstream { body, tally },
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn synthetic(body: Full<Bytes>) -> Self {
        Self {
            inner: Inner::Synthetic { body },
        }
    }
}

impl Tally {
    /// The head went out with the upstream's status: that is what the client got.
    fn fail(&self, error: BoxError) -> GatewayError {
        self.answering
            .classify(error, Phase::ReadBody)
            .with_received_status(self.status)
            .answered_with(self.status)
    }

    fn fail_with(&self, kind: ErrorKind) -> GatewayError {
        let err = GatewayError::new(kind)
            .with_phase(Phase::ReadBody)
            .with_received_status(self.status)
            .answered_with(self.status);
        self.answering.stamp(err)
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Upstream { body, tally } => f
                .debug_struct("ResponseBody::Upstream")
                .field("body", body)
                .field("received", &tally.received)
                .field("limit", &(tally.limit != u64::MAX).then_some(tally.limit))
                .finish_non_exhaustive(),
            Inner::Synthetic { body } => f
                .debug_struct("ResponseBody::Synthetic")
                .field("body", body)
                .finish(),
            Inner::Done => f.write_str("ResponseBody::Done"),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = GatewayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut inner = self.project().inner;
        let err = match inner.as_mut().project() {
            InnerProj::Synthetic { body } => {
                return body.poll_frame(cx).map_err(|never| match never {});
            }
            InnerProj::Done => return Poll::Ready(None),
            InnerProj::Upstream { body, tally } => match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Some(data) = frame.data_ref() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    tally.received = tally.received.saturating_add(data.remaining() as u64);
                    if tally.received > tally.limit {
                        tally.fail_with(ErrorKind::BodyTooLarge)
                    } else {
                        if let End::GrpcWeb(framing) = &mut tally.end {
                            framing.feed(data.chunk());
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Some(Err(error)) => tally.fail(error.into()),
                // `expected` is `u64::MAX` when unknown, which nothing falls short of
                // (no body is that long).
                None if tally.expected != u64::MAX && tally.received < tally.expected => {
                    tally.fail_with(ErrorKind::ResponseIncomplete)
                }
                None => return Poll::Ready(None),
            },
        };
        // A failure: report it once, drop the upstream body, and end the stream with
        // the error, or, for gRPC, with its status where the caller can read it.
        let InnerProj::Upstream { tally, .. } = inner.as_mut().project() else {
            return Poll::Ready(None);
        };
        let settings = &tally.answering.settings;
        settings.report(&err, &tally.answering.info);
        let frame = match &tally.end {
            End::GrpcTrailers => Frame::trailers(settings.renderer.grpc_trailers(&err)),
            End::GrpcWeb(framing) if framing.at_boundary() => {
                let trailers = settings.renderer.grpc_trailers(&err);
                Frame::data(grpc::trailer_frame(&trailers, framing.is_text()))
            }
            End::GrpcWeb(_) | End::Error => {
                inner.set(Inner::Done);
                return Poll::Ready(Some(Err(err)));
            }
        };
        inner.set(Inner::Done);
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream { body, .. } => body.is_end_stream(),
            Inner::Synthetic { body } => body.is_end_stream(),
            Inner::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream { body, .. } => body.size_hint(),
            Inner::Synthetic { body } => body.size_hint(),
            Inner::Done => SizeHint::with_exact(0),
        }
    }
}
