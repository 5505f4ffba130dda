use super::{Context, IntoStatusBody, IntoStatusLayer, ResponseFuture};
use crate::classify::{Carried, Classifier};
use crate::deadline::Deadline;
use crate::error::{BoxError, NextHop, Phase};
use http::{Request, Response};
use std::sync::Arc;
use std::task::Poll;
use tower_service::Service;

/// Middleware for the client side of gRPC: every failure of the inner service
/// (and of its response bodies) becomes a [`tonic::Status`] with the code of
/// [`ErrorKind::grpc_code`](crate::ErrorKind::grpc_code) and the
/// [`GatewayError`](crate::GatewayError) as its source. See the
/// [module docs](crate::tonic).
///
/// ```
/// use tower_bad_gateway::tonic::IntoStatus;
/// use tower_bad_gateway::GatewayError;
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let refused = tower::service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
/// });
/// let status = IntoStatus::new(refused).oneshot(http::Request::new(())).await.unwrap_err();
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// let err = std::error::Error::source(&status).unwrap().downcast_ref::<GatewayError>().unwrap();
/// assert_eq!(err.kind(), tower_bad_gateway::ErrorKind::ConnectionRefused);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct IntoStatus<S> {
    inner: S,
    classifier: Arc<Classifier>,
}

impl<S> IntoStatus<S> {
    /// Wraps `inner` with the default classifier.
    pub fn new(inner: S) -> Self {
        Self::from_classifier(inner, Arc::default())
    }

    pub(crate) fn from_classifier(inner: S, classifier: Arc<Classifier>) -> Self {
        Self { inner, classifier }
    }

    /// An [`IntoStatusLayer`] to configure.
    pub fn layer() -> IntoStatusLayer {
        IntoStatusLayer::new()
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IntoStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<IntoStatusBody<ResBody>>;
    type Error = ::tonic::Status;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|error| {
            let cx = Context {
                classifier: self.classifier.clone(),
                start: tokio::time::Instant::now(),
                next_hop: None,
            };
            cx.status(error.into(), Phase::Connect)
        })
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The layers below (a retry layer, an endpoint set) classify with it too.
        let classifier = Carried::resolve(&self.classifier, req.extensions_mut(), false)
            .unwrap_or_else(|| self.classifier.clone());
        let cx = Context {
            classifier,
            start: Deadline::start_of(req.extensions().get()),
            next_hop: NextHop::of(req.uri()),
        };
        ResponseFuture::new(self.inner.call(req), cx)
    }
}
