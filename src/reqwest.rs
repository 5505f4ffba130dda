//! A `reqwest::Client` as a `tower::Service<http::Request<B>>`, so the whole
//! stack ([`GatewayLayer`](crate::GatewayLayer), or any of its layers) can wrap it.
//!
//! ```text
//! your code ─▶ [Retry ─▶ Timeout] ─▶ ReqwestService ─▶ reqwest::Client ─▶ upstream
//! ```
//!
//! Its errors are reqwest's own, which the classifier reads with reqwest's
//! predicates (`is_connect`, `is_timeout`, `is_body`, `is_decode`, `is_builder`).
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::reqwest::ReqwestService;
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! use std::time::Duration;
//!
//! let api = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)))
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! # let _ = api;
//! ```

use crate::BoxError;
use bytes::Bytes;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_service::Service;

/// A `reqwest::Client` as a `Service<http::Request<B>>`, answering
/// `http::Response<reqwest::Body>`. Cheap to clone (reqwest's client is an `Arc`).
#[derive(Debug, Clone, Default)]
pub struct ReqwestService {
    client: ::reqwest::Client,
}

impl ReqwestService {
    /// Wraps `client`, with its connection pool and settings.
    pub fn new(client: ::reqwest::Client) -> Self {
        Self { client }
    }

    /// The wrapped client.
    pub fn client(&self) -> &::reqwest::Client {
        &self.client
    }
}

type Pending = <::reqwest::Client as Service<::reqwest::Request>>::Future;

pin_project! {
    /// Response future of [`ReqwestService`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending {
            #[pin]
            pending: Pending,
        },
        Invalid {
            error: Option<::reqwest::Error>,
        },
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<::reqwest::Body>, ::reqwest::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { pending } => pending.poll(cx).map_ok(http::Response::from),
            StateProj::Invalid { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                // Polled again after completion.
                None => Poll::Pending,
            },
        }
    }
}

impl<B> Service<http::Request<B>> for ReqwestService
where
    B: http_body::Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<::reqwest::Body>;
    type Error = ::reqwest::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<::reqwest::Request>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = match ::reqwest::Request::try_from(req.map(::reqwest::Body::wrap)) {
            Ok(req) => State::Sending {
                pending: self.client.call(req),
            },
            // An invalid URL, for one: reqwest calls it a builder error, classified
            // as a proxy configuration error.
            Err(error) => State::Invalid { error: Some(error) },
        };
        ResponseFuture { state }
    }
}
