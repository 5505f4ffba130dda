//! A reverse proxy: the whole `GatewayLayer` over a pooled hyper-util client
//! (HTTP/1.1, or HTTP/2 with `--http2`), the `proxy` core around it (hop-by-hop
//! fields, `Via` and `X-Forwarded-*`, upgrades joined, CONNECT refused), served
//! by plain hyper, with graceful shutdown on Ctrl-C and SIGTERM.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://127.0.0.1:8080
//! cargo run --release --example reverse_proxy -- \
//!     --upstream http://10.0.0.1:8080 --upstream http://10.0.0.2:8080 --upstream http://10.0.0.3:8080
//! cargo run --example reverse_proxy            # built-in broken upstream to try
//! ```
//!
//! Flags (`--help` lists them): the listener, the upstream replicas (each
//! `--upstream URL` may carry a base path: `/x` goes to `URL/x`), the timeouts and
//! attempts, `--http2` upstreams, `--metrics ADDR` (Prometheus text at
//! `/metrics`), and the passive health of `HealthPolicy` (with a single
//! `--upstream`, ejection is off unless `--consecutive-failures` is given, as
//! nginx ignores `max_fails` for a lone server), active health checks
//! (`--health-check-path PATH`, `--health-check-grpc` or `--health-check-tcp`,
//! every `--health-check-interval-ms N`), an upstream by DNS name
//! (`--upstream http://NAME:PORT` follows its A/AAAA records by their TTLs, at
//! least every `--dns-min-ttl-ms N`, 5000 by default, asking `--dns-server ADDR`
//! or the system's resolver) and `https://` upstreams (verified against their
//! name, with the roots of `--ca-file PATH` or the system's). README.md describes
//! each. The baselines `benches/e2e.sh` compares this with are in
//! `benches/baselines/`.

use http::Uri;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::{future::Future, net::SocketAddr, path::PathBuf, time::Duration};
use tower::{Layer, util::Either};
use tower_bad_gateway::proxy::{self, Proxy, ProxyLayer, TakeUpgrade, TakeUpgradeLayer};
use tower_bad_gateway::retry::{HedgePolicy, RetryBudget};
use tower_bad_gateway::upstreams::ResolveTo;
use tower_bad_gateway::upstreams::{ByAddress, Dns, EndpointSet, HealthCheck, HealthPolicy};
use tower_bad_gateway::{Gateway, GatewayLayer, UpstreamBody};

// mimalloc keeps the peaks of bursts of connections flat where glibc's arenas
// fragment (`python3 benches/memory.py`, BENCHMARKS.md); `no_thp`: without
// transparent huge pages, which cost its first burst 60% more.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Its refusing and black-hole ports are for the demo: this proxy has one upstream.
#[allow(dead_code)]
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

/// The proxy's settings, from the command line (see the flags above).
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
    /// `None`: 5 for several upstreams, ejection off for one; `Some(0)`: off.
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u8,
    pub short_ejection: Duration,
    pub failure_rate_window: u32,
    pub slow_start: Duration,
    pub metrics: Option<SocketAddr>,
    /// Serving threads, each a runtime and a listener (default: one per core).
    pub threads: Option<usize>,
    /// Active health checks: `GET` this path, gRPC health, or a TCP connect.
    pub health_check_path: Option<String>,
    pub health_check_grpc: bool,
    pub health_check_tcp: bool,
    /// How often each replica is checked (`None`: the library's 5 s).
    pub health_check_interval: Option<Duration>,
    /// The name server to ask for an upstream given by name (`None`: the system's).
    pub dns_server: Option<SocketAddr>,
    pub dns_min_ttl: Duration,
    /// The roots `https://` upstreams are verified with (`None`: the system's).
    pub ca_file: Option<PathBuf>,
    /// Hedge idempotent requests after this long (`None`: no hedging).
    pub hedge_after: Option<Duration>,
    /// Hedges allowed, in percent of the requests that could be hedged.
    pub hedge_budget_percent: u32,
    /// Attempts in all of a hedged request, the first included.
    pub hedge_max_attempts: u32,
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
            metrics: None,
            threads: None,
            health_check_path: None,
            health_check_grpc: false,
            health_check_tcp: false,
            health_check_interval: None,
            dns_server: None,
            dns_min_ttl: Duration::from_secs(5),
            ca_file: None,
            hedge_after: None,
            hedge_budget_percent: 10,
            hedge_max_attempts: 2,
        }
    }
}

const USAGE: &str = "usage: reverse_proxy [--listen ADDR] [--upstream URL]... [--timeout-ms N] \
[--body-idle-ms N] [--attempts N] [--deadline-ms N] [--http2] [--consecutive-failures N] \
[--base-ejection-ms N] [--max-ejection-ms N] [--max-ejection-percent N] [--short-ejection-ms N] \
[--failure-rate-window N] [--slow-start-ms N] [--health-check-path PATH | --health-check-grpc | \
--health-check-tcp] [--health-check-interval-ms N] [--dns-server ADDR] [--dns-min-ttl-ms N] \
[--ca-file PATH] [--hedge-after-ms N] [--hedge-budget-percent N] [--hedge-max-attempts N] \
[--metrics ADDR] [--threads N]";

impl Options {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut o = Options::default();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            macro_rules! num {
                () => {
                    value()?.parse().map_err(|e| format!("{flag}: {e}"))?
                };
            }
            let ms = |n: u64| Duration::from_millis(n);
            match flag.as_str() {
                "--listen" => o.listen = num!(),
                "--upstream" => {
                    let uri: Uri = num!();
                    let web = matches!(uri.scheme_str(), Some("http" | "https"));
                    if !web || uri.authority().is_none() {
                        return Err(
                            "--upstream must be an http:// or https:// URL with a host".into()
                        );
                    }
                    let base = |u: &Uri| u.path().trim_end_matches('/').to_owned();
                    if o.upstreams
                        .first()
                        .is_some_and(|first| base(first) != base(&uri))
                    {
                        return Err("every --upstream must have the same path".into());
                    }
                    o.upstreams.push(uri);
                }
                "--consecutive-failures" => o.consecutive_failures = Some(num!()),
                "--base-ejection-ms" => o.base_ejection = ms(num!()),
                "--max-ejection-ms" => o.max_ejection = ms(num!()),
                "--max-ejection-percent" => {
                    o.max_ejection_percent = num!();
                    if o.max_ejection_percent > 100 {
                        return Err("--max-ejection-percent: at most 100".into());
                    }
                }
                "--short-ejection-ms" => o.short_ejection = ms(num!()),
                "--slow-start-ms" => o.slow_start = ms(num!()),
                "--failure-rate-window" => o.failure_rate_window = num!(),
                "--timeout-ms" => o.timeout = ms(num!()),
                "--body-idle-ms" => o.body_idle = ms(num!()),
                "--attempts" => o.attempts = num!(),
                "--deadline-ms" => o.deadline = Some(ms(num!())),
                "--http2" => o.http2 = true,
                "--metrics" => o.metrics = Some(num!()),
                "--threads" => o.threads = Some(num!()),
                "--health-check-path" => {
                    let path = value()?;
                    HealthCheck::http(&path).map_err(|e| format!("--health-check-path: {e}"))?;
                    o.health_check_path = Some(path);
                }
                "--health-check-grpc" => o.health_check_grpc = true,
                "--health-check-tcp" => o.health_check_tcp = true,
                "--health-check-interval-ms" => o.health_check_interval = Some(ms(num!())),
                "--dns-server" => o.dns_server = Some(num!()),
                "--dns-min-ttl-ms" => o.dns_min_ttl = ms(num!()),
                "--ca-file" => o.ca_file = Some(value()?.into()),
                "--hedge-after-ms" => o.hedge_after = Some(ms(num!())),
                "--hedge-budget-percent" => o.hedge_budget_percent = num!(),
                "--hedge-max-attempts" => o.hedge_max_attempts = num!(),
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        health_check(&o)?;
        Ok(o)
    }
}

/// Whether the set follows a name through DNS: a lone `--upstream` given by name
/// (several are the replicas as given, their names left to the client).
fn follows_name(upstreams: &[Uri]) -> bool {
    matches!(upstreams, [one] if by_name(one))
}

/// Whether the upstream is given by a name, not an address.
fn by_name(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or("");
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_err()
}

/// The active health check the flags ask for, if any.
fn health_check(o: &Options) -> Result<Option<HealthCheck>, String> {
    let kinds = [
        o.health_check_path.is_some(),
        o.health_check_grpc,
        o.health_check_tcp,
    ];
    let check = match (&o.health_check_path, kinds.iter().filter(|k| **k).count()) {
        (_, 0) if o.health_check_interval.is_some() => {
            return Err("--health-check-interval-ms needs --health-check-path, \
--health-check-grpc or --health-check-tcp"
                .into());
        }
        (_, 0) => return Ok(None),
        (_, 2..) => {
            return Err(
                "choose one of --health-check-path, --health-check-grpc and --health-check-tcp"
                    .into(),
            );
        }
        (Some(path), _) => {
            HealthCheck::http(path).map_err(|e| format!("--health-check-path: {e}"))?
        }
        (None, _) if o.health_check_grpc => HealthCheck::grpc(),
        (None, _) => HealthCheck::tcp(),
    };
    Ok(Some(match o.health_check_interval {
        Some(interval) => check.interval(interval),
        None => check,
    }))
}

/// The replicas as an endpoint set (each with its base path), with the health
/// policy the flags give.
pub fn endpoint_set(o: &Options, upstreams: &[Uri]) -> Result<EndpointSet, String> {
    let named = follows_name(upstreams);
    let lone = if upstreams.len() > 1 || named { 5 } else { 0 };
    let policy = HealthPolicy::new()
        .consecutive_failures(o.consecutive_failures.unwrap_or(lone))
        .base_ejection(o.base_ejection)
        .max_ejection(o.max_ejection)
        .max_ejection_percent(o.max_ejection_percent)
        .short_ejection(o.short_ejection)
        .failure_rate_window(o.failure_rate_window)
        .slow_start(o.slow_start);
    let set = if named {
        // A name: its addresses are the replicas, followed by their TTLs.
        let mut dns = Dns::new(&upstreams[0].to_string())
            .map_err(|e| format!("--upstream: {e}"))?
            .min_ttl(o.dns_min_ttl);
        if let Some(server) = o.dns_server {
            dns = dns.server(server);
        }
        let set = EndpointSet::resolving(&dns).health_policy(policy);
        tokio::spawn(set.follow_dns(dns));
        set
    } else {
        let set = EndpointSet::from_urls(upstreams.iter().map(Uri::to_string));
        set.map_err(|e| format!("--upstream: {e}"))?
            .health_policy(policy)
    };
    if let Some(check) = health_check(o)? {
        // gRPC health is HTTP/2: its own client then.
        let http2 = o.http2 || o.health_check_grpc;
        tokio::spawn(set.health_checks(
            check,
            client::<http_body_util::Full<bytes::Bytes>>(o, upstreams, &set, http2)?,
        ));
    }
    Ok(set)
}

type Body = UpstreamBody<hyper::body::Incoming>;
/// A pooled hyper-util client to the addresses the URI names.
type Plain<B> = Client<HttpConnector, B>;
/// A client of one pool per address (for replicas found by a name), TLS when the
/// URI says `https`, verified against the URI's name.
type Resolving<B> =
    ByAddress<Make<B>, Client<hyper_rustls::HttpsConnector<HttpConnector<ResolveTo>>, B>>;
type Make<B> = Box<
    dyn Fn(Option<SocketAddr>) -> Client<hyper_rustls::HttpsConnector<HttpConnector<ResolveTo>>, B>
        + Send
        + Sync,
>;

/// The client: plain for `http://` replicas by address, else one that connects
/// to each replica's address and speaks TLS to `https://` ones.
fn client<B>(
    o: &Options,
    upstreams: &[Uri],
    set: &EndpointSet,
    http2: bool,
) -> Result<Either<Plain<B>, Resolving<B>>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let timeout = o.timeout;
    let builder = move || {
        let mut builder = Client::builder(hyper_util::rt::TokioExecutor::new());
        builder
            .http2_only(http2)
            .pool_idle_timeout(Duration::from_secs(90))
            .http1_read_buf_exact_size(4096);
        builder
    };
    let tls = upstreams.iter().any(|u| u.scheme_str() == Some("https"));
    if !tls && !follows_name(upstreams) {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        return Ok(Either::Left(builder().build(connector)));
    }
    let config = tls_config(o)?;
    let make: Make<B> = Box::new(move |address| {
        let mut http = HttpConnector::new_with_resolver(ResolveTo::new(address));
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config.clone());
        let https = https.https_or_http();
        let https = if http2 {
            https.enable_http2().wrap_connector(http)
        } else {
            https.enable_http1().wrap_connector(http)
        };
        builder().build(https)
    });
    Ok(Either::Right(ByAddress::new(set, make)))
}

/// What `https://` upstreams are verified with: `--ca-file`'s roots, or the system's.
fn tls_config(o: &Options) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match &o.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // hyper-rustls sets the ALPN protocols for the versions the client speaks.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The proxy: the proxy core, the whole gateway, the pooled client.
pub type App = Proxy<Gateway<TakeUpgrade<Either<Plain<Body>, Resolving<Body>>>>>;

/// The proxy in front of `upstreams` (what the tests serve).
#[allow(dead_code)]
pub fn app(o: &Options, upstreams: &[Uri]) -> Result<App, String> {
    app_with(o, upstreams, endpoint_set(o, upstreams)?)
}

/// The proxy in front of `set` (a clone shares its health), with its own client.
fn app_with(o: &Options, upstreams: &[Uri], set: EndpointSet) -> Result<App, String> {
    let mut gateway = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(o.attempts)
        .attempt_timeout(o.timeout)
        .retry_timeouts(true) // an idempotent request whose attempt timed out goes again
        .body_idle_timeout(o.body_idle);
    if let Some(deadline) = o.deadline {
        gateway = gateway.deadline(deadline);
    }
    if let Some(after) = o.hedge_after {
        let budget = f32::from(u16::try_from(o.hedge_budget_percent).unwrap_or(u16::MAX)) / 100.0;
        gateway = gateway.hedge(
            HedgePolicy::after(after)
                .max_attempts(o.hedge_max_attempts)
                .budget(RetryBudget::new(budget, 0, Duration::from_secs(10))),
        );
    }
    let client = client(o, upstreams, &set, o.http2)?;
    let gateway = gateway.layer(TakeUpgradeLayer::new().layer(client));
    Ok(ProxyLayer::new().upstream_http2(o.http2).layer(gateway))
}

/// The Prometheus recorder the gateway's metrics go to: the durations in the
/// OpenTelemetry conventions' buckets, and the recommended naming (`_total` on
/// counters, `_seconds` on durations), as Prometheus users and OpenTelemetry's own
/// Prometheus translation expect.
pub fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower_bad_gateway::metrics::DURATION_BUCKETS;
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &DURATION_BUCKETS)
        .expect("the buckets are not empty")
        .with_recommended_naming(true)
        .build_recorder()
}

/// Serves `GET /metrics` (Prometheus text) from `handle` on `listener`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> std::io::Result<()> {
    let render = move || std::future::ready(handle.render());
    let app = axum::Router::new().route("/metrics", axum::routing::get(render));
    axum::serve(listener, app).await
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (one
/// runtime, one listener: what the tests serve).
#[allow(dead_code)]
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    proxy::serve(listener, app, shutdown).await
}

fn exit(message: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = Options::parse(std::env::args().skip(1)).unwrap_or_else(|m| exit(m, 2));
    // Without --upstream, a deliberately broken one to try the failures on.
    let broken = match o.upstreams.is_empty() {
        true => Some(broken_upstream::BrokenUpstream::start().await),
        false => None,
    };
    let broken = broken.transpose().unwrap_or_else(|e| exit(e, 1));
    let upstreams = match &broken {
        Some(b) => vec![format!("http://{}", b.addr).parse().expect("a valid URI")],
        None => o.upstreams.clone(),
    };
    let set = endpoint_set(&o, &upstreams).unwrap_or_else(|m| exit(m, 2));
    if let Some(addr) = o.metrics {
        let recorder = metrics_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            exit("a metrics recorder is already installed", 1);
        }
        tower_bad_gateway::metrics::describe();
        let listener = tokio::net::TcpListener::bind(addr).await;
        let listener =
            listener.unwrap_or_else(|e| exit(format!("cannot listen on {addr}: {e}"), 1));
        println!(
            "metrics at http://{}/metrics",
            listener.local_addr().unwrap_or(addr)
        );
        tokio::spawn(serve_metrics(listener, handle));
    }
    let list: Vec<String> = upstreams.iter().map(Uri::to_string).collect();
    let has_broken = broken.is_some();
    let bound = move |addr: SocketAddr| {
        println!("proxying http://{addr} -> {}", list.join(", "));
        if has_broken {
            println!("built-in broken upstream; try:");
            for (path, what) in broken_upstream::PATHS {
                println!("  curl -i http://{addr}{path:<14} # {what}");
            }
        }
    };
    // One current-thread runtime and listener per core, as nginx has a worker
    // per core; this runtime keeps the metrics and the broken upstream.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = o.threads.unwrap_or(cores);
    let listen = o.listen;
    // The client's settings were checked when the set was made.
    app_with(&o, &upstreams, set.clone()).unwrap_or_else(|m| exit(m, 2));
    let make = move || app_with(&o, &upstreams, set.clone()).expect("checked above");
    let served = tokio::task::spawn_blocking(move || {
        proxy::serve_threads(listen, threads, make, bound, proxy::shutdown_signal)
    });
    match served.await {
        Ok(Ok(())) => eprintln!("shut down: the requests in flight were finished first"),
        Ok(Err(err)) => exit(format!("cannot serve on {listen}: {err}"), 1),
        Err(err) => exit(format!("server error: {err}"), 1),
    }
}
