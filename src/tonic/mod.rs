//! tonic on the client side (feature `tonic`): a [`GatewayError`] as a
//! [`tonic::Status`], and [`IntoStatusLayer`], which makes every failure of a
//! wrapped `Channel` one.
//!
//! A [`GatewayError`] converts into a `Status` with the code the gateway's own gRPC
//! answers use ([`ErrorKind::grpc_code`](crate::ErrorKind::grpc_code)), the kind's
//! [description](crate::ErrorKind::description) as its message, and the
//! `GatewayError` itself as its [`source`](std::error::Error::source), so a
//! caller can still read the attempts, the phase and the original error:
//!
//! ```
//! use tower_bad_gateway::{ErrorKind, GatewayError};
//!
//! let status = tonic::Status::from(GatewayError::new(ErrorKind::ConnectionRefused).with_attempts(3));
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.message(), "The upstream server refused the connection.");
//! let err = std::error::Error::source(&status).unwrap().downcast_ref::<GatewayError>().unwrap();
//! assert_eq!(err.attempts(), 3);
//! ```
//!
//! # Around a tonic `Channel`
//!
//! tonic turns a service's error into a `Status` by looking for known types in its
//! causes. Around a bare `Channel`, a timed-out attempt is then `CANCELLED`
//! ("Timeout expired") or `UNKNOWN`, whichever of the layer's timer and tonic's
//! own `grpc-timeout` timer fires first, and the `GatewayError` is lost.
//! `IntoStatusLayer` on top of the stack decides instead: its error *is* a
//! `Status` (which tonic passes on as it is), with the code from the table and
//! the `GatewayError` as its source, for a failure before the response head and
//! for one in the body. A `Status` from below (tonic's own) passes untouched.
//!
//! ```text
//! client ──▶ IntoStatus ──▶ Retry ──▶ Timeout ──▶ map_request ──▶ Channel
//!              │ Err(any) ─▶ classified (a GatewayError from Retry as it is)
//!              │             ─▶ Err(Status { code, message, source: GatewayError })
//!              └ body error ─▶ the same, for failures after the head
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use tonic::transport::Channel;
//! use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
//! use tower_bad_gateway::tonic::IntoStatusLayer;
//! use tower_bad_gateway::{GatewayError, timeout::TimeoutLayer};
//!
//! # #[tokio::main] async fn main() {
//! let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
//! let svc = ServiceBuilder::new()
//!     .layer(IntoStatusLayer::new()) // every failure -> a typed tonic::Status
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)))
//!     .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| req.map(tonic::body::Body::new))
//!     .service(channel);
//! let mut client = HealthClient::new(svc);
//! if let Err(status) = client.check(HealthCheckRequest::default()).await {
//!     let err = std::error::Error::source(&status).and_then(|e| e.downcast_ref::<GatewayError>());
//!     println!("{:?} after {:?} attempts", status.code(), err.map(|e| e.attempts()));
//! }
//! # }
//! ```
//!
//! `BadGatewayLayer` is for a gateway's *server* side: it answers a failure with
//! a trailers-only response, from which a tonic client reads the right code and
//! message but, having only headers, no source. On the client side, use
//! `IntoStatusLayer`.

mod body;
mod future;
mod layer;
mod service;

pub use self::body::IntoStatusBody;
pub use self::future::ResponseFuture;
pub use self::layer::IntoStatusLayer;
pub use self::service::IntoStatus;

use crate::classify::Classifier;
use crate::error::{BoxError, GatewayError, NextHop, Phase, stamp};
use std::sync::Arc;
use tokio::time::Instant;

impl From<GatewayError> for ::tonic::Status {
    /// The code of [`ErrorKind::grpc_code`](crate::ErrorKind::grpc_code), the
    /// kind's description as the message, and the error as the source.
    fn from(err: GatewayError) -> Self {
        let kind = err.kind();
        let code = ::tonic::Code::from_i32(i32::from(kind.grpc_code().as_u8()));
        let mut status = ::tonic::Status::new(code, kind.description());
        status.set_source(Arc::new(err));
        status
    }
}

/// What a failure needs to become a `Status`: shared by the future and the body.
#[derive(Clone)]
pub(crate) struct Context {
    classifier: Arc<Classifier>,
    start: Instant,
    next_hop: Option<NextHop>,
}

impl Context {
    /// The `Status` for `error`, seen in `phase`: a `Status` as it is, a
    /// `GatewayError` converted as it is unless a rule of this layer's classifier
    /// decides otherwise, anything else classified first.
    fn status(&self, error: BoxError, phase: Phase) -> ::tonic::Status {
        let error = match error.downcast::<::tonic::Status>() {
            Ok(status) => return *status,
            Err(error) => error,
        };
        let err = match error.downcast::<GatewayError>() {
            // Classified below with this layer's rules, carried down: only a rule
            // can change it (the same order as everywhere).
            Ok(done) => self.classifier.classify_owned(done, phase),
            Err(error) => {
                let err = self.classifier.classify_owned(error, phase);
                stamp(err, self.start, self.next_hop.as_ref())
            }
        };
        err.into()
    }
}
