use super::body::ProxyBody;
use super::headers;
use super::layer::Settings;
use super::upgrade::{self, UpstreamSide};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The answer to a CONNECT: this gateway forwards requests, it does not tunnel.
const CONNECT_REFUSED: &str = "501 Not Implemented\n\nThis gateway does not tunnel: CONNECT (and extended CONNECT) is not supported.\n";

pin_project_lite::pin_project! {
    /// The future of [`Proxy`](super::Proxy).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Refused,
        Forwarded {
            #[pin]
            future: F,
            settings: Arc<Settings>,
            downstream: Option<OnUpgrade>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, settings: Arc<Settings>, downstream: Option<OnUpgrade>) -> Self {
        Self {
            kind: Kind::Forwarded {
                future,
                settings,
                downstream,
            },
        }
    }

    pub(crate) fn refused() -> Self {
        Self {
            kind: Kind::Refused,
        }
    }
}

fn own<B>(status: StatusCode, text: &'static str) -> Response<ProxyBody<B>> {
    let mut res = Response::new(ProxyBody::own(text));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ProxyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused => Poll::Ready(Ok(own(StatusCode::NOT_IMPLEMENTED, CONNECT_REFUSED))),
            KindProj::Forwarded {
                future,
                settings,
                downstream,
            } => {
                let res = match std::task::ready!(future.poll(cx)) {
                    Ok(res) => res,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                let (mut parts, body) = res.into_parts();
                headers::tidy_response(
                    parts.status,
                    parts.version,
                    &mut parts.headers,
                    settings.via.as_ref(),
                );
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    let upstream = UpstreamSide::of(&mut parts.extensions);
                    match (downstream.take(), upstream) {
                        (Some(downstream), Some(upstream)) => {
                            drop(tokio::spawn(upgrade::join(downstream, upstream)));
                        }
                        // A `101` to a request that asked no upgrade (a client
                        // under the gateway lets none through): never sent on.
                        _ => {
                            return Poll::Ready(Ok(own(
                                StatusCode::BAD_GATEWAY,
                                "502 Bad Gateway\n\nThe upstream switched protocols unasked.\n",
                            )));
                        }
                    }
                }
                Poll::Ready(Ok(Response::from_parts(parts, ProxyBody::new(body))))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
