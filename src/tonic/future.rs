use super::{Context, IntoStatusBody};
use crate::error::{BoxError, Phase};
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, ready};

pin_project! {
    /// Response future of [`IntoStatus`](super::IntoStatus).
    ///
    /// ```
    /// use tower_bad_gateway::tonic::{IntoStatus, ResponseFuture};
    /// use tower::{Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let ok = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    /// });
    /// let mut svc = IntoStatus::new(ok);
    /// svc.ready().await.unwrap();
    /// let future: ResponseFuture<_> = svc.call(http::Request::new(()));
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        cx: Option<Context>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, cx: Context) -> Self {
        Self {
            future,
            cx: Some(cx),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoStatus::ResponseFuture")
            .field("done", &self.cx.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<IntoStatusBody<B>>, ::tonic::Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        let Some(ctx) = this.cx.take() else {
            return Poll::Ready(Err(::tonic::Status::internal(
                "response future polled after completion",
            )));
        };
        Poll::Ready(match result {
            Ok(res) => Ok(res.map(|body| IntoStatusBody::new(body, ctx))),
            Err(error) => Err(ctx.status(error.into(), Phase::AwaitHead)),
        })
    }
}
