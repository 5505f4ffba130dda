use super::body::End;
use super::{Answering, ResponseBody};
use crate::error::{Attempts, BoxError, ErrorKind, GatewayError, Phase};
use crate::grpc::{self, Framing};
use crate::render::{PROXY_STATUS, RequestInfo};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response future of [`BadGateway`](super::BadGateway).
    ///
    /// ```
    /// use tower_bad_gateway::BadGatewayLayer;
    /// use tower::{Layer, Service, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let upstream = tower::service_fn(|_req: http::Request<()>| async {
    ///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    /// });
    /// let mut svc = BadGatewayLayer::new().layer(upstream);
    /// svc.ready().await.unwrap();
    /// let future: tower_bad_gateway::bad_gateway::ResponseFuture<_> = svc.call(http::Request::new(()));
    /// assert_eq!(future.await.unwrap().status(), 502);
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        answering: Option<Box<Answering>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Call {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BadGateway::ResponseFuture")
            .field("done", &self.answering.is_none())
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, answering: Box<Answering>) -> Self {
        Self {
            state: State::Call { future },
            answering: Some(answering),
        }
    }

    pub(crate) fn failed(error: BoxError, answering: Box<Answering>) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            answering: Some(answering),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.state.project() {
            StateProj::Call { future } => ready!(future.poll(cx)).map_err(Into::into),
            StateProj::Failed { error } => Err(error
                .take()
                .unwrap_or_else(|| "response future polled after completion".into())),
        };
        let Some(ex) = this.answering.take() else {
            // Polled again after it completed: answer rather than panic.
            let err = GatewayError::new(ErrorKind::Unclassified);
            let res =
                crate::render::Renderer::shared_default().render(&err, &RequestInfo::default());
            return Poll::Ready(Ok(res.map(ResponseBody::synthetic)));
        };
        Poll::Ready(Ok(match result {
            Ok(res) => ex.pass(res),
            Err(error) => {
                let mut ex = ex;
                let err = ex.classify(error, Phase::AwaitHead);
                if ex.next_hop.is_none() {
                    // An origin-form request: the endpoint set below named it.
                    ex.next_hop = err.next_hop().and_then(crate::error::NextHop::of_authority);
                }
                ex.measure(None, Some(err.kind().as_str()));
                ex.answer(err)
            }
        }))
    }
}

impl Answering {
    /// An upstream answer: judged by the policy, then passed on with its body watched.
    #[inline]
    fn pass<B>(self: Box<Self>, res: Response<B>) -> Response<ResponseBody<B>>
    where
        B: Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        let policy = &self.settings.policy;
        let status = res.status();
        // RFC 9110 §15: a status outside 100..=599 is invalid, and a client must
        // treat it as a server error. The `http` crate accepts up to 999.
        if status.as_u16() > 599 {
            let headers = res.into_parts().0.headers;
            self.measure(Some(status), Some(ErrorKind::ProtocolError.as_str()));
            return self.reject(ErrorKind::ProtocolError, status, &headers);
        }
        let mut res = if policy.accepts_all() {
            res
        } else {
            match policy.judge(res) {
                Ok(res) => res,
                Err((kind, headers)) => {
                    self.measure(Some(status), Some(kind.as_str()));
                    return self.reject(kind, status, &headers);
                }
            }
        };
        self.measure(Some(status), None);
        // An upstream's own error, intercepted: its status, our page.
        if policy.intercepts(status, res.headers()) && !self.info.is_grpc() {
            let headers = res.into_parts().0.headers; // the body is dropped unread
            super::report::intercepted(status, &self.info, self.next_hop.as_ref());
            if let Some(hook) = &self.settings.on_intercept {
                hook(status, &self.info);
            }
            let page = self
                .settings
                .renderer
                .intercepted(status, &self.info, &headers);
            return page.map(ResponseBody::synthetic);
        }
        // An upstream's own 5xx, passed on: our member tells clients and logs it
        // is not the gateway's (RFC 9209 §2.1.1 `received-status`).
        if status.is_server_error() {
            self.settings
                .renderer
                .mark_passed_through(res.headers_mut(), status);
        }
        let limit = policy.body_limit();
        // A failure mid-body ends a gRPC call with its status where the caller can
        // read it: trailers where they reach it, a trailer frame for gRPC-Web;
        // elsewhere with an error, never cleanly.
        let end = match self.info.grpc_content_type().map(grpc::web_kind) {
            Some(Some(text)) => End::GrpcWeb(Box::new(Framing::new(text))),
            Some(None) if self.info.grpc_trailers() => End::GrpcTrailers,
            _ => End::Error,
        };
        res.map(|body| ResponseBody::upstream(body, self, end, limit, status))
    }

    /// Records the exchange: the upstream's `status` when it answered, the
    /// `error` token on failure.
    fn measure(&self, status: Option<http::StatusCode>, error: Option<&'static str>) {
        super::report::exchange(self.info.method(), status, error, self.start);
    }

    /// A synthetic answer to an upstream answer that is not passed on. The
    /// `Proxy-Status` members the upstream's answer carried are kept, ours after
    /// them (RFC 9209 §2: the member nearest the client comes last).
    fn reject<B>(
        &self,
        kind: ErrorKind,
        received: http::StatusCode,
        upstream: &http::HeaderMap,
    ) -> Response<ResponseBody<B>> {
        let err = self.stamp(GatewayError::new(kind).with_received_status(received));
        let mut res = self.answer(err);
        let theirs = upstream.get_all(PROXY_STATUS);
        if theirs.iter().next().is_some() {
            let headers = res.headers_mut();
            let ours = headers.remove(PROXY_STATUS);
            for member in theirs {
                headers.append(PROXY_STATUS, member.clone());
            }
            if let Some(ours) = ours {
                headers.append(PROXY_STATUS, ours);
            }
        }
        res
    }

    /// A synthetic answer for a failure before any of the upstream's answer went
    /// out, reported with the status it was answered with.
    fn answer<B>(&self, err: GatewayError) -> Response<ResponseBody<B>> {
        let mut res = self.settings.renderer.render(&err, &self.info);
        res.extensions_mut().insert(Attempts(err.attempts()));
        if let Some(answered) = res.extensions().get::<GatewayError>() {
            self.settings.report(answered, &self.info);
        }
        res.map(ResponseBody::synthetic)
    }
}
