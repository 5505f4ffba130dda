//! The proxy core (feature `proxy`): what every gateway does around the layers.
//!
//! [`ProxyLayer`] goes on top of a [`GatewayLayer`](crate::GatewayLayer) stack
//! that has an [`EndpointSet`](crate::upstreams::EndpointSet) (one endpoint is a
//! set too), and [`TakeUpgradeLayer`] right on the client under it:
//!
//! ```text
//! client ─▶ Proxy ─▶ SetDeadline ─▶ BadGateway ─▶ Retry ─▶ Upstreams ─▶ Timeout ─▶ TakeUpgrade ─▶ UpstreamClient
//!           (headers,                                       (scheme, authority,       (takes an upgraded
//!            origin-form URI,                                base path per attempt)    upstream connection
//!            joins upgrades)                                                           over, or fails the attempt)
//! ```
//!
//! What it does to every request and answer:
//!
//! - **Hop-by-hop fields** (RFC 9110 §7.6.1) are removed both ways: every field
//!   `Connection` names, `Connection` itself, `Keep-Alive`, `Proxy-Connection`,
//!   `Transfer-Encoding`, `Upgrade` (unless upgrading), `TE` and the credentials
//!   for this hop (`Proxy-Authorization`, `Proxy-Authenticate`). `TE: trailers`,
//!   which gRPC needs, is kept and announced again to an HTTP/1.1 upstream in
//!   `Connection` (§10.1.4); one `Connection` field carries every option
//!   (`upgrade, te`).
//! - **Forwarding fields**: `X-Forwarded-For` (from [`ClientAddr`]),
//!   `X-Forwarded-Host` and `X-Forwarded-Proto` are appended, and RFC 7239
//!   `Forwarded` when asked ([`ProxyLayer::forwarded`]). What the client sent
//!   in them is kept or dropped by the [`Trust`] rule: this gateway's member is
//!   always the last. `Via` is appended both ways (§7.6.3).
//! - **The target** the upstream sees is the path and query alone: an
//!   absolute-form request URI (`GET http://elsewhere/ HTTP/1.1`) never chooses
//!   the upstream; the endpoint set does, per attempt, and puts the path under
//!   the endpoint's base path (`--upstream http://10.0.0.1:8080/api`). A prefix
//!   can come off first ([`ProxyLayer::strip_prefix`]).
//! - **Upgrades** (HTTP/1.1, WebSocket): the upgrade is asked of the upstream;
//!   its `101` passes through and the two connections are joined both ways. An
//!   upstream that declines (a `200`, a `401`, RFC 9110 §7.8 allows it) is passed
//!   through. An upgraded upstream connection that cannot be taken over is an
//!   [`UpgradeFailed`](crate::ErrorKind::UpgradeFailed) failure of the attempt,
//!   answered by the gateway's own renderer (its `proxy_name`, its pages) and
//!   reported by its hooks, events and metrics.
//! - **CONNECT** (a tunnel, or RFC 8441's extended CONNECT) is refused: `501 Not
//!   Implemented` with a plain-text body saying so, nothing sent upstream.
//! - **`Expect: 100-continue`** is not sent on over HTTP/1.1: hyper's server
//!   sends its own `100 Continue` when the body is first read.
//!
//! Fields are rewritten in place; no URI or field is formatted per request (the
//! client's address excepted, written on the stack) and the bookkeeping
//! allocates nothing. No CR, LF or NUL can reach a field: every value is a
//! checked `HeaderValue`. Nothing here panics on any input.
//!
//! # Under axum, or served by itself
//!
//! The proxy is one tower service: `Router::fallback_service`, `nest_service`
//! (axum strips the nested prefix; [`strip_prefix`](ProxyLayer::strip_prefix)
//! does the same under `fallback_service`), `route_service`, or plain hyper
//! through [`serve`], which also puts each request's [`ClientAddr`] in its
//! extensions. Under `axum::serve`, copy axum's `ConnectInfo` into a
//! [`ClientAddr`] with a `map_request`.
//!
//! ```
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer, ServiceBuilder};
//! use tower_bad_gateway::proxy::{ProxyLayer, TakeUpgradeLayer};
//! use tower_bad_gateway::upstreams::EndpointSet;
//! use tower_bad_gateway::{GatewayLayer, UpstreamBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = Client::builder(TokioExecutor::new()).build_http::<UpstreamBody<axum::body::Body>>();
//! let set = EndpointSet::from_urls(["http://10.0.0.1:8080/api"]).unwrap();
//! let proxy = ServiceBuilder::new()
//!     .layer(ProxyLayer::new())
//!     .layer(GatewayLayer::new().upstreams(set))
//!     .layer(TakeUpgradeLayer::new())
//!     .service(client);
//! // `/shop/orders` reaches the upstream as `/api/orders`.
//! let app: axum::Router = axum::Router::new().nest_service("/shop", proxy);
//! # let _ = app;
//! # }
//! ```

mod body;
mod client;
mod connector;
mod forwarding;
mod future;
mod h1;
mod handler;
mod headers;
mod layer;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
mod serve;
mod service;
#[cfg(feature = "rustls")]
mod tls;
mod upgrade;
mod upstream;

pub use self::body::ProxyBody;
pub use self::client::{ClientBuilder, ResponseFuture as UpstreamClientFuture, UpstreamClient};
pub use self::forwarding::Trust;
pub use self::future::ResponseFuture;
pub use self::h1::UpstreamClientBody;
pub use self::layer::ProxyLayer;
pub use self::serve::{IDLE_TIMEOUT, Server, serve, serve_threads, shutdown_signal};
pub use self::service::Proxy;
pub use self::upgrade::{TakeUpgrade, TakeUpgradeFuture, TakeUpgradeLayer};
pub use self::upstream::{Upstream, UpstreamError};

pub use crate::peer::ClientAddr;
