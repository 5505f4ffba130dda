//! The service of each connection [`serve`](super::serve) serves: it gives a
//! request its [`ClientAddr`], calls the stack, and counts the request in
//! flight until its answer's body is done with, for the connection's idle watch.

use super::ClientAddr;
use http::{Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tower_service::Service;

/// The service of one connection. A request goes to it at once when it is
/// ready (the usual case: no clone of the whole stack per request, no clone to
/// drop after it); a service that is not ready yet gets a clone, which waits for
/// its readiness in the request's future, as `oneshot` does.
pub(super) struct Handler<S> {
    service: std::cell::RefCell<S>,
    /// What serves should the cell be borrowed already (it never is).
    spare: S,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
}

impl<S: Clone> Handler<S> {
    /// The handler of a connection from `peer`, and what the connection's idle
    /// watch reads.
    pub(super) fn new(service: &S, peer: std::net::SocketAddr) -> (Self, Arc<Activity>) {
        let activity = Arc::new(Activity::default());
        let handler = Self {
            service: std::cell::RefCell::new(service.clone()),
            spare: service.clone(),
            peer,
            activity: activity.clone(),
        };
        (handler, activity)
    }
}

/// What a connection's idle watch reads: whether a request began since it last
/// looked, and (its `Arc`'s count beyond the watch's and the [`Handler`]'s
/// own) how many are in flight.
#[derive(Default)]
pub(super) struct Activity {
    began: AtomicBool,
}

/// The holders of a connection's [`Activity`] while no request is in flight.
const WATCHERS: usize = 2;

impl Activity {
    /// Whether no request began since the last look and none is in flight
    /// (the watch, which holds one of the counts, calls it).
    pub(super) fn idle_since_last_look(self: &Arc<Self>) -> bool {
        let began = self.began.swap(false, Ordering::Relaxed);
        !began && Arc::strong_count(self) <= WATCHERS
    }
}

/// One request in flight, from its head to the end of its answer's body: a
/// count of its connection's [`Activity`].
struct InFlight {
    _count: Arc<Activity>,
}

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.began.store(true, Ordering::Relaxed);
        Self {
            _count: activity.clone(),
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Handler<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone,
{
    type Response = Response<Tracked<B>>;
    type Error = Infallible;
    type Future = Handled<S::Future, tower::util::Oneshot<S, Request<Incoming>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.peer));
        let in_flight = Some(InFlight::begin(&self.activity));
        // hyper calls one request at a time and never from within a call: the
        // cell is never borrowed twice. Were it, the clone below would serve.
        let Ok(mut service) = self.service.try_borrow_mut() else {
            let service = self.spare.clone();
            let future = Box::pin(tower::util::Oneshot::new(service, req));
            return Handled {
                kind: Kind::Waiting { future },
                in_flight,
            };
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let kind = match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Kind::Called {
                future: service.call(req),
            },
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Kind::Waiting {
                future: Box::pin(tower::util::Oneshot::new(service.clone(), req)),
            },
        };
        Handled { kind, in_flight }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`Handler`]: the service's own, or a clone's `oneshot`;
    /// the request counts as in flight until its answer's body is done with.
    pub(super) struct Handled<F, O> {
        #[pin]
        kind: Kind<F, O>,
        in_flight: Option<InFlight>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, O> {
        Called { #[pin] future: F },
        // Rare, and as big as a request and a clone of the stack: boxed, so that
        // the future hyper keeps (and moves) per request is the stack's alone.
        Waiting { future: std::pin::Pin<Box<O>> },
    }
}

impl<F, O, B> Future for Handled<F, O>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    O: Future<Output = Result<Response<B>, Infallible>>,
{
    type Output = Result<Response<Tracked<B>>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.kind.project() {
            KindProj::Called { future } => std::task::ready!(future.poll(cx)),
            KindProj::Waiting { future } => std::task::ready!(future.as_mut().poll(cx)),
        };
        let in_flight = this.in_flight.take();
        Poll::Ready(res.map(|res| res.map(|body| Tracked { body, in_flight })))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, its request in flight until it is dropped.
    pub(super) struct Tracked<B> {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
