//! Trying again: safe, budgeted retries with replayable request bodies.
//!
//! ```text
//! BadGateway ──▶ Retry ──▶ [Upstreams] ──▶ [per-attempt Timeout] ──▶ upstream client
//!                  │ failure or opted-in status ─▶ retry? (condition, safety,
//!                  │                                 attempts, body, deadline, budget, throttle)
//!                  │   yes ─▶ wait (full jitter, or Retry-After / gRPC pushback) ─▶ poll_ready ─▶ call again
//!                  └   no  ─▶ the last answer, or a GatewayError with its attempts
//! ```
//!
//! The rules are those of [`RetryPolicy`]: a request is retried only if it provably
//! did not reach the upstream or it is idempotent; never past the maximum attempts,
//! the deadline or the budget; and only if its body can be sent again in full. The
//! body is replayed from a bounded buffer ([`ReplayBody`]) filled as the first
//! attempt streams it.
//!
//! **Hedging** (opt-in, [`HedgePolicy`]): an idempotent request whose attempt has
//! not answered after a delay is sent again, to another endpoint, and the first
//! acceptable answer wins; the others are dropped. Unlike `tower::hedge`, the
//! hedge goes to another replica, a fast failure never wins over a slower
//! success, and a budget caps the extra load.
//!
//! Unlike `tower::retry`, there is no policy to write, bodies need not be `Clone`,
//! idempotency and `Retry-After` are understood, and the budget is exact.
//!
//! gRPC calls get gRPC's retry protocol (gRFC A6): the upstream's
//! `grpc-retry-pushback-ms` sets the wait before the next attempt (or, negative
//! or malformed, stops the retries), each further attempt tells the upstream how
//! many came before it in `grpc-previous-rpc-attempts`, and a [`RetryThrottle`]
//! is A6's retry throttling (see [`RetryPolicy`], "gRPC's retry protocol").
//!
//! ```
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy, RetryThrottle};
//! use tower_bad_gateway::GrpcCode;
//!
//! // A6's service config, `retryPolicy` and `retryThrottling`, for idempotent methods.
//! let layer = RetryLayer::new(
//!     RetryPolicy::new()
//!         .max_attempts(4)
//!         .retry_on(GrpcCode::Unavailable)
//!         .idempotent_if(|req| req.uri.path().starts_with("/catalog.Catalog/Get"))
//!         .throttle(RetryThrottle::new(10, 0.1)),
//! );
//! # let _ = layer;
//! ```
//!
//! Each attempt that is retried leaves the endpoint it went to (its
//! [`next_hop`](crate::GatewayError::next_hop), or the endpoint that answered) in
//! the next attempt's extensions, so an [`Upstreams`](crate::upstreams::Upstreams)
//! layer below sends the retry to another replica when one is healthy. Put it
//! between the two: Retry → Upstreams → Timeout → client, as
//! [`GatewayLayer`](crate::GatewayLayer) builds it (see
//! [`upstreams`](crate::upstreams) for the other order).
//!
//! # The request body the client receives
//!
//! The client below a `RetryLayer` receives each attempt's body as a
//! [`ReplayBody<B>`](ReplayBody) of the caller's body `B` (under a
//! [`GatewayLayer`](crate::GatewayLayer), as an [`UpstreamBody<B>`](crate::UpstreamBody)).
//! A hyper-util client is built for that type; a client that takes one body type
//! only, such as a tonic `Channel`, gets it by a `map_request`:
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::{BadGatewayLayer, retry::{ReplayBody, RetryLayer, RetryPolicy}};
//! use tonic::transport::Channel;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| {
//!         req.map(tonic::body::Body::new)
//!     })
//!     .service(channel);
//! // `svc` answers gRPC failures itself; give it to a generated client with
//! // `MyClient::new(svc)` after mapping its response body (see examples/grpc.rs).
//! # let _ = svc;
//! # }
//! ```
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! # let client = tower::service_fn(|_req: http::Request<tower_bad_gateway::retry::ReplayBody<Full<Bytes>>>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::new())))
//! # });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(RetryLayer::new(RetryPolicy::new().max_attempts(3)))
//!     .service(client);
//! # let _ = svc;
//! ```

mod backoff;
mod body;
mod budget;
mod decide;
mod future;
mod grpc;
mod hedge;
mod hedging;
mod latency;
mod layer;
mod policy;
mod race;
mod replay;
mod report;
mod service;
mod throttle;

pub use self::backoff::{Backoff, parse_retry_after};
pub use self::body::{ReplayBody, ReplayError};
pub use self::budget::RetryBudget;
pub use self::future::ResponseFuture;
pub use self::hedge::HedgePolicy;
pub use self::layer::RetryLayer;
pub use self::policy::{IDEMPOTENCY_KEY, RetryPolicy};
pub use self::service::Retry;
pub use self::throttle::RetryThrottle;
