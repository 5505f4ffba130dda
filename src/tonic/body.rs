use super::Context;
use crate::error::{BoxError, Phase};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::task::Poll;

pin_project! {
    /// Response body of [`IntoStatus`](super::IntoStatus): the inner body, whose
    /// errors become a [`tonic::Status`] like the service's own.
    ///
    /// ```
    /// use tower_bad_gateway::tonic::{IntoStatus, IntoStatusBody};
    /// use http_body_util::{BodyExt, Full};
    /// use bytes::Bytes;
    /// use tower::ServiceExt;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ok = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from("hi"))))
    /// });
    /// let res = IntoStatus::new(ok).oneshot(http::Request::new(())).await.unwrap();
    /// let body: IntoStatusBody<Full<Bytes>> = res.into_body();
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
    /// # }
    /// ```
    pub struct IntoStatusBody<B> {
        #[pin]
        inner: B,
        cx: Context,
    }
}

impl<B> IntoStatusBody<B> {
    pub(super) fn new(inner: B, cx: Context) -> Self {
        Self { inner, cx }
    }
}

impl<B: fmt::Debug> fmt::Debug for IntoStatusBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoStatusBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for IntoStatusBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = ::tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        this.inner
            .poll_frame(cx)
            .map_err(|error| this.cx.status(error.into(), Phase::ReadBody))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
