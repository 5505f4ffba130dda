use super::health::Verdict;
use super::pick::{Pick, Unavailable};
use super::report::Attempt;
use super::set::Unresolved;
use super::{AnsweredBy, NoHealthyEndpoint};
use crate::classify::Classifier;
use crate::error::{BoxError, ErrorKind, GatewayError, NextHop, Phase};
use crate::grpc;
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response future of [`Upstreams`](super::Upstreams).
    ///
    /// ```
    /// use tower_bad_gateway::upstreams::{EndpointSet, Upstreams};
    /// use tower::{Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(()))
    /// });
    /// let mut svc = Upstreams::new(client, EndpointSet::from_urls(["http://10.0.0.1"]).unwrap());
    /// svc.ready().await.unwrap();
    /// let future: tower_bad_gateway::upstreams::ResponseFuture<_> = svc.call(http::Request::new(()));
    /// assert_eq!(future.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Passthrough {
            #[pin]
            future: F,
            attempt: Attempt,
            // The request's own authority, for the attempt's metrics.
            hop: Option<NextHop>,
        },
        Picked {
            #[pin]
            future: F,
            pick: Pick,
            classifier: Arc<Classifier>,
            attempt: Attempt,
            // Whether the request may be a gRPC call (a `POST`), whose answer's
            // `grpc-status` may make it retried: other answers skip the lookup.
            post: bool,
        },
        Unavailable {
            unavailable: Unavailable,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn passthrough(future: F, attempt: Attempt, hop: Option<NextHop>) -> Self {
        Self {
            kind: Kind::Passthrough {
                future,
                attempt,
                hop,
            },
        }
    }

    pub(super) fn picked(
        future: F,
        pick: Pick,
        classifier: Arc<Classifier>,
        attempt: Attempt,
        post: bool,
    ) -> Self {
        Self {
            kind: Kind::Picked {
                future,
                pick,
                classifier,
                attempt,
                post,
            },
        }
    }

    pub(super) fn unavailable(unavailable: Unavailable) -> Self {
        Self {
            kind: Kind::Unavailable { unavailable },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Upstreams::ResponseFuture");
        match &self.kind {
            Kind::Passthrough { .. } => d.field("endpoint", &"(the request's)"),
            Kind::Picked { pick, .. } => d.field("pick", pick),
            Kind::Unavailable { unavailable } => d.field("unavailable", unavailable),
        };
        d.finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough {
                future,
                attempt,
                hop,
            } => match ready!(future.poll(cx)) {
                Ok(res) => {
                    attempt.answered(res.status(), hop.as_ref());
                    Poll::Ready(Ok(res))
                }
                Err(error) => {
                    let error: BoxError = error.into();
                    attempt.failed_with(&*error, hop.as_ref());
                    Poll::Ready(Err(error))
                }
            },
            KindProj::Picked {
                future,
                pick,
                classifier,
                attempt,
                post,
            } => match ready!(future.poll(cx)) {
                Ok(mut res) => {
                    let status = res.status();
                    attempt.answered(status, pick.next_hop());
                    let counts = pick.policy().counts_answer(status, res.headers());
                    pick.record(if counts {
                        Verdict::Failure
                    } else {
                        Verdict::Success
                    });
                    // What a retry decided on this answer needs, to go elsewhere:
                    // a failing status, or a gRPC call's status (gRPC calls are
                    // `POST`s; other answers skip the lookup).
                    if !(status.is_success() || status.is_redirection())
                        || (*post && res.headers().contains_key(grpc::GRPC_STATUS))
                    {
                        res.extensions_mut().insert(AnsweredBy(pick.key()));
                    }
                    Poll::Ready(Ok(res))
                }
                Err(error) => {
                    let err = classifier
                        .classify_owned(error.into(), Phase::AwaitHead)
                        .with_next_hop(pick.hop().clone());
                    attempt.failed(err.kind(), pick.next_hop());
                    let counts = pick.policy().counts_error(&err);
                    pick.record(if counts {
                        Verdict::Failure
                    } else {
                        Verdict::Neutral
                    });
                    Poll::Ready(Err(Box::new(err)))
                }
            },
            KindProj::Unavailable { unavailable } => {
                let mut err = match unavailable.unresolved.as_deref() {
                    Some(Unresolved::Failed { kind, reason }) => GatewayError::new(*kind)
                        .with_source(NoHealthyEndpoint::Unresolved(reason.clone())),
                    Some(Unresolved::Resolving) => {
                        GatewayError::new(ErrorKind::DestinationUnavailable)
                            .with_source(NoHealthyEndpoint::Resolving)
                            .with_retry_after(std::time::Duration::from_secs(1))
                    }
                    None => GatewayError::new(ErrorKind::DestinationUnavailable).with_source(
                        if unavailable.empty {
                            NoHealthyEndpoint::Empty
                        } else {
                            NoHealthyEndpoint::AllOut
                        },
                    ),
                };
                if let Some(after) = unavailable.retry_after {
                    err = err.with_retry_after(after);
                }
                Poll::Ready(Err(Box::new(err)))
            }
        }
    }
}
