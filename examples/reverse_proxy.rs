//! A reverse proxy: the whole `GatewayLayer` over a pooled client (HTTP/1.1, or
//! HTTP/2 with `--http2`), the `proxy` core around it (hop-by-hop fields, `Via`
//! and `X-Forwarded-*`, upgrades joined, CONNECT refused), served by plain hyper
//! from a thread per core, with graceful shutdown on Ctrl-C and SIGTERM.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://127.0.0.1:8080
//! cargo run --release --example reverse_proxy -- --upstream http://10.0.0.1:8080 \
//!     --upstream http://10.0.0.2:8080
//! cargo run --example reverse_proxy            # built-in broken upstream to try
//! ```
//!
//! `--help` lists the flags; README.md describes each. Every `--upstream` may
//! carry the same base path; a lone one given by name follows its DNS records
//! (`proxy::Upstream` says how the flags become the endpoint set and the client).

use http::Uri;
use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};
use tower::Layer;
use tower_bad_gateway::proxy::{self, ClientBuilder, Proxy, ProxyLayer, TakeUpgrade};
use tower_bad_gateway::proxy::{TakeUpgradeLayer, Upstream, UpstreamClient};
use tower_bad_gateway::retry::{HedgePolicy, RetryBudget, RetryPolicy, RetryThrottle};
use tower_bad_gateway::upstreams::{EndpointSet, HealthCheck, HealthPolicy};
use tower_bad_gateway::{Gateway, GatewayLayer, UpstreamBody, metrics::DURATION_BUCKETS};

// mimalloc keeps the peaks of bursts of connections flat where glibc's arenas
// fragment (`benches/memory.py`); `no_thp`: huge pages cost its first burst 60%.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(dead_code)] // its refusing and black-hole ports are for the demo
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

/// One line per option: its field, type and default, its flag, the flag's value
/// in the usage, and how the value is read (given the options so far).
macro_rules! options {
    ($($field:ident: $ty:ty = $default:expr, $flag:literal $value:literal, $read:expr;)*) => {
        /// The proxy's settings, from the command line.
        #[derive(Debug, Clone)]
        pub struct Options { $(pub $field: $ty,)* }
        impl Default for Options { fn default() -> Self { Self { $($field: $default,)* } } }
        const USAGE: &str = concat!("usage: reverse_proxy", $(" [", $flag, $value, "]",)*);
        impl Options {
            pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
                let mut o = Options::default();
                while let Some(flag) = args.next() {
                    let arg = &mut Arg { flag: &flag, rest: &mut args };
                    match arg.flag {
                        $($flag => {
                            let read: fn(&Self, &mut Arg<'_>) -> Result<$ty, String> = $read;
                            o.$field = read(&o, arg)?;
                        })*
                        "-h" | "--help" => return Err(USAGE.into()),
                        other => return Err(format!("unknown flag {other}\n{USAGE}")),
                    }
                }
                o.health_check().map(|_| o)
            }
        }
    };
}

options! {
    listen: SocketAddr = ([127, 0, 0, 1], 3000).into(), "--listen" " ADDR", |_, a| a.value();
    upstreams: Vec<Uri> = Vec::new(), "--upstream" " URL", |o, a| {
        let list = [&o.upstreams[..], &[a.value()?]].concat();
        Upstream::new(list.clone()).map_err(|e| format!("--upstream: {e}"))?;
        Ok(list)
    };
    timeout: Duration = ms(10_000), "--timeout-ms" " N", |_, a| a.ms();
    body_idle: Duration = ms(30_000), "--body-idle-ms" " N", |_, a| a.ms();
    attempts: u32 = 3, "--attempts" " N", |_, a| a.value();
    deadline: Option<Duration> = None, "--deadline-ms" " N", |_, a| a.ms().map(Some);
    http2: bool = false, "--http2" "", |_, _| Ok(true);
    // `None`: 5 for several upstreams, ejection off for a lone one; `Some(0)`: off.
    consecutive_failures: Option<u32> = None, "--consecutive-failures" " N",
        |_, a| a.value().map(Some);
    base_ejection: Duration = ms(10_000), "--base-ejection-ms" " N", |_, a| a.ms();
    max_ejection: Duration = ms(300_000), "--max-ejection-ms" " N", |_, a| a.ms();
    max_ejection_percent: u8 = 10, "--max-ejection-percent" " N", |_, a| match a.value()? {
        p @ 0..=100 => Ok(p),
        _ => Err("--max-ejection-percent: at most 100".into()),
    };
    short_ejection: Duration = ms(1000), "--short-ejection-ms" " N", |_, a| a.ms();
    failure_rate_window: u32 = 50, "--failure-rate-window" " N", |_, a| a.value();
    slow_start: Duration = Duration::ZERO, "--slow-start-ms" " N", |_, a| a.ms();
    health_check_path: Option<String> = None, "--health-check-path" " PATH",
        |_, a| a.value().map(Some);
    health_check_grpc: bool = false, "--health-check-grpc" "", |_, _| Ok(true);
    health_check_tcp: bool = false, "--health-check-tcp" "", |_, _| Ok(true);
    // `None`: the library's 5 s.
    health_check_interval: Option<Duration> = None, "--health-check-interval-ms" " N",
        |_, a| a.ms().map(Some);
    // `None`: the system's resolver.
    dns_server: Option<SocketAddr> = None, "--dns-server" " ADDR", |_, a| a.value().map(Some);
    dns_min_ttl: Duration = ms(5000), "--dns-min-ttl-ms" " N", |_, a| a.ms();
    // The roots `https://` upstreams are verified with (`None`: the system's).
    ca_file: Option<PathBuf> = None, "--ca-file" " PATH", |_, a| a.value().map(Some);
    metrics: Option<SocketAddr> = None, "--metrics" " ADDR", |_, a| a.value().map(Some);
    // A client connection without a request in flight is closed after N to 2N ms.
    idle_timeout: Duration = proxy::IDLE_TIMEOUT, "--idle-timeout-ms" " N", |_, a| match a.ms()? {
        d if d.is_zero() => Err("--idle-timeout-ms: at least 1".into()),
        d => Ok(d),
    };
    // Serving threads, each a runtime and a listener (`None`: one per core).
    threads: Option<usize> = None, "--threads" " N", |_, a| a.value().map(Some);
    // Hedge idempotent requests to another replica after this long (`None`: off).
    hedge_after: Option<Duration> = None, "--hedge-after-ms" " N", |_, a| a.ms().map(Some);
    hedge_budget_percent: u16 = 10, "--hedge-budget-percent" " N", |_, a| a.value();
    hedge_max_attempts: u32 = 2, "--hedge-max-attempts" " N", |_, a| a.value();
    // gRFC A6's retry throttle over every request.
    retry_throttle: Option<(u32, f32)> = None, "--grpc-retry-throttle" " MAX_TOKENS,TOKEN_RATIO",
        |_, a| {
            let text: String = a.value()?;
            let bad = || format!("--grpc-retry-throttle: MAX_TOKENS,TOKEN_RATIO, not {text:?}");
            let (max, ratio) = text.split_once(',').ok_or_else(bad)?;
            Ok(Some((max.parse().map_err(|_| bad())?, ratio.parse().map_err(|_| bad())?)))
        };
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A flag, and the arguments its value comes from.
struct Arg<'a> {
    flag: &'a str,
    rest: &'a mut dyn Iterator<Item = String>,
}

impl Arg<'_> {
    fn value<T: FromStr<Err: std::fmt::Display>>(&mut self) -> Result<T, String> {
        let needs = || format!("{} needs a value", self.flag);
        let text = self.rest.next().ok_or_else(needs)?;
        text.parse().map_err(|e| format!("{}: {e}", self.flag))
    }
    fn ms(&mut self) -> Result<Duration, String> {
        self.value().map(ms)
    }
}

impl Options {
    /// The active health check the flags ask for, if any.
    fn health_check(&self) -> Result<Option<HealthCheck>, String> {
        const KINDS: &str = "--health-check-path, --health-check-grpc or --health-check-tcp";
        let path = self.health_check_path.as_deref();
        let bad_path = |e| format!("--health-check-path: {e}");
        let check = match (path, self.health_check_grpc, self.health_check_tcp) {
            (None, false, false) if self.health_check_interval.is_some() => {
                return Err(format!("--health-check-interval-ms needs {KINDS}"));
            }
            (None, false, false) => return Ok(None),
            (Some(path), false, false) => HealthCheck::http(path).map_err(bad_path)?,
            (None, true, false) => HealthCheck::grpc(),
            (None, false, true) => HealthCheck::tcp(),
            _ => return Err(format!("choose one of {KINDS}")),
        };
        let interval = self.health_check_interval.into_iter();
        Ok(Some(interval.fold(check, HealthCheck::interval)))
    }

    /// The upstream of `urls` with the health, DNS and TLS the flags give, and its
    /// endpoint set (its DNS and checks run on this runtime).
    fn upstream(&self, urls: &[Uri]) -> Result<(Upstream, EndpointSet), String> {
        let upstream = Upstream::new(urls.to_vec()).map_err(|e| format!("--upstream: {e}"))?;
        let lone = if upstream.has_replicas() { 5 } else { 0 };
        let policy = HealthPolicy::new()
            .consecutive_failures(self.consecutive_failures.unwrap_or(lone))
            .base_ejection(self.base_ejection)
            .max_ejection(self.max_ejection)
            .max_ejection_percent(self.max_ejection_percent)
            .short_ejection(self.short_ejection)
            .failure_rate_window(self.failure_rate_window)
            .slow_start(self.slow_start);
        let mut upstream = upstream.health_policy(policy).dns_min_ttl(self.dns_min_ttl);
        if let Some(server) = self.dns_server {
            upstream = upstream.dns_server(server);
        }
        if let Some(check) = self.health_check()? {
            upstream = upstream.health_check(check, &self.client(urls)?);
        }
        let set = upstream
            .endpoint_set()
            .map_err(|e| format!("--upstream: {e}"));
        Ok((upstream, set?))
    }

    /// The client's settings; TLS (ring, the roots of `--ca-file` or the system's)
    /// for `https://` upstreams.
    fn client(&self, urls: &[Uri]) -> Result<ClientBuilder, String> {
        let builder = ClientBuilder::new()
            .http2(self.http2)
            .connect_timeout(self.timeout);
        if !urls.iter().any(|u| u.scheme_str() == Some("https")) {
            return Ok(builder);
        }
        let roots = ClientBuilder::ca_roots(self.ca_file.as_deref());
        let roots = roots.map_err(|e| format!("--ca-file {e}"))?;
        let ring = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        builder
            .tls_roots(ring, roots)
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// The proxy: the proxy core, the whole gateway, the pooled client.
pub type App = Proxy<Gateway<TakeUpgrade<UpstreamClient<UpstreamBody<hyper::body::Incoming>>>>>;

/// The proxy in front of `urls` (what the tests serve).
#[allow(dead_code)]
pub fn app(o: &Options, urls: &[Uri]) -> Result<App, String> {
    let (upstream, set) = o.upstream(urls)?;
    app_with(o, &upstream, set)
}

/// The proxy in front of `set` (a clone shares its health), with its own client.
fn app_with(o: &Options, upstream: &Upstream, set: EndpointSet) -> Result<App, String> {
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
        let share = f32::from(o.hedge_budget_percent) / 100.0;
        let budget = RetryBudget::new(share, 0, Duration::from_secs(10));
        let hedge = HedgePolicy::after(after).max_attempts(o.hedge_max_attempts);
        gateway = gateway.hedge(hedge.budget(budget));
    }
    if let Some((max_tokens, ratio)) = o.retry_throttle {
        let throttle = RetryThrottle::new(max_tokens, ratio);
        gateway = gateway.retry_policy(RetryPolicy::new().throttle(throttle));
    }
    let client = upstream.client(&set, &o.client(upstream.urls())?);
    let gateway = gateway.layer(TakeUpgradeLayer::new().layer(client));
    Ok(ProxyLayer::new().upstream_http2(o.http2).layer(gateway))
}

/// The Prometheus recorder: the durations in the OpenTelemetry conventions'
/// buckets, the recommended naming (`_total`, `_seconds`).
pub fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let (durations, buckets) = (Matcher::Suffix("duration".into()), DURATION_BUCKETS);
    let builder = PrometheusBuilder::new().set_buckets_for_metric(durations, &buckets);
    let builder = builder.expect("the buckets are not empty");
    builder.with_recommended_naming(true).build_recorder()
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

#[allow(unused_imports)] // what the tests serve the app with
pub use proxy::serve;

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
    let urls = match &broken {
        Some(b) => vec![format!("http://{}", b.addr).parse().expect("a valid URI")],
        None => o.upstreams.clone(),
    };
    // One set for every thread (one health), and the client's settings checked.
    let (upstream, set) = o.upstream(&urls).unwrap_or_else(|m| exit(m, 2));
    app_with(&o, &upstream, set.clone()).unwrap_or_else(|m| exit(m, 2));
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
        let addr = listener.local_addr().unwrap_or(addr);
        println!("metrics at http://{addr}/metrics");
        tokio::spawn(serve_metrics(listener, handle));
    }
    let has_broken = broken.is_some();
    let bound = move |addr: SocketAddr| {
        let list = urls.iter().map(Uri::to_string).collect::<Vec<_>>();
        println!("proxying http://{addr} -> {}", list.join(", "));
        if has_broken {
            println!("built-in broken upstream; try:");
            for (path, what) in broken_upstream::PATHS {
                println!("  curl -i http://{addr}{path:<14} # {what}");
            }
        }
    };
    // One current-thread runtime and listener per core, as nginx has a worker per core.
    let cores = || std::thread::available_parallelism().map_or(1, usize::from);
    let (listen, threads) = (o.listen, o.threads.unwrap_or_else(cores));
    let server = proxy::Server::new().idle_timeout(o.idle_timeout);
    let make = move || app_with(&o, &upstream, set.clone()).expect("checked above");
    let served = tokio::task::spawn_blocking(move || {
        server.serve_threads(listen, threads, make, bound, proxy::shutdown_signal)
    });
    match served.await {
        Ok(Ok(())) => eprintln!("shut down: the requests in flight were finished first"),
        Ok(Err(err)) => exit(format!("cannot serve on {listen}: {err}"), 1),
        Err(err) => exit(format!("server error: {err}"), 1),
    }
}
