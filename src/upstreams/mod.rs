//! Steering around failing upstreams: an endpoint set with passive health, and
//! active health checks as an option.
//!
//! An [`EndpointSet`] holds the replicas of one upstream. The [`Upstreams`]
//! middleware picks one for every attempt and rewrites the request's scheme and
//! authority to it, for clients that route by URI (hyper-util's `Client`, reqwest).
//! [`GatewayLayer::upstreams`](crate::GatewayLayer::upstreams) places it between
//! Retry and Timeout:
//!
//! ```text
//! request ─▶ SetDeadline ─▶ BadGateway ─▶ Retry ─▶ Upstreams ─▶ Timeout ─▶ WriteTimeout ─▶ client
//!                                          │        (picks an endpoint per attempt,
//!                                          │         learns from how the attempt went)
//!                                          └ a retry goes to another endpoint
//! ```
//!
//! - **Retries go elsewhere.** A failed attempt is retried on an endpoint this
//!   request has not tried, whenever one is healthy (nginx's `proxy_next_upstream`,
//!   Envoy's `previous_hosts`). A request that never reached an upstream (refused,
//!   unreachable, connect timeout) is retried whatever its method; one that may have
//!   reached one only when it is idempotent, as always.
//! - **Passive health.** Failures of an endpoint itself, in a row, eject it for a
//!   time that doubles with each ejection in a row (capped); then exactly one
//!   request goes to it as a probe: success restores it, failure ejects it again.
//!   See [`HealthPolicy`] for what counts and the defaults. A probe that is
//!   cancelled, or whose failure says nothing about the endpoint, frees its slot for
//!   the next request.
//! - **A blip on the whole fleet ends with its cause.** At most 10% of the set
//!   (and always one endpoint) is out on a full ejection at once; an endpoint that
//!   fails beyond that share is out for a second only
//!   ([`HealthPolicy::max_ejection_percent`], [`HealthPolicy::short_ejection`]). So
//!   when every replica fails at once (a rolling restart, a shared database
//!   stalling), clients are served again about a second after the cause ends, not
//!   ten. Every ejection is jittered, so endpoints ejected together are not probed
//!   together.
//!
//!   A replica that fails often but never five times in a row (a gray failure) is
//!   found by its failure rate over its last window of outcomes, against its
//!   peers' ([`HealthPolicy::failure_rate_window`]); a fleet failing evenly ejects
//!   nothing. A restored or new endpoint can ramp its share up over a window
//!   ([`HealthPolicy::slow_start`], off by default).
//!
//!   ```text
//!      failures in a row, or a failure rate       probe in (jittered)
//!      well above the peers' over a window
//!   Healthy ─────────────────────────▶ Ejected ──────────────────────▶ Probing
//!    ▲  │ ▲     within the share: base_ejection, doubling                │
//!    │  │ │     beyond it:        short_ejection (1 s)                   │
//!    │  │ └──────────────── the probe succeeds ◀────────────────────────┤
//!    │  │                   the probe fails: Ejected again ◀────────────┘
//!    │  │ unhealthy_threshold checks failed in a row
//!    │  ▼ (from Healthy or Ejected)
//!    └─ Down ◀── (active checks only; healthy_threshold passes in a row restore it)
//!   ```
//! - **Active health checks** (opt-in, feature `health-checks`):
//!   [`EndpointSet::health_checks`] asks every endpoint, every interval, through
//!   the client you give it: an HTTP path, gRPC `grpc.health.v1.Health/Check` or a
//!   TCP connect ([`HealthCheck`]). An endpoint failing enough checks in a row is
//!   [`Down`](Health::Down) until it passes enough; while checks run, the probe of
//!   an endpoint ejected by requests is a check, sent the moment its ejection ends,
//!   never a user request.
//! - **Nothing healthy: fail fast.** With every endpoint ejected, a request gets
//!   [`DestinationUnavailable`](crate::ErrorKind::DestinationUnavailable) at once,
//!   without touching the network: `503`,
//!   `Proxy-Status: ...; error=destination_unavailable` and `Retry-After` (seconds
//!   until the next probe); gRPC callers get `UNAVAILABLE`. With one endpoint this is
//!   a circuit breaker.
//! - **Shared state.** All clones share the set (axum clones the service for every
//!   request), so nothing resets it.
//! - **Picks** are power of two choices on requests in flight (tower's
//!   `balance::p2c`): O(1) expected, with atomics only, no lock, at any size.
//! - **Membership** changes at runtime through [`EndpointSet::replace`] or a
//!   [`tower::discover::Discover`] stream ([`EndpointSet::discover`]).
//! - Every state change (ejected, probing, restored, set replaced) is one `tracing`
//!   event.
//!
//! # Example
//!
//! ```
//! use tower_bad_gateway::GatewayLayer;
//! use tower_bad_gateway::upstreams::{EndpointSet, HealthPolicy};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use std::time::Duration;
//! use tower::Layer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let replicas = EndpointSet::from_urls([
//!     "http://10.0.0.1:8080",
//!     "http://10.0.0.2:8080",
//!     "http://10.0.0.3:8080",
//! ])
//! .expect("valid upstream URLs")
//! .health_policy(HealthPolicy::new().consecutive_failures(3));
//!
//! let client = Client::builder(TokioExecutor::new()).build_http();
//! let gateway = GatewayLayer::new()
//!     .upstreams(replicas.clone()) // keep a clone to replace the members later
//!     .attempt_timeout(Duration::from_secs(2))
//!     .layer(client);
//! let app: axum::Router = axum::Router::new().fallback_service(gateway);
//! # let _ = app;
//! # }
//! ```
//!
//! # Composing it by hand
//!
//! Put [`UpstreamsLayer`] where [`GatewayLayer`](crate::GatewayLayer) puts it:
//! below any retry layer, so that every attempt picks its own endpoint, and above
//! the [`TimeoutLayer`](crate::timeout::TimeoutLayer), so that it sees each timeout
//! as its attempt's error: Retry → Upstreams → Timeout → client. It takes requests
//! whose URI has at least a path.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_bad_gateway::BadGatewayLayer;
//! use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};
//! use tower_bad_gateway::timeout::TimeoutLayer;
//! use tower_bad_gateway::upstreams::{EndpointSet, UpstreamsLayer};
//! # type Body = tower_bad_gateway::retry::ReplayBody<http_body_util::Full<bytes::Bytes>>;
//! # let client = tower::service_fn(|_req: http::Request<Body>| async {
//! #     Ok::<_, std::io::Error>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
//! # });
//!
//! let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(BadGatewayLayer::new())
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .layer(UpstreamsLayer::new(set))
//!     .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)))
//!     .service(client);
//! # let _ = svc;
//! ```
//!
//! The other way round, a `TimeoutLayer` above the `UpstreamsLayer`, a timed-out
//! attempt still counts against its endpoint. The `Timeout` ends a silent attempt
//! by dropping the `Upstreams` future, and a dropped attempt by itself counts for
//! nothing (its caller left, or a hedge lost); so the `Timeout` also leaves in the
//! request when its wait for the head ends, and an attempt dropped unanswered then
//! counts as a [`ResponseHeaderTimeout`](crate::ErrorKind::ResponseHeaderTimeout)
//! (the kind the `Timeout`'s error is classified as), if the [`HealthPolicy`]
//! counts that kind; one dropped before still counts for nothing. That costs a
//! request extension per attempt, which the order above does not. Only this
//! crate's `TimeoutLayer` does it: below `tower::timeout` or tower-http's timeout,
//! a timed-out attempt looks cancelled and does not count.

mod address;
#[cfg(feature = "health-checks")]
mod check;
#[cfg(feature = "dns")]
mod dns;
mod endpoint;
mod future;
mod health;
mod layer;
mod pick;
mod policy;
mod report;
mod service;
mod set;

#[cfg(all(feature = "hyper", any(feature = "dns", feature = "proxy")))]
pub use self::address::ResolveTo;
pub use self::address::{Address, ByAddress};
#[cfg(feature = "health-checks")]
#[cfg_attr(docsrs, doc(cfg(feature = "health-checks")))]
pub use self::check::{HealthCheck, HealthCheckError};
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use self::dns::Dns;
pub use self::endpoint::{Endpoint, EndpointError};
pub use self::future::ResponseFuture;
pub use self::health::Health;
pub use self::layer::UpstreamsLayer;
pub use self::policy::HealthPolicy;
pub use self::service::Upstreams;
pub use self::set::EndpointSet;

/// An endpoint's key: a hash of its authority, as an error's
/// [`next_hop`](crate::GatewayError::next_hop) names it (FNV-1a).
pub(crate) fn key_of(authority: &str) -> u64 {
    authority.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The endpoints a request's earlier attempts went to, carried in the request's
/// extensions by the retry layer, so that a retry goes elsewhere. Holds the last
/// four.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tried {
    keys: [u64; 4],
    len: u8,
}

impl Tried {
    pub(crate) fn push(&mut self, key: u64) {
        if self.contains(key) {
            return;
        }
        let i = usize::from(self.len) % self.keys.len();
        self.keys[i] = key;
        self.len = self.len.saturating_add(1);
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        let n = usize::from(self.len).min(self.keys.len());
        self.keys[..n].contains(&key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where the endpoint each attempt of a hedged request went to is written, as it
/// is picked: the retry layer puts one in every attempt's extensions, so that a
/// hedge sent while earlier attempts are still in flight avoids their endpoints.
/// Clones share the keys; each attempt writes its own slot (the last four).
#[derive(Debug, Clone)]
pub(crate) struct Trail {
    keys: std::sync::Arc<[std::sync::atomic::AtomicU64; 4]>,
    slot: u8,
}

impl Trail {
    pub(crate) fn new() -> Self {
        Self {
            keys: std::sync::Arc::default(),
            slot: 0,
        }
    }

    /// The slot of attempt number `attempt` (from 1).
    fn slot(attempt: u32) -> u8 {
        (attempt.wrapping_sub(1) % 4) as u8
    }

    /// The handle attempt number `attempt` (from 1) writes its endpoint through.
    pub(crate) fn for_attempt(&self, attempt: u32) -> Self {
        Self {
            keys: self.keys.clone(),
            slot: Self::slot(attempt),
        }
    }

    /// Records the endpoint this handle's attempt went to.
    pub(crate) fn mark(&self, key: u64) {
        self.keys[usize::from(self.slot)].store(key, std::sync::atomic::Ordering::Relaxed);
    }

    /// The endpoint attempt number `attempt` went to, once it was picked.
    pub(crate) fn key(&self, attempt: u32) -> Option<u64> {
        let key =
            self.keys[usize::from(Self::slot(attempt))].load(std::sync::atomic::Ordering::Relaxed);
        (key != 0).then_some(key)
    }
}

/// The endpoint an upstream answer came from, on answers a retry may follow (not
/// 2xx or 3xx, or carrying `grpc-status`), for [`Tried`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnsweredBy(pub(crate) u64);

/// The source of the error a request gets when no endpoint may take it.
#[derive(Debug)]
pub(crate) enum NoHealthyEndpoint {
    /// The set has no member.
    Empty,
    /// Every member is ejected, being probed or down.
    AllOut,
    /// The set follows a name whose first lookup has not answered.
    Resolving,
    /// The set follows a name that does not resolve, for this reason.
    Unresolved(String),
}

impl std::fmt::Display for NoHealthyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoHealthyEndpoint::Empty => f.write_str("the upstream endpoint set is empty"),
            NoHealthyEndpoint::AllOut => {
                f.write_str("every upstream endpoint is ejected, being probed or down")
            }
            NoHealthyEndpoint::Resolving => {
                f.write_str("the upstream name has not been resolved yet")
            }
            NoHealthyEndpoint::Unresolved(reason) => {
                write!(f, "the upstream name does not resolve: {reason}")
            }
        }
    }
}

impl std::error::Error for NoHealthyEndpoint {}
