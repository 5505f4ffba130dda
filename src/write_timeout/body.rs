use super::{DONE, STARTED, WAITING_DOWNSTREAM, Watch};
use crate::error::BoxError;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project! {
    /// The request body as [`WriteTimeout`] hands it to the client.
    ///
    /// ```
    /// use tower_bad_gateway::write_timeout::UploadBody;
    /// // The request body type a client behind `WriteTimeoutLayer` is built for.
    /// type ClientBody = UploadBody<http_body_util::Full<bytes::Bytes>>;
    /// # let _: Option<ClientBody> = None;
    /// ```
    pub struct UploadBody<B> {
        #[pin]
        body: B,
        watch: Option<Arc<Watch>>,
    }

    impl<B> PinnedDrop for UploadBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // A dropped body is no longer the upstream's to take.
            if let Some(watch) = &this.watch {
                watch.mark(DONE, 0);
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for UploadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadBody")
            .field("body", &self.body)
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

impl<B> Body for UploadBody<B>
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
        let polled = this.body.poll_frame(cx);
        if let Some(watch) = this.watch {
            match &polled {
                Poll::Pending => watch.mark(STARTED | WAITING_DOWNSTREAM, 0),
                Poll::Ready(Some(Ok(_))) => {
                    watch.touch();
                    watch.mark(STARTED, WAITING_DOWNSTREAM);
                }
                Poll::Ready(_) => watch.mark(STARTED | DONE, WAITING_DOWNSTREAM),
            }
        }
        polled.map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> UploadBody<B> {
    pub(super) fn new(body: B, watch: Option<Arc<Watch>>) -> Self {
        Self { body, watch }
    }
}
