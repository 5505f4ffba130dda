use super::{Answering, BadGatewayLayer, NextHop, ResponseBody, ResponseFuture, Settings};
use crate::classify::Carried;
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::render::RequestInfo;
use http::{Request, Response};
use http_body::Body;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that turns every failure of the upstream call into a typed
/// [`GatewayError`](crate::GatewayError) and a correct answer. Its `Error` is
/// [`Infallible`]: it always answers.
///
/// See the [module docs](crate::bad_gateway) for what it does, and
/// [`BadGatewayLayer`] to configure it.
///
/// ```
/// use tower_bad_gateway::BadGateway;
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let upstream = tower::service_fn(|_req: http::Request<()>| async {
///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::TimedOut))
/// });
/// let res = BadGateway::new(upstream).oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 504);
/// assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; error=http_response_timeout");
/// # }
/// ```
pub struct BadGateway<S> {
    inner: S,
    settings: Arc<Settings>,
    /// An error the inner service's `poll_ready` returned: the next call is answered
    /// with it instead of calling the inner service.
    ready_error: Option<BoxError>,
}

impl<S> BadGateway<S> {
    /// Wraps `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        static DEFAULT: OnceLock<Arc<Settings>> = OnceLock::new();
        Self::from_settings(inner, DEFAULT.get_or_init(Arc::default).clone())
    }

    pub(crate) fn from_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            settings,
            ready_error: None,
        }
    }

    /// A [`BadGatewayLayer`] to configure.
    pub fn layer() -> BadGatewayLayer {
        BadGatewayLayer::new()
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S: Clone> Clone for BadGateway<S> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready: it owes nobody a stored error.
        Self {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for BadGateway<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BadGateway")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .field("ready_error", &self.ready_error)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BadGateway<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = bytes::Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            // Infallible means answering: keep the error for the call it was for.
            Poll::Ready(Err(err)) => {
                self.ready_error = Some(err.into());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let mut info =
            RequestInfo::from_parts(req.method(), req.headers(), settings.renderer.id_header())
                .with_uri(req.uri());
        if info.is_grpc() {
            info.set_grpc_trailers(crate::grpc::can_receive_trailers(
                req.version(),
                req.headers(),
            ));
        }
        let next_hop = NextHop::of(req.uri());
        let start = Deadline::start_of(req.extensions().get());
        // The layers below classify with this layer's classifier too. One carried
        // from further out (rare: this layer is usually the outermost) joins it in
        // this request's own copy of the settings, which keeps the per-request
        // state small.
        let classifier = Carried::resolve(
            &settings.classifier,
            req.extensions_mut(),
            settings.stack_shares_classifier,
        );
        let settings = match classifier {
            Some(c) if !Arc::ptr_eq(&c, &settings.classifier) => Arc::new(Settings {
                classifier: c,
                ..Settings::clone(settings)
            }),
            _ => settings.clone(),
        };
        let answering = Box::new(Answering {
            settings,
            info,
            next_hop,
            start,
        });
        match self.ready_error.take() {
            Some(err) => ResponseFuture::failed(err, answering),
            None => ResponseFuture::new(self.inner.call(req), answering),
        }
    }
}
