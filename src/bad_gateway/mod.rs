//! The core middleware: every failure of the upstream call becomes a typed
//! [`GatewayError`] and a correct answer.
//!
//! ```text
//! client ──▶ BadGateway ──▶ upstream service (hyper-util Client, reqwest, tonic Channel, ...)
//!                │  Ok(response) ─▶ passed through (unless the ResponsePolicy rejects it);
//!                │                  its body is watched: a failure mid-body is
//!                │                  classified, reported, and ends the stream with an
//!                │                  error (or grpc-status trailers), never cleanly
//!                └─ Err(error)   ─▶ classified, reported once, answered 502/503/504
//!                                   (or gRPC trailers-only), Error = Infallible
//! ```
//!
//! # Example
//!
//! ```
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_bad_gateway::{BadGatewayLayer, GatewayError};
//! use tower_bad_gateway::render::Renderer;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use std::io;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // An "upstream client" that always fails to connect.
//! let client = tower::service_fn(|_req: Request<Full<Bytes>>| async {
//!     Err::<Response<Full<Bytes>>, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
//! });
//! let mut svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new().renderer(Renderer::new().proxy_name("edge")))
//!     .service(client);
//!
//! let res = svc.ready().await.unwrap().call(Request::new(Full::default())).await.unwrap();
//! assert_eq!(res.status(), 502);
//! assert_eq!(res.headers()["proxy-status"], "edge; error=connection_refused");
//! assert!(res.extensions().get::<GatewayError>().is_some());
//! # }
//! ```

mod body;
mod future;
mod layer;
mod report;
mod service;

pub use self::body::ResponseBody;
pub use self::future::ResponseFuture;
pub use self::layer::BadGatewayLayer;
pub use self::service::BadGateway;

use crate::classify::{Classifier, ResponsePolicy};
pub(crate) use crate::error::NextHop;
use crate::error::stamp;
use crate::error::{BoxError, GatewayError, Phase};
use crate::render::{Renderer, RequestInfo};
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

type FailureHook = dyn Fn(&GatewayError) + Send + Sync;
type RequestFailureHook = dyn Fn(&GatewayError, &RequestInfo) + Send + Sync;
type InterceptHook = dyn Fn(http::StatusCode, &RequestInfo) + Send + Sync;

/// Everything the middleware is configured with; shared by all the services a
/// layer makes.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    /// Shared with the requests that carry it down the stack (see
    /// [`Carried`](crate::classify::Carried)).
    pub(crate) classifier: Arc<Classifier>,
    /// Every layer below holds the same classifier (a `GatewayLayer`'s stack):
    /// requests need not carry it.
    pub(crate) stack_shares_classifier: bool,
    pub(crate) policy: ResponsePolicy,
    pub(crate) renderer: Renderer,
    pub(crate) on_failure: Option<Arc<FailureHook>>,
    pub(crate) on_failure_with_request: Option<Arc<RequestFailureHook>>,
    pub(crate) on_intercept: Option<Arc<InterceptHook>>,
}

/// What the response future needs to answer, taken once when it completes, and
/// what the body needs to report a failure.
pub(crate) struct Answering {
    pub(crate) settings: Arc<Settings>,
    pub(crate) info: RequestInfo,
    pub(crate) next_hop: Option<NextHop>,
    pub(crate) start: Instant,
}

impl Answering {
    /// Makes the `GatewayError` for an error seen in `phase`, with the source, the
    /// time since the start and the next hop.
    pub(crate) fn classify(&self, error: BoxError, phase: Phase) -> GatewayError {
        let err = self.settings.classifier.classify_owned(error, phase);
        self.stamp(err)
    }

    /// Fills in the elapsed time and the next hop.
    pub(crate) fn stamp(&self, err: GatewayError) -> GatewayError {
        stamp(err, self.start, self.next_hop.as_ref())
    }
}

impl Settings {
    /// Reports a failure once: a `tracing` event and the `on_failure` hooks.
    ///
    /// The error's [`status`](GatewayError::status) is the one the client got (for a
    /// failure mid-body, the upstream's, already sent); for a gRPC call the gRPC
    /// code is what counts and the event carries that instead.
    pub(crate) fn report(&self, err: &GatewayError, info: &RequestInfo) {
        report::failure(err, info);
        if let Some(hook) = &self.on_failure {
            hook(err);
        }
        if let Some(hook) = &self.on_failure_with_request {
            hook(err, info);
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("classifier", &self.classifier)
            .field("policy", &self.policy)
            .field("renderer", &self.renderer)
            .field("on_failure", &self.on_failure.is_some())
            .field(
                "on_failure_with_request",
                &self.on_failure_with_request.is_some(),
            )
            .finish()
    }
}
