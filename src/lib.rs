//! Tower middleware for the hop between a gateway and its upstream.
//!
//! When the upstream refuses, resets, stalls or answers garbage, [`BadGatewayLayer`]
//! turns the failure into a typed [`GatewayError`] and a correct answer: `502 Bad
//! Gateway`, `504 Gateway Timeout` or `503` (or a gRPC status for gRPC calls), with
//! an RFC 9209 `Proxy-Status` header, a negotiated body (plain text, RFC 9457
//! problem+json, HTML) and nothing internal leaked. The wrapped service has
//! `Error = Infallible`, so it drops straight into axum.
//!
//! # Quick start
//!
//! ```no_run
//! use axum::{Router, body::Body, extract::Request};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::{BadGatewayLayer, timeout::TimeoutLayer};
//!
//! # #[tokio::main] async fn main() {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
//! let proxy = ServiceBuilder::new()
//!     .map_request(|mut req: Request| {
//!         *req.uri_mut() = format!("http://127.0.0.1:8080{}", req.uri()).parse().unwrap();
//!         req
//!     })
//!     .layer(BadGatewayLayer::new()) // every failure -> 502/504 + Proxy-Status
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(10)))
//!     .service(client);
//! let app = Router::new().fallback_service(proxy); // Error = Infallible
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! # Modules, bottom up
//!
//! Each module uses only the ones above it in this list:
//!
//! - [`error`]: what went wrong. [`GatewayError`], and [`ErrorKind`]: the RFC 9209
//!   taxonomy, one table holding every kind's token, statuses, gRPC code, phase
//!   and retry default; and the typed errors the timeout layers raise
//!   ([`HeadTimeout`](error::HeadTimeout) and the rest). It uses nothing else of
//!   the crate.
//! - `metrics` (feature): the counters and histograms, through the `metrics` facade,
//!   named as OpenTelemetry names them.
//! - [`classify`]: the [`Classifier`] (error chain → `GatewayError`) and the
//!   [`ResponsePolicy`] (which upstream answers count as failures).
//! - [`render`]: the [`Renderer`](render::Renderer) (`GatewayError` → response).
//! - [`deadline`]: the request's [`Deadline`](deadline::Deadline) (when the exchange
//!   began and must end) and [`SetDeadlineLayer`](deadline::SetDeadlineLayer).
//! - [`write_timeout`]: [`WriteTimeoutLayer`](write_timeout::WriteTimeoutLayer), an
//!   upstream that stops taking the request body.
//! - [`timeout`]: [`TimeoutLayer`](timeout::TimeoutLayer), the per-attempt head
//!   timeout and the response body timeouts.
//! - [`upstreams`]: an [`EndpointSet`](upstreams::EndpointSet) of replicas and
//!   [`UpstreamsLayer`](upstreams::UpstreamsLayer): an endpoint per attempt,
//!   passive health, ejection and probing (the circuit breaker).
//! - [`retry`]: [`RetryLayer`](retry::RetryLayer), safe and budgeted retries with
//!   replayable bodies.
//! - [`bad_gateway`]: the middleware that answers, [`BadGatewayLayer`] and [`BadGateway`].
//! - [`gateway`]: [`GatewayLayer`], the whole stack in the right order.
//! - `proxy` (feature): what a gateway does around the stack: hop-by-hop and
//!   forwarding headers, `Via`, base paths, upgrades, CONNECT refused.
//! - `reqwest` / `reqwest013` (features): a `reqwest::Client` as a tower service.
//! - `tonic` (feature): `GatewayError` → `tonic::Status`, and the layer that makes
//!   every failure around a tonic `Channel` one.
//!
//! Everything gRPC (which requests are gRPC calls, `grpc-timeout`, `grpc-status`,
//! `grpc-message`) lives in one private module; [`GrpcCode`] is its public face.
//!
//! The crate root re-exports what most programs name: the two layers and their
//! services, the error and its parts, the classifier and response policy, and
//! [`UpstreamBody`], the request body a client under [`GatewayLayer`] receives.
//! Everything else is reached through its module.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tracing` | yes | one `tracing` event per failure |
//! | `hyper` | yes | precise classification of hyper and hyper-util errors |
//! | `reqwest` | no | precise classification of reqwest 0.12 errors, and `ReqwestService` |
//! | `reqwest013` | no | the same for reqwest 0.13 (`reqwest013::ReqwestService`, `is_dns`) |
//! | `tonic` | no | tonic's `ConnectError` and `TimeoutExpired`; `GatewayError` into `tonic::Status`; [`tonic::IntoStatusLayer`] for a `Channel` |
//! | `h2` | no | HTTP/2 reason codes (`REFUSED_STREAM`, `GOAWAY`) |
//! | `axum` | no | `GatewayError` implements axum's `IntoResponse` |
//! | `metrics` | no | counters and histograms through the `metrics` facade (see [`metrics`]) |
//! | `proxy` | no | the proxy core ([`proxy`]): hop-by-hop and forwarding headers, `Via`, upgrades, CONNECT refused, a hyper server loop |
//! | `health-checks` | no | active health checks of an endpoint set (`upstreams::HealthCheck`: HTTP, gRPC health, TCP) |
//! | `dns` | no | endpoint sets that follow a DNS name by its TTLs (`upstreams::Dns`, hickory-resolver) |
//! | `rustls` | no | rustls errors classified by type; with `proxy`, `https://` upstreams through hyper-rustls |
//! | `prometheus` | no | with `proxy` and `metrics`: `proxy::prometheus`, a Prometheus recorder in the OpenTelemetry buckets and `GET /metrics` served |

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    future_incompatible,
    nonstandard_style,
    clippy::all,
    clippy::dbg_macro,
    clippy::todo,
    clippy::mem_forget,
    clippy::unused_self,
    clippy::needless_borrow,
    clippy::needless_continue,
    clippy::match_wildcard_for_single_variants,
    clippy::imprecise_flops,
    clippy::suboptimal_flops,
    clippy::lossy_float_literal,
    clippy::rest_pat_in_fully_bound_structs,
    clippy::fn_params_excessive_bools,
    clippy::exit,
    clippy::inefficient_to_string,
    clippy::linkedlist,
    clippy::macro_use_imports,
    clippy::option_option,
    clippy::verbose_file_reads,
    clippy::unnested_or_patterns,
    clippy::str_to_string
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
pub mod bad_gateway;
pub mod classify;
pub mod deadline;
pub mod error;
pub mod gateway;
mod grpc;
mod macros;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod otel;
pub mod outcome;
mod peer;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
mod random;
pub mod render;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "reqwest013")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest013")))]
pub mod reqwest013;
#[cfg(any(feature = "reqwest", feature = "reqwest013"))]
mod reqwest_adapter;
pub mod retry;
pub mod timeout;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;
pub mod upstreams;
pub mod write_timeout;

pub use self::bad_gateway::{BadGateway, BadGatewayLayer};
pub use self::classify::{Classifier, ResponsePolicy};
pub use self::error::{
    Attempts, BoxError, ErrorKind, ErrorStatus, GatewayError, GrpcCode, InvalidErrorStatus, Phase,
    RequestSent, RetryDenied,
};
pub use self::gateway::{Gateway, GatewayLayer};
pub use self::outcome::{Outcome, Outcomes};

/// The request body the client under a [`GatewayLayer`] receives: the caller's body
/// `B`, replayable for retries ([`ReplayBody`](retry::ReplayBody)) and watched for
/// stalled uploads ([`UploadBody`](write_timeout::UploadBody)).
///
/// Build the client for it; for a hyper-util client behind axum:
///
/// ```
/// use tower_bad_gateway::{GatewayLayer, UpstreamBody};
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use tower::Layer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = Client::builder(TokioExecutor::new()).build_http::<UpstreamBody<axum::body::Body>>();
/// let gateway = GatewayLayer::new().layer(client);
/// let app: axum::Router = axum::Router::new().fallback_service(gateway);
/// # let _ = app;
/// # }
/// ```
///
/// A client that takes one body type only (a tonic `Channel` takes
/// `tonic::body::Body`) gets it by a `map_request` between the layers and the
/// client; see the [`retry`] module.
pub type UpstreamBody<B> = write_timeout::UploadBody<retry::ReplayBody<B>>;

// The README's code is compiled and checked with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
