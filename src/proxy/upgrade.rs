//! HTTP/1.1 upgrades: the upstream's side taken over below the gateway (so a
//! failure is the gateway's to answer and report), the two sides joined above it.

use crate::error::{BoxError, ErrorKind, GatewayError};
use http::{Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The upstream's upgraded connection, carried up in the `101`'s extensions.
#[derive(Clone)]
pub(crate) struct UpstreamUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl UpstreamUpgrade {
    fn take(&self) -> Option<Upgraded> {
        self.0.lock().ok().and_then(|mut u| u.take())
    }
}

/// Takes the upstream's side of an upgrade over before the `101` goes up the
/// stack: put it right on the client, under the gateway
/// ([`GatewayLayer`](crate::GatewayLayer)`.layer(TakeUpgradeLayer::new().layer(client))`).
/// An upstream connection that cannot be taken over is then an error of the
/// attempt, [`UpgradeFailed`](ErrorKind::UpgradeFailed), that the gateway
/// answers (`502`, `Proxy-Status: ...; error=http_upgrade_failed`) and reports
/// like any other failure; the per-attempt timeout bounds the wait.
///
/// ```
/// use tower::Layer;
/// use tower_bad_gateway::GatewayLayer;
/// use tower_bad_gateway::proxy::TakeUpgradeLayer;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder(TokioExecutor::new()).build_http::<tower_bad_gateway::UpstreamBody<axum::body::Body>>();
/// let gateway = GatewayLayer::new().layer(TakeUpgradeLayer::new().layer(client));
/// # let _ = gateway;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TakeUpgradeLayer {
    _private: (),
}

impl TakeUpgradeLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TakeUpgradeLayer {
    type Service = TakeUpgrade<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TakeUpgrade { inner }
    }
}

/// The service of [`TakeUpgradeLayer`].
#[derive(Debug, Clone)]
pub struct TakeUpgrade<S> {
    inner: S,
}

impl<S> TakeUpgrade<S> {
    /// Takes over the upgrades `inner` answers.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The [`TakeUpgradeLayer`].
    pub fn layer() -> TakeUpgradeLayer {
        TakeUpgradeLayer::new()
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for TakeUpgrade<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = TakeUpgradeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let asked = super::headers::has_field(req.headers(), &http::header::UPGRADE);
        TakeUpgradeFuture {
            state: State::Waiting {
                future: self.inner.call(req),
                asked,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`TakeUpgrade`].
    pub struct TakeUpgradeFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Waiting { #[pin] future: F, asked: bool },
        // Boxed: only an upgrade waits here, and every answer's future is
        // as large as its largest state.
        Taking { res: Option<Box<Response<B>>>, on: OnUpgrade },
    }
}

impl<F, B, E> Future for TakeUpgradeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Waiting { future, asked } => {
                    let mut res = match std::task::ready!(future.poll(cx)) {
                        Ok(res) => res,
                        Err(err) => return Poll::Ready(Err(err.into())),
                    };
                    if !*asked || res.status() != StatusCode::SWITCHING_PROTOCOLS {
                        // Declined (a `200`, a `401`...): the answer passes through.
                        return Poll::Ready(Ok(res));
                    }
                    let on = hyper::upgrade::on(&mut res);
                    state.set(State::Taking {
                        res: Some(Box::new(res)),
                        on,
                    });
                }
                StateProj::Taking { res, on } => {
                    let taken = std::task::ready!(Pin::new(on).poll(cx));
                    let Some(mut res) = res.take().map(|res| *res) else {
                        // Polled again after it was ready.
                        return Poll::Pending;
                    };
                    return Poll::Ready(match taken {
                        Ok(upgraded) => {
                            res.extensions_mut()
                                .insert(UpstreamUpgrade(Arc::new(Mutex::new(Some(upgraded)))));
                            Ok(res)
                        }
                        Err(err) => Err(Box::new(
                            GatewayError::new(ErrorKind::UpgradeFailed).with_source(err),
                        )),
                    });
                }
            }
        }
    }
}

impl<F, B> fmt::Debug for TakeUpgradeFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakeUpgradeFuture").finish_non_exhaustive()
    }
}

/// The upstream's side of an upgrade the proxy joins.
pub(crate) enum UpstreamSide {
    /// Taken over below the gateway.
    Taken(Upgraded),
    /// Still to be taken over (no [`TakeUpgrade`] below): a failure then can only
    /// close the client's connection, its `101` gone out.
    Pending(OnUpgrade),
}

impl UpstreamSide {
    /// The upstream side of a `101`'s extensions.
    pub(crate) fn of(extensions: &mut http::Extensions) -> Option<Self> {
        if let Some(upgraded) = extensions
            .remove::<UpstreamUpgrade>()
            .and_then(|u| u.take())
        {
            return Some(Self::Taken(upgraded));
        }
        extensions.remove::<OnUpgrade>().map(Self::Pending)
    }
}

/// Joins the client's upgraded connection and the upstream's, both ways, until
/// both have closed.
pub(crate) async fn join(downstream: OnUpgrade, upstream: UpstreamSide) {
    let upstream = match upstream {
        UpstreamSide::Taken(upgraded) => upgraded,
        UpstreamSide::Pending(on) => match on.await {
            Ok(upgraded) => upgraded,
            Err(_err) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(error = %_err, "the upstream's upgraded connection could not be taken over");
                return;
            }
        },
    };
    // The client's side is ready once its `101` has gone out.
    let Ok(downstream) = downstream.await else {
        return;
    };
    let mut downstream = hyper_util::rt::TokioIo::new(downstream);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}
