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
//! nginx ignores `max_fails` for a lone server). README.md describes each. The
//! baselines `benches/e2e.sh` compares this with are in `benches/baselines/`.

use http::Uri;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use std::{future::Future, net::SocketAddr, time::Duration};
use tower::Layer;
use tower_bad_gateway::proxy::{self, Proxy, ProxyLayer, TakeUpgrade, TakeUpgradeLayer};
use tower_bad_gateway::upstreams::{EndpointSet, HealthPolicy};
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
        }
    }
}

const USAGE: &str = "usage: reverse_proxy [--listen ADDR] [--upstream URL]... [--timeout-ms N] \
[--body-idle-ms N] [--attempts N] [--deadline-ms N] [--http2] [--consecutive-failures N] \
[--base-ejection-ms N] [--max-ejection-ms N] [--max-ejection-percent N] [--short-ejection-ms N] \
[--failure-rate-window N] [--slow-start-ms N] [--metrics ADDR] [--threads N]";

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
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err("--upstream must be an http:// URL with a host".into());
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
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

/// The replicas as an endpoint set (each with its base path), with the health
/// policy the flags give.
pub fn endpoint_set(o: &Options, upstreams: &[Uri]) -> Result<EndpointSet, String> {
    let lone = if upstreams.len() > 1 { 5 } else { 0 };
    let policy = HealthPolicy::new()
        .consecutive_failures(o.consecutive_failures.unwrap_or(lone))
        .base_ejection(o.base_ejection)
        .max_ejection(o.max_ejection)
        .max_ejection_percent(o.max_ejection_percent)
        .short_ejection(o.short_ejection)
        .failure_rate_window(o.failure_rate_window)
        .slow_start(o.slow_start);
    let set = EndpointSet::from_urls(upstreams.iter().map(Uri::to_string));
    Ok(set
        .map_err(|e| format!("--upstream: {e}"))?
        .health_policy(policy))
}

/// The proxy: the proxy core, the whole gateway, the pooled client.
pub type App =
    Proxy<Gateway<TakeUpgrade<Client<HttpConnector, UpstreamBody<hyper::body::Incoming>>>>>;

/// The proxy in front of `upstreams` (what the tests serve).
#[allow(dead_code)]
pub fn app(o: &Options, upstreams: &[Uri]) -> Result<App, String> {
    Ok(app_with(o, endpoint_set(o, upstreams)?))
}

/// The proxy in front of `set` (a clone shares its health), with its own client.
fn app_with(o: &Options, set: EndpointSet) -> App {
    let mut gateway = GatewayLayer::new()
        .upstreams(set)
        .max_attempts(o.attempts)
        .attempt_timeout(o.timeout)
        .retry_timeouts(true) // an idempotent request whose attempt timed out goes again
        .body_idle_timeout(o.body_idle);
    if let Some(deadline) = o.deadline {
        gateway = gateway.deadline(deadline);
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(o.timeout));
    connector.set_nodelay(true);
    let client = Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(o.http2)
        .pool_idle_timeout(Duration::from_secs(90))
        .http1_read_buf_exact_size(4096)
        .build(connector);
    let gateway = gateway.layer(TakeUpgradeLayer::new().layer(client));
    ProxyLayer::new().upstream_http2(o.http2).layer(gateway)
}

/// The Prometheus recorder the gateway's metrics go to (buckets in seconds).
pub fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    let buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&buckets)
        .expect("the buckets are not empty")
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
    let make = move || app_with(&o, set.clone());
    let served = tokio::task::spawn_blocking(move || {
        proxy::serve_threads(listen, threads, make, bound, proxy::shutdown_signal)
    });
    match served.await {
        Ok(Ok(())) => eprintln!("shut down: the requests in flight were finished first"),
        Ok(Err(err)) => exit(format!("cannot serve on {listen}: {err}"), 1),
        Err(err) => exit(format!("server error: {err}"), 1),
    }
}
