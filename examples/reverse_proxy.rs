//! A reverse proxy you could copy: axum in front, hyper-util's pooled client
//! behind (HTTP/1.1, or HTTP/2 with `--http2`), the whole `GatewayLayer` between,
//! hop-by-hop headers removed, `Via` and `X-Forwarded-*` added, HTTP/1.1 upgrades
//! (WebSocket) joined both ways, graceful shutdown on Ctrl-C and SIGTERM.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://127.0.0.1:8080
//! cargo run --release --example reverse_proxy -- \
//!     --upstream http://10.0.0.1:8080 --upstream http://10.0.0.2:8080 --upstream http://10.0.0.3:8080
//! cargo run --example reverse_proxy            # built-in broken upstream to try
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:3000), `--upstream URL` (repeat it for
//! replicas of one upstream; all with the same path, if any),
//! `--timeout-ms N` (per attempt, and the connect timeout; default 10000),
//! `--body-idle-ms N` (default 30000), `--attempts N` (default 3),
//! `--deadline-ms N` (optional), `--http2` (HTTP/2 with prior knowledge upstream),
//! `--metrics ADDR` (serve the gateway's metrics, Prometheus text, at
//! `http://ADDR/metrics`).
//!
//! Several upstreams are balanced (power of two choices), a retry goes to another
//! replica, and passive health ejects a failing one (see `HealthPolicy`):
//! `--consecutive-failures N` (failures in a row that eject a replica; default 5,
//! `0` turns ejection off), `--base-ejection-ms N` (the first ejection; default
//! 10000, doubling with each ejection in a row), `--max-ejection-ms N` (the cap;
//! default 300000), `--max-ejection-percent N` (the share of the replicas that may
//! be out on a full ejection at once, at least one; default 10), `--short-ejection-ms N`
//! (how long a replica ejected beyond that share stays out; default 1000: a blip
//! that hits every replica ends for clients about a second after its cause),
//! `--failure-rate-window N` (a replica's failure rate over its last N requests,
//! well above its peers', ejects it; default 50, `0` off), `--slow-start-ms N` (a
//! restored or new replica ramps its share up over N ms; default off). Active
//! health checks (off by default): `--health-check-path PATH` (`GET PATH`, 2xx
//! and 3xx pass), `--health-check-grpc` (`grpc.health.v1.Health/Check`, over
//! HTTP/2; `NOT_SERVING` fails) or `--health-check-tcp` (a TCP connect), every
//! `--health-check-interval-ms N` (default 5000); three failed checks in a row take
//! a replica out, two passed bring it back, and a replica ejected by requests is
//! probed by a check, never by a request. With a
//! single `--upstream`, ejection is off unless
//! `--consecutive-failures` is given, as nginx ignores `max_fails` for a lone
//! server: one upstream whose paths fail on their own must not be cut off whole.

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_bad_gateway::GatewayLayer;
use tower_bad_gateway::upstreams::{Endpoint, EndpointSet, HealthCheck, HealthPolicy};

// glibc's allocator keeps freed memory in per-thread arenas and fragments under
// bursts of thousands of connections: each burst's peak grew (80, 110, 124 MiB for
// three bursts of 2,000 in-flight requests) although the heap itself was the same
// at each peak and freed after each (valgrind massif). mimalloc reuses it: the
// peaks stay within 5% (`python3 benches/memory.py`, BENCHMARKS.md). Without
// transparent huge pages (`no_thp`): with them, its first burst took 60% more.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Its refusing and black-hole ports are for the demo: this proxy has one upstream.
#[allow(dead_code)]
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

/// The proxy's settings, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// The replicas of the upstream (none: the built-in broken one).
    pub upstreams: Vec<Uri>,
    pub timeout: Duration,
    pub body_idle: Duration,
    pub attempts: u32,
    pub deadline: Option<Duration>,
    pub http2: bool,
    /// Failures in a row that eject a replica (`None`: 5 for several upstreams,
    /// ejection off for one; `Some(0)`: off).
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// The share of the replicas that may be out on a full ejection at once.
    pub max_ejection_percent: u8,
    /// How long a replica ejected beyond that share stays out.
    pub short_ejection: Duration,
    /// The outcomes a replica's failure rate is judged over (`0`: off).
    pub failure_rate_window: u32,
    /// The window over which a restored or new replica ramps up (zero: off).
    pub slow_start: Duration,
    /// Active health checks: `GET` this path on every replica.
    pub health_check_path: Option<String>,
    /// Active health checks: `grpc.health.v1.Health/Check` (over HTTP/2).
    pub health_check_grpc: bool,
    /// Active health checks: a TCP connect.
    pub health_check_tcp: bool,
    /// How often each replica is checked (`None`: the library's 5 s).
    pub health_check_interval: Option<Duration>,
    /// No middleware: axum's `HandleErrorLayer` answers every client error with a
    /// plain 502 (the baseline the end-to-end benchmark compares against).
    pub bare: bool,
    /// Where to serve the metrics (`GET /metrics`, Prometheus text), if anywhere.
    pub metrics: Option<SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            upstreams: Vec::new(),
            timeout: Duration::from_millis(10_000),
            body_idle: Duration::from_millis(30_000),
            attempts: 3,
            deadline: None,
            http2: false,
            consecutive_failures: None,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 10,
            short_ejection: Duration::from_secs(1),
            failure_rate_window: 50,
            slow_start: Duration::ZERO,
            health_check_path: None,
            health_check_grpc: false,
            health_check_tcp: false,
            health_check_interval: None,
            bare: false,
            metrics: None,
        }
    }
}

impl Options {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Options::default();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            let millis = |v: String| {
                v.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| format!("{flag}: {e}"))
            };
            match flag.as_str() {
                "--listen" => {
                    options.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?
                }
                "--upstream" => {
                    let uri: Uri = value()?.parse().map_err(|e| format!("--upstream: {e}"))?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err("--upstream must be an http:// URL with a host".into());
                    }
                    let base = |u: &Uri| u.path().trim_end_matches('/').to_owned();
                    if options
                        .upstreams
                        .first()
                        .is_some_and(|first| base(first) != base(&uri))
                    {
                        return Err("every --upstream must have the same path".into());
                    }
                    options.upstreams.push(uri);
                }
                "--consecutive-failures" => {
                    let n = value()?
                        .parse()
                        .map_err(|e| format!("--consecutive-failures: {e}"))?;
                    options.consecutive_failures = Some(n);
                }
                "--base-ejection-ms" => options.base_ejection = millis(value()?)?,
                "--max-ejection-ms" => options.max_ejection = millis(value()?)?,
                "--max-ejection-percent" => {
                    let percent: u8 = value()?
                        .parse()
                        .map_err(|e| format!("--max-ejection-percent: {e}"))?;
                    if percent > 100 {
                        return Err("--max-ejection-percent: at most 100".into());
                    }
                    options.max_ejection_percent = percent;
                }
                "--short-ejection-ms" => options.short_ejection = millis(value()?)?,
                "--slow-start-ms" => options.slow_start = millis(value()?)?,
                "--health-check-path" => {
                    let path = value()?;
                    HealthCheck::http(&path).map_err(|e| format!("--health-check-path: {e}"))?;
                    options.health_check_path = Some(path);
                }
                "--health-check-grpc" => options.health_check_grpc = true,
                "--health-check-tcp" => options.health_check_tcp = true,
                "--health-check-interval-ms" => {
                    options.health_check_interval = Some(millis(value()?)?)
                }
                "--failure-rate-window" => {
                    options.failure_rate_window = value()?
                        .parse()
                        .map_err(|e| format!("--failure-rate-window: {e}"))?
                }
                "--timeout-ms" => options.timeout = millis(value()?)?,
                "--body-idle-ms" => options.body_idle = millis(value()?)?,
                "--attempts" => {
                    options.attempts = value()?.parse().map_err(|e| format!("--attempts: {e}"))?
                }
                "--deadline-ms" => options.deadline = Some(millis(value()?)?),
                "--http2" => options.http2 = true,
                "--bare" => options.bare = true,
                "--metrics" => {
                    options.metrics = Some(value()?.parse().map_err(|e| format!("--metrics: {e}"))?)
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        health_check(&options)?;
        Ok(options)
    }
}

const USAGE: &str = "usage: reverse_proxy [--listen ADDR] [--upstream URL]... [--timeout-ms N] \
[--body-idle-ms N] [--attempts N] [--deadline-ms N] [--http2] [--consecutive-failures N] \
[--base-ejection-ms N] [--max-ejection-ms N] [--max-ejection-percent N] [--short-ejection-ms N] \
[--failure-rate-window N] [--slow-start-ms N] [--health-check-path PATH | --health-check-grpc | \
--health-check-tcp] [--health-check-interval-ms N] [--bare] [--metrics ADDR]";

/// The replicas as an endpoint set, with the health policy the flags give.
pub fn endpoint_set(options: &Options, upstreams: &[Uri]) -> Result<EndpointSet, String> {
    let endpoints = upstreams
        .iter()
        .map(|uri| {
            // Endpoints are scheme and authority; the path is the proxy's to add.
            let origin = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |a| a.as_str())
            );
            origin
                .parse::<Endpoint>()
                .map_err(|e| format!("--upstream: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default = if upstreams.len() > 1 { 5 } else { 0 };
    let policy = HealthPolicy::new()
        .consecutive_failures(options.consecutive_failures.unwrap_or(default))
        .base_ejection(options.base_ejection)
        .max_ejection(options.max_ejection)
        .max_ejection_percent(options.max_ejection_percent)
        .short_ejection(options.short_ejection)
        .failure_rate_window(options.failure_rate_window)
        .slow_start(options.slow_start);
    let set = EndpointSet::new(endpoints).map_err(|e| format!("--upstream: {e}"))?;
    let set = set.health_policy(policy);
    if let Some(check) = health_check(options)? {
        // gRPC health is HTTP/2: its own client then, with prior knowledge.
        let http2 = options.http2 || options.health_check_grpc;
        let checker = client::<http_body_util::Full<bytes::Bytes>>(options, http2);
        tokio::spawn(set.health_checks(check, checker));
    }
    Ok(set)
}

/// The active health check the flags ask for, if any.
fn health_check(options: &Options) -> Result<Option<HealthCheck>, String> {
    let kinds = usize::from(options.health_check_path.is_some())
        + usize::from(options.health_check_grpc)
        + usize::from(options.health_check_tcp);
    let check = match (&options.health_check_path, kinds) {
        (_, 0) if options.health_check_interval.is_some() => {
            return Err("--health-check-interval-ms needs --health-check-path, \
--health-check-grpc or --health-check-tcp"
                .into());
        }
        (_, 0) => return Ok(None),
        (_, 2..) => {
            return Err(
                "choose one of --health-check-path, --health-check-grpc and \
--health-check-tcp"
                    .into(),
            );
        }
        (Some(path), _) => {
            HealthCheck::http(path).map_err(|e| format!("--health-check-path: {e}"))?
        }
        (None, _) if options.health_check_grpc => HealthCheck::grpc(),
        (None, _) => HealthCheck::tcp(),
    };
    Ok(Some(match options.health_check_interval {
        Some(interval) => check.interval(interval),
        None => check,
    }))
}

/// The proxy: every request goes to one of `upstreams` through the whole
/// `GatewayLayer`.
pub fn app(options: &Options, upstreams: &[Uri]) -> Result<Router, String> {
    let set = endpoint_set(options, upstreams)?;
    let upstream = upstreams[0].clone();
    let mut gateway = GatewayLayer::new()
        .upstreams(set)
        .max_attempts(options.attempts)
        .attempt_timeout(options.timeout)
        // An idempotent request whose attempt timed out goes again (`--attempts`).
        .retry_timeouts(true)
        .body_idle_timeout(options.body_idle);
    if let Some(deadline) = options.deadline {
        gateway = gateway.deadline(deadline);
    }

    let http2 = options.http2;
    let rewrite = move |req: Request| to_upstream(req, &upstream, http2);
    if options.bare {
        let bare = ServiceBuilder::new()
            .layer(axum::error_handling::HandleErrorLayer::new(
                |_: axum::BoxError| async { http::StatusCode::BAD_GATEWAY },
            ))
            .map_err(axum::BoxError::from)
            .map_request(rewrite)
            .map_response(tidy)
            .service(client(options, options.http2));
        return Ok(Router::new().fallback_service(bare));
    }
    let proxy = ServiceBuilder::new()
        .map_request(rewrite)
        .map_response(tidy)
        .layer(gateway)
        .service(client(options, options.http2));
    Ok(Router::new().fallback_service(JoinUpgrades { inner: proxy }))
}

/// Joins HTTP/1.1 upgrades (see [`join_upgrades`]). Other requests pass through
/// without an allocation: only an upgrade's future is boxed.
#[derive(Clone)]
struct JoinUpgrades<S> {
    inner: S,
}

impl<S, B> tower::Service<Request> for JoinUpgrades<S>
where
    S: tower::Service<Request, Response = http::Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = MaybeUpgrade<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if !wants_upgrade(req.headers()) {
            return MaybeUpgrade::Plain {
                future: self.inner.call(req),
            };
        }
        let downstream = hyper::upgrade::on(&mut req);
        let future = self.inner.call(req);
        MaybeUpgrade::Upgrade {
            future: Box::pin(join_upgrades(downstream, future)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`JoinUpgrades`]: the inner one, or a boxed upgrade.
    #[project = MaybeUpgradeProj]
    enum MaybeUpgrade<F> {
        Plain { #[pin] future: F },
        Upgrade { future: std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>> },
    }
}

impl<F, B> Future for MaybeUpgrade<F>
where
    F: Future<Output = Result<http::Response<B>, std::convert::Infallible>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<axum::response::Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            MaybeUpgradeProj::Plain { future } => future
                .poll(cx)
                .map(|res| res.map(|res| res.map(axum::body::Body::new))),
            MaybeUpgradeProj::Upgrade { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

/// HTTP/1.1 upgrades (WebSocket): the upstream's `101` passes through, then the two
/// upgraded connections are joined both ways until either side closes. An upstream
/// that answers an upgrade request with a success other than `101`, or whose
/// upgraded connection cannot be taken over, is `http_upgrade_failed` (502); its
/// `3xx`-`5xx` refusals (`401`, `426`, ...) pass through, as nginx and Envoy do.
async fn join_upgrades<B>(
    downstream: hyper::upgrade::OnUpgrade,
    answer: impl Future<Output = Result<http::Response<B>, std::convert::Infallible>>,
) -> axum::response::Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    use axum::response::IntoResponse;
    use tower_bad_gateway::{ErrorKind, GatewayError};
    let Ok(res) = answer.await;
    let mut res = res.map(axum::body::Body::new);
    if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        if res.status().is_success() {
            return GatewayError::new(ErrorKind::UpgradeFailed).into_response();
        }
        return res;
    }
    // Take the upstream connection over before telling the client it switched.
    let upstream =
        match tokio::time::timeout(Duration::from_secs(10), hyper::upgrade::on(&mut res)).await {
            Ok(Ok(upgraded)) => upgraded,
            Ok(Err(err)) => {
                return GatewayError::new(ErrorKind::UpgradeFailed)
                    .with_source(err)
                    .into_response();
            }
            Err(elapsed) => {
                return GatewayError::new(ErrorKind::UpgradeFailed)
                    .with_source(elapsed)
                    .into_response();
            }
        };
    tokio::spawn(async move {
        // The client's side is ready once its 101 has gone out.
        let Ok(downstream) = downstream.await else {
            return;
        };
        let mut downstream = hyper_util::rt::TokioIo::new(downstream);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
    });
    res
}

/// Whether a request asks for a protocol upgrade (`Connection: upgrade` and an
/// `Upgrade` header).
fn wants_upgrade(headers: &HeaderMap) -> bool {
    let upgrade_named = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    upgrade_named && headers.contains_key(header::UPGRADE)
}

/// Removes the upstream's hop-by-hop headers from its answer and adds `Via`; a
/// `101` keeps its `Upgrade`, named in `Connection`.
fn tidy<B>(mut res: http::Response<B>) -> http::Response<B> {
    let version = res.version();
    let upgrade = (res.status() == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| res.headers().get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(res.headers_mut());
    if let Some(protocol) = upgrade {
        res.headers_mut().insert(header::UPGRADE, protocol);
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    append_via(res.headers_mut(), version);
    res
}

/// A pooled hyper-util client: HTTP/1.1, or HTTP/2 with prior knowledge.
fn client<B>(options: &Options, http2: bool) -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(options.timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .pool_idle_timeout(Duration::from_secs(90))
        .http1_read_buf_exact_size(4096)
        .build(connector)
}

/// Rewrites a downstream request for the upstream (`http2`: an HTTP/2 upstream).
fn to_upstream(mut req: Request, upstream: &Uri, http2: bool) -> Request {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let base = upstream.path().trim_end_matches('/');
    let uri = format!(
        "{}://{}{base}{path}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str())
    );
    let version = req.version();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let upgrade = wants_upgrade(req.headers())
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten();
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // An upgrade asks the next hop too: `Upgrade` goes on, named in `Connection`.
    // (HTTP/2 has no upgrades: the upstream then answers as it would without.)
    if let Some(protocol) = upgrade.filter(|_| !http2) {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // `TE` is hop-by-hop (RFC 9110 §10.1.4): HTTP/2 allows `TE: trailers` alone,
    // HTTP/1.1 wants it named in `Connection` too.
    if !http2 && headers.contains_key(header::TE) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("te"));
    }
    // The client sets Host (HTTP/1.1) or :authority (HTTP/2) from the new URI.
    headers.remove(header::HOST);
    if let Some(ip) = client {
        append(headers, X_FORWARDED_FOR, &ip.to_string());
    }
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    append_via(headers, version);
    // Let the client pick the upstream's version.
    *req.version_mut() = Version::HTTP_11;
    match uri.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        // Unreachable with a valid upstream and path; the gateway answers it 500.
        Err(_) => *req.uri_mut() = Uri::from_static("/"),
    }
    req
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header
/// it names, and the well-known ones. `TE: trailers` is kept (gRPC needs it).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let trailers_only = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !trailers_only {
        headers.remove(header::TE);
    }
}

fn append_via(headers: &mut HeaderMap, version: Version) {
    let protocol = match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    append(
        headers,
        header::VIA,
        &format!("{protocol} tower-bad-gateway"),
    );
}

/// Appends a member to a list header as a field line of its own, after every
/// line already there (RFC 9110 §5.3: the lines of a list are one list).
fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(name, value);
    }
}

/// The Prometheus recorder the gateway's metrics go to (feature `metrics` of
/// `tower-bad-gateway`; `metrics-exporter-prometheus` renders them).
pub fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        // Buckets for `http.client.request.duration`, in seconds.
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .expect("the buckets are not empty")
        .build_recorder()
}

/// Serves `GET /metrics` (Prometheus text) from `handle` on `listener`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    );
    axum::serve(listener, app).await
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    eprintln!("shutting down: finishing requests in flight");
}

#[tokio::main]
async fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // Without --upstream, a deliberately broken one to try the failures on.
    let mut _broken = None;
    let upstreams = match options.upstreams.clone() {
        upstreams if !upstreams.is_empty() => upstreams,
        _ => {
            let broken = broken_upstream::BrokenUpstream::start()
                .await
                .expect("cannot start the built-in upstream");
            let uri = format!("http://{}", broken.addr)
                .parse()
                .expect("a valid URI");
            _broken = Some(broken);
            vec![uri]
        }
    };
    let app = match app(&options, &upstreams) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Some(metrics) = options.metrics {
        let recorder = metrics_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            eprintln!("a metrics recorder is already installed");
            std::process::exit(1);
        }
        tower_bad_gateway::metrics::describe();
        let listener = match tokio::net::TcpListener::bind(metrics).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("cannot listen on {metrics}: {err}");
                std::process::exit(1);
            }
        };
        println!(
            "metrics at http://{}/metrics",
            listener.local_addr().unwrap_or(metrics)
        );
        tokio::spawn(serve_metrics(listener, handle));
    }
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on {}: {err}", options.listen);
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let list: Vec<String> = upstreams.iter().map(Uri::to_string).collect();
    println!("proxying http://{addr} -> {}", list.join(", "));
    if _broken.is_some() {
        println!("built-in broken upstream; try:");
        for (path, what) in broken_upstream::PATHS {
            println!("  curl -i http://{addr}{path:<14} # {what}");
        }
    }
    if let Err(err) = serve(listener, app, shutdown_signal()).await {
        eprintln!("server error: {err}");
        std::process::exit(1);
    }
}
