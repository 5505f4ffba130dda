use super::layer::Steering;
use super::pick::{Pick, Unavailable};
use super::report::Attempt;
use super::{Address, EndpointSet, ResponseFuture, Trail, Tried, UpstreamsLayer};
use crate::classify::Carried;
use crate::error::BoxError;
use crate::timeout::HeadDeadline;
use http::{Request, Response};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that sends every attempt to an endpoint of an [`EndpointSet`],
/// picked per attempt, and judges the endpoint's health by how the attempt went.
/// See the [module docs](super).
///
/// `poll_ready` picks the endpoint first: when none may take a request, the inner
/// service is not polled at all, and the call fails at once with a
/// [`GatewayError`](crate::GatewayError) of kind
/// [`DestinationUnavailable`](crate::ErrorKind::DestinationUnavailable). Errors are
/// [`BoxError`]s: an attempt's failure is a classified `GatewayError` naming the
/// endpoint as its [`next_hop`](crate::GatewayError::next_hop).
///
/// ```
/// use tower_bad_gateway::upstreams::{EndpointSet, Upstreams};
/// use tower_bad_gateway::{ErrorKind, GatewayError};
/// use tower::ServiceExt;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = tower::service_fn(|req: http::Request<()>| async move {
///     // The client sees the endpoint's scheme and authority, the request's path.
///     assert_eq!(req.uri(), "http://10.0.0.1:8080/orders?id=7");
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// });
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080"]).unwrap();
/// let svc = Upstreams::new(client, set);
/// let res = svc.oneshot(http::Request::get("/orders?id=7").body(()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
pub struct Upstreams<S> {
    inner: S,
    steering: Arc<Steering>,
    /// The pick `poll_ready` made, for the next `call`.
    reserved: Option<Result<Pick, Unavailable>>,
}

impl<S> Upstreams<S> {
    /// Sends every attempt to an endpoint of `set`.
    pub fn new(inner: S, set: EndpointSet) -> Self {
        tower_layer::Layer::layer(&UpstreamsLayer::new(set), inner)
    }

    pub(super) fn from_shared(inner: S, steering: Arc<Steering>) -> Self {
        Self {
            inner,
            steering,
            reserved: None,
        }
    }

    /// An [`UpstreamsLayer`] for `set`.
    pub fn layer(set: EndpointSet) -> UpstreamsLayer {
        UpstreamsLayer::new(set)
    }

    crate::macros::define_inner_service_accessors!();
}

/// A clone has made no pick yet.
impl<S: Clone> Clone for Upstreams<S> {
    fn clone(&self) -> Self {
        Self::from_shared(self.inner.clone(), self.steering.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for Upstreams<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstreams")
            .field("inner", &self.inner)
            .field("set", &self.steering.set)
            .field("reserved", &self.reserved.as_ref().map(|r| r.as_ref().ok()))
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for Upstreams<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(set) = &self.steering.set {
            let reserved = self
                .reserved
                .get_or_insert_with(|| set.pick(None, crate::random::next_u64()));
            if reserved.is_err() {
                // Failing fast: the client is not even asked whether it is ready.
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let Some(set) = &self.steering.set else {
            let steering = &self.steering;
            let attempt = Attempt::start(req.method(), || {
                Some(Carried::read(&steering.classifier, req.extensions()))
            });
            let hop = Attempt::hop_of(req.uri());
            return ResponseFuture::passthrough(self.inner.call(req), attempt, hop);
        };
        // The retry layer adds it only after an attempt, so it is never empty.
        let tried = req.extensions().get::<Tried>();
        let pick = match self.reserved.take() {
            // A retry: go elsewhere if anywhere else may take it.
            Some(Ok(pick)) if tried.is_some_and(|t| t.contains(pick.key())) => {
                Ok(set.pick(tried, crate::random::next_u64()).unwrap_or(pick))
            }
            Some(reserved) => reserved,
            // `call` without `poll_ready` breaks the `Service` contract; pick anyway.
            None => set.pick(tried, crate::random::next_u64()),
        };
        match pick {
            Ok(mut pick) => {
                // A hedged request's attempts say where they went, for the next hedge.
                if let Some(trail) = req.extensions().get::<Trail>() {
                    trail.mark(pick.key());
                }
                let uri = std::mem::take(req.uri_mut());
                *req.uri_mut() = pick.endpoint().rewrite(uri);
                // A resolved endpoint: the URI keeps its name, the client is told
                // its address.
                if let Some(address) = pick.endpoint().address() {
                    req.extensions_mut().insert(Address(address));
                }
                // A `Timeout` above says when its wait ends, so that the attempt it
                // drops then counts as timed out.
                if !self.steering.timeout_below {
                    if let Some(head) = req.extensions().get::<HeadDeadline>() {
                        pick.watch(*head);
                    }
                }
                // Judged by the classifier the request carries, with this layer's.
                let classifier = Carried::read(&self.steering.classifier, req.extensions());
                let attempt = Attempt::start(req.method(), || None);
                let post = req.method() == http::Method::POST;
                ResponseFuture::picked(self.inner.call(req), pick, classifier, attempt, post)
            }
            Err(unavailable) => ResponseFuture::unavailable(unavailable),
        }
    }
}
