//! Active health checks: [`HealthCheck`] says what to ask each endpoint and how
//! often; [`EndpointSet::health_checks`] asks it.

mod probe;
mod run;

use super::EndpointSet;
use bytes::Bytes;
use http::uri::PathAndQuery;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// What an active health check asks each endpoint of an
/// [`EndpointSet`], how often, and how many answers in a row change its state.
///
/// Three kinds:
///
/// - [`http`](Self::http): `GET` a path; a status in
///   [`healthy_statuses`](Self::healthy_statuses) (2xx and 3xx by default, as
///   Kubernetes and nginx count them) passes.
/// - [`grpc`](Self::grpc): `grpc.health.v1.Health/Check`; only `SERVING` passes
///   (`NOT_SERVING`, `SERVICE_UNKNOWN`, a gRPC error or no answer fail). It needs
///   a client that speaks HTTP/2 to the endpoint.
/// - [`tcp`](Self::tcp): a TCP connection opened and closed; no client is used.
///
/// The defaults, and why:
///
/// | setting | default | reason |
/// |---|---|---|
/// | [`interval`](Self::interval) | 5 s | nginx's `health_check interval`: a replica that comes back gets traffic within seconds, and checks are a request per replica per interval |
/// | jitter | up to 10% more | Envoy's `interval_jitter_percent`: checks of many replicas spread out, and never two of one endpoint within an interval |
/// | [`timeout`](Self::timeout) | 1 s | Kubernetes' `timeoutSeconds`: a health answer is cheap; one slower than this is a failed check |
/// | [`unhealthy_threshold`](Self::unhealthy_threshold) | 3 | Kubernetes' `failureThreshold`: one lost check is not a dead replica |
/// | [`healthy_threshold`](Self::healthy_threshold) | 2 | Envoy's examples: one lucky answer does not bring a flapping replica back |
///
/// ```
/// use tower_bad_gateway::upstreams::HealthCheck;
/// use std::time::Duration;
///
/// let check = HealthCheck::http("/healthz")
///     .unwrap()
///     .healthy_statuses([200, 204])
///     .interval(Duration::from_secs(2))
///     .unhealthy_threshold(2);
/// # let _ = check;
/// assert!(HealthCheck::http("healthz").is_err()); // not a path: a clear error
/// let grpc = HealthCheck::grpc().service("orders.v1.Orders");
/// let tcp = HealthCheck::tcp();
/// # let _ = (grpc, tcp);
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    pub(super) kind: Kind,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) healthy_threshold: u32,
    pub(super) unhealthy_threshold: u32,
    /// Statuses that pass an HTTP check: bit `n` of the bitmap for status `n`.
    healthy: [u64; 16],
    jitter: bool,
}

#[derive(Clone, Debug)]
pub(super) enum Kind {
    Http(PathAndQuery),
    /// The service to ask about (empty: the server as a whole), and the request's
    /// message, framed.
    Grpc {
        service: String,
        message: Bytes,
    },
    Tcp,
}

impl HealthCheck {
    fn of(kind: Kind) -> Self {
        let mut check = Self {
            kind,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            healthy: [0; 16],
            jitter: true,
        };
        check.set_healthy(200..400);
        check
    }

    /// `GET path` on each endpoint (with its authority as `Host`); passes on a
    /// status in [`healthy_statuses`](Self::healthy_statuses). `path` is an
    /// origin-form path, with a query if needed: anything else is an error.
    pub fn http(path: &str) -> Result<Self, HealthCheckError> {
        match path.parse::<PathAndQuery>() {
            Ok(p) if path.starts_with('/') => Ok(Self::of(Kind::Http(p))),
            _ => Err(HealthCheckError::new(path)),
        }
    }

    /// `grpc.health.v1.Health/Check` on each endpoint, about the server as a whole
    /// (the empty service name; [`service`](Self::service) names one). Passes on
    /// `SERVING` only.
    pub fn grpc() -> Self {
        Self::of(Kind::Grpc {
            service: String::new(),
            message: probe::grpc_request(""),
        })
    }

    /// For a gRPC check: asks about this service rather than the whole server.
    /// Other kinds of check ignore it.
    pub fn service(mut self, name: &str) -> Self {
        if let Kind::Grpc { .. } = self.kind {
            self.kind = Kind::Grpc {
                service: name.to_owned(),
                message: probe::grpc_request(name),
            };
        }
        self
    }

    /// A TCP connection to each endpoint's address, opened and closed: passes when
    /// it opens.
    pub fn tcp() -> Self {
        Self::of(Kind::Tcp)
    }

    /// Whether the check is gRPC health (HTTP/2 only).
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn speaks_grpc(&self) -> bool {
        matches!(self.kind, Kind::Grpc { .. })
    }

    /// How often each endpoint is checked (default 5 s; at least 1 ms). Each
    /// interval gets up to 10% more, at random, so checks of many endpoints spread
    /// out; the first check of an endpoint goes at a random point of its first
    /// interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a check may take before it fails (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks passed in a row that bring an endpoint that is down back
    /// (default 2; at least 1).
    pub fn healthy_threshold(mut self, checks: u32) -> Self {
        self.healthy_threshold = checks.max(1);
        self
    }

    /// Checks failed in a row that take an endpoint down (default 3; at least 1).
    pub fn unhealthy_threshold(mut self, checks: u32) -> Self {
        self.unhealthy_threshold = checks.max(1);
        self
    }

    /// The statuses that pass an HTTP check (default 200 to 399), replacing the
    /// default: a range (`200..300`) or a list (`[200, 204]`). Numbers that are not
    /// statuses (outside 100 to 999) are left out.
    pub fn healthy_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.healthy = [0; 16];
        self.set_healthy(statuses);
        self
    }

    /// Checks exactly every interval, without the jitter: for tests that count them.
    pub fn no_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    fn set_healthy(&mut self, statuses: impl IntoIterator<Item = u16>) {
        for status in statuses.into_iter().filter(|s| (100..1000).contains(s)) {
            self.healthy[usize::from(status / 64)] |= 1 << (status % 64);
        }
    }

    pub(super) fn is_healthy_status(&self, status: u16) -> bool {
        status < 1024 && self.healthy[usize::from(status / 64)] & (1 << (status % 64)) != 0
    }

    /// The wait before an endpoint's next check: the interval, and up to 10% more.
    pub(super) fn next_wait(&self, random: u64) -> Duration {
        let base = self.interval;
        let spread = u64::try_from(base.as_nanos() / 10).unwrap_or(u64::MAX);
        if !self.jitter || spread == 0 {
            return base;
        }
        base.saturating_add(Duration::from_nanos(random % (spread + 1)))
    }

    /// The wait before a new endpoint's first check: a random point of one interval.
    pub(super) fn first_wait(&self, random: u64) -> Duration {
        if !self.jitter {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.max(1))
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("HealthCheck");
        match &self.kind {
            Kind::Http(path) => d.field("http", &path.as_str()),
            Kind::Grpc { service, .. } => d.field("grpc", service),
            Kind::Tcp => d.field("tcp", &true),
        };
        d.field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("healthy_threshold", &self.healthy_threshold)
            .field("unhealthy_threshold", &self.unhealthy_threshold)
            .finish()
    }
}

/// A health check path that is not an origin-form path. Its message names the
/// input (at most 100 characters of it, control characters escaped).
///
/// ```
/// use tower_bad_gateway::upstreams::HealthCheck;
/// let err = HealthCheck::http("http://x/healthz").unwrap_err();
/// assert_eq!(err.to_string(), "health check path `http://x/healthz`: write a path that starts with `/`, such as `/healthz`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckError {
    input: String,
}

impl HealthCheckError {
    fn new(input: &str) -> Self {
        Self {
            input: super::endpoint::escaped(input),
        }
    }
}

impl fmt::Display for HealthCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "health check path `{}`: write a path that starts with `/`, such as `/healthz`",
            self.input
        )
    }
}

impl std::error::Error for HealthCheckError {}

impl EndpointSet {
    /// Checks every endpoint of the set actively, by `check`, through `client`:
    /// spawn the future it returns. It runs until every handle of the set is
    /// dropped, following the membership as it changes.
    ///
    /// The checks combine with passive health:
    ///
    /// - an endpoint that fails
    ///   [`unhealthy_threshold`](HealthCheck::unhealthy_threshold) checks in a row
    ///   is [`Down`](super::Health::Down): no request goes to it, whatever
    ///   requests found, until it passes
    ///   [`healthy_threshold`](HealthCheck::healthy_threshold) checks in a row;
    ///   the [`max_ejection_percent`](super::HealthPolicy::max_ejection_percent)
    ///   share does not hold it back: the endpoint said itself that it is down
    ///   (a gRPC `NOT_SERVING` while it drains, say);
    /// - requests still eject an endpoint by the [`HealthPolicy`](super::HealthPolicy);
    ///   while checks run no request is ever its probe: when its ejection ends, it
    ///   is checked at once, and that check restores it or ejects it again. So a
    ///   replica that comes back is restored without a user request failing on it;
    /// - each endpoint is checked at most once per interval on schedule (plus
    ///   that one check when an ejection ends), and never twice at once.
    ///
    /// `client` is any tower service from `http::Request` to `http::Response`
    /// (hyper-util's `Client`, a [`reqwest`](crate::reqwest) adapter, a tonic
    /// `Channel`'s service): the checks go where its requests go, over its
    /// connections and TLS. A [`tcp`](HealthCheck::tcp) check does not use it.
    ///
    /// ```no_run
    /// use tower_bad_gateway::upstreams::{EndpointSet, HealthCheck};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use http_body_util::Full;
    /// use bytes::Bytes;
    ///
    /// # #[tokio::main] async fn main() {
    /// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
    /// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    /// tokio::spawn(set.health_checks(HealthCheck::http("/healthz").unwrap(), client));
    /// // ... give `set` to the gateway as usual.
    /// # }
    /// ```
    pub fn health_checks<C, ReqB, ResB>(
        &self,
        check: HealthCheck,
        client: C,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        C: tower_service::Service<http::Request<ReqB>, Response = http::Response<ResB>>
            + Clone
            + Send
            + 'static,
        C::Future: Send + 'static,
        C::Error: Into<crate::error::BoxError>,
        ReqB: From<Bytes> + Send + 'static,
        ResB: http_body::Body + Send + 'static,
        ResB::Data: Send,
        ResB::Error: Into<crate::error::BoxError>,
    {
        let check = std::sync::Arc::new(check);
        // Every check goes through `client`, bounded by the check's timeout.
        let checking = check.clone();
        let launch = move |key, endpoint: super::Endpoint| -> run::Check {
            let (client, check) = (client.clone(), checking.clone());
            Box::pin(async move {
                let found = probe::probe(&check, &endpoint, client);
                let found = tokio::time::timeout(check.timeout, found).await;
                (key, found.unwrap_or(probe::Found::TimedOut))
            })
        };
        run::run(self.shared.clone(), check, launch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_statuses_default_to_2xx_and_3xx_and_are_replaced_not_added() {
        let check = HealthCheck::tcp();
        assert!(check.is_healthy_status(200) && check.is_healthy_status(399));
        assert!(!check.is_healthy_status(199) && !check.is_healthy_status(400));
        let check = check.healthy_statuses([204, 418, 5000, 0]);
        assert!(check.is_healthy_status(204) && check.is_healthy_status(418));
        assert!(!check.is_healthy_status(200), "replaced, not added");
        assert!(!check.is_healthy_status(5000 % 1024) && !check.is_healthy_status(0));
        assert!(!check.is_healthy_status(u16::MAX));
    }

    #[test]
    fn waits_are_an_interval_plus_up_to_a_tenth_and_the_first_within_one_interval() {
        let check = HealthCheck::tcp().interval(Duration::from_secs(10));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000u64 {
            let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let next = check.next_wait(r);
            assert!(next >= Duration::from_secs(10) && next <= Duration::from_secs(11));
            assert!(check.first_wait(r) < Duration::from_secs(10));
            seen.insert(next);
        }
        assert!(seen.len() > 900, "spread: {}", seen.len());
        let exact = check.no_jitter();
        assert_eq!(exact.next_wait(12345), Duration::from_secs(10));
        assert_eq!(exact.first_wait(12345), Duration::ZERO);
        assert_eq!(
            HealthCheck::tcp().interval(Duration::ZERO).interval,
            Duration::from_millis(1)
        );
    }

    #[test]
    fn a_health_check_path_must_be_an_origin_form_path() {
        assert!(HealthCheck::http("/healthz?full=1").is_ok());
        for bad in ["", "healthz", "http://host/healthz", "/a b", "/x\r\ny"] {
            let err = HealthCheck::http(bad).unwrap_err().to_string();
            assert!(!err.contains(['\r', '\n']), "{err}");
        }
        assert!(
            HealthCheck::tcp()
                .service("x")
                .healthy_threshold(0)
                .healthy_threshold
                >= 1
        );
    }
}
