//! A reverse proxy: the `proxy` core (hop-by-hop fields, `Via`, `X-Forwarded-*`,
//! upgrades joined, CONNECT refused) around the whole `GatewayLayer` over a
//! pooled client, served from a thread per core, drained on Ctrl-C and SIGTERM.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://10.0.0.1:8080/api \
//!     --upstream http://10.0.0.2:8080/api     # replicas, one base path
//! cargo run --example reverse_proxy            # a built-in broken upstream to try
//! ```
//! `--help` lists the flags, README.md describes them; `proxy::Upstream` says how
//! the URLs become the endpoint set (a lone name follows DNS) and the client.

use http::Uri;
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tower::Layer;
use tower_bad_gateway::proxy::{self, ClientBuilder, Proxy, ProxyLayer, TakeUpgrade, prometheus};
use tower_bad_gateway::proxy::{TakeUpgradeLayer, Upstream, UpstreamClient};
use tower_bad_gateway::retry::{HedgePolicy, RetryBudget, RetryPolicy, RetryThrottle};
use tower_bad_gateway::upstreams::{EndpointSet, HealthCheck, HealthPolicy};
use tower_bad_gateway::{Gateway, GatewayLayer, UpstreamBody};

// mimalloc keeps the peaks of bursts of connections flat where glibc's arenas
// fragment (`benches/memory.py`); `no_thp`: huge pages cost its first burst 60%.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(dead_code)] // its refusing and black-hole ports are for the demo
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

#[path = "support/flags.rs"]
mod flags;
use flags::{Arg, exit, ms, on, options};

// The defaults; `None` is unset: `--consecutive-failures` 5 for replicas, off for a lone
// upstream; the library's 5 s between checks; the system's resolver and roots; a thread per core.
options! { "reverse_proxy", |o| o.health_check().map(drop);
    listen: SocketAddr = ([127, 0, 0, 1], 3000).into(), "--listen" " ADDR", |_, a| a.value();
    upstreams: Vec<Uri> = Vec::new(), "--upstream" " URL", |o, a| {
        let list = [&o.upstreams[..], &[a.value()?]].concat();
        Upstream::new(list.clone()).map(|_| list).map_err(on("--upstream"))
    };
    timeout: Duration = ms(10_000), "--timeout-ms" " N", |_, a| a.ms();
    body_idle: Duration = ms(30_000), "--body-idle-ms" " N", |_, a| a.ms();
    attempts: u32 = 3, "--attempts" " N", |_, a| a.value();
    deadline: Option<Duration> = None, "--deadline-ms" " N", |_, a| a.some_ms();
    http2: bool = false, "--http2" "", |_, _| Ok(true);
    consecutive_failures: Option<u32> = None, "--consecutive-failures" " N", |_, a| a.some();
    base_ejection: Duration = ms(10_000), "--base-ejection-ms" " N", |_, a| a.ms();
    max_ejection: Duration = ms(300_000), "--max-ejection-ms" " N", |_, a| a.ms();
    max_ejection_percent: u8 = 10, "--max-ejection-percent" " N", |_, a| a.within(0, 100);
    short_ejection: Duration = ms(1000), "--short-ejection-ms" " N", |_, a| a.ms();
    failure_rate_window: u32 = 50, "--failure-rate-window" " N", |_, a| a.value();
    slow_start: Duration = Duration::ZERO, "--slow-start-ms" " N", |_, a| a.ms();
    health_check_path: Option<String> = None, "--health-check-path" " PATH", |_, a| a.some();
    health_check_grpc: bool = false, "--health-check-grpc" "", |_, _| Ok(true);
    health_check_tcp: bool = false, "--health-check-tcp" "", |_, _| Ok(true);
    health_check_interval: Option<Duration> = None, "--health-check-interval-ms" " N",
        |_, a| a.some_ms();
    dns_server: Option<SocketAddr> = None, "--dns-server" " ADDR", |_, a| a.some();
    dns_min_ttl: Duration = ms(5000), "--dns-min-ttl-ms" " N", |_, a| a.ms();
    ca_file: Option<PathBuf> = None, "--ca-file" " PATH", |_, a| a.some();
    metrics: Option<SocketAddr> = None, "--metrics" " ADDR", |_, a| a.some();
    // A client connection without a request in flight is closed after N to 2N ms.
    idle_timeout: Duration = proxy::IDLE_TIMEOUT, "--idle-timeout-ms" " N",
        |_, a| a.within(1, u64::MAX).map(ms);
    threads: Option<usize> = None, "--threads" " N", |_, a| a.some();
    hedge_after: Option<Duration> = None, "--hedge-after-ms" " N", |_, a| a.some_ms();
    hedge_budget_percent: u16 = 10, "--hedge-budget-percent" " N", |_, a| a.value();
    hedge_max_attempts: u32 = 2, "--hedge-max-attempts" " N", |_, a| a.value();
    retry_throttle: Option<(u32, f32)> = None, "--grpc-retry-throttle" " MAX_TOKENS,TOKEN_RATIO",
        |_, a| a.pair("MAX_TOKENS,TOKEN_RATIO").map(Some);
}

impl Options {
    /// The active health check the flags ask for, if any: one kind at most.
    fn health_check(&self) -> Result<Option<HealthCheck>, String> {
        const KINDS: &str = "--health-check-path, --health-check-grpc or --health-check-tcp";
        let path = self.health_check_path.as_deref().map(HealthCheck::http);
        let path = path.transpose().map_err(on("--health-check-path"))?;
        let grpc = self.health_check_grpc.then(HealthCheck::grpc);
        let tcp = self.health_check_tcp.then(HealthCheck::tcp);
        let mut kinds = [path, grpc, tcp].into_iter().flatten();
        match (kinds.next(), kinds.next(), self.health_check_interval) {
            (Some(_), Some(_), _) => Err(format!("choose one of {KINDS}")),
            (None, _, Some(_)) => Err(format!("--health-check-interval-ms needs {KINDS}")),
            (check, _, i) => Ok(check.map(|c| i.into_iter().fold(c, HealthCheck::interval))),
        }
    }

    /// The upstream of `urls` with the flags' health, DNS and TLS, and its endpoint
    /// set (its DNS and checks run on this runtime). `fold`: an option unset (`None`) sets nothing.
    fn upstream(&self, urls: &[Uri]) -> Result<(Upstream, EndpointSet), String> {
        let upstream = Upstream::new(urls.to_vec()).map_err(on("--upstream"))?;
        let lone = if upstream.has_replicas() { 5 } else { 0 };
        let policy = HealthPolicy::new()
            .consecutive_failures(self.consecutive_failures.unwrap_or(lone))
            .base_ejection(self.base_ejection)
            .max_ejection(self.max_ejection)
            .max_ejection_percent(self.max_ejection_percent)
            .short_ejection(self.short_ejection)
            .failure_rate_window(self.failure_rate_window)
            .slow_start(self.slow_start);
        let upstream = upstream.health_policy(policy).dns_min_ttl(self.dns_min_ttl);
        let dns = self.dns_server.into_iter();
        let upstream = dns.fold(upstream, Upstream::dns_server);
        let upstream = match self.health_check()? {
            Some(check) => upstream.health_check(check, &self.client(urls)?),
            None => upstream,
        };
        let set = upstream.endpoint_set().map_err(on("--upstream"))?;
        Ok((upstream, set))
    }

    /// The client's settings; TLS (ring, the roots of `--ca-file` or the system's)
    /// for `https://` upstreams.
    fn client(&self, urls: &[Uri]) -> Result<ClientBuilder, String> {
        let builder = ClientBuilder::new().http2(self.http2);
        let builder = builder.connect_timeout(self.timeout);
        if !urls.iter().any(|u| u.scheme_str() == Some("https")) {
            return Ok(builder);
        }
        let roots = ClientBuilder::ca_roots(self.ca_file.as_deref());
        let ring = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let roots = roots.map_err(|e| format!("--ca-file {e}"))?;
        builder.tls_roots(ring, roots).map_err(on("TLS"))
    }
}

/// The proxy: the proxy core, the whole gateway, the pooled client.
pub type App = Proxy<Gateway<TakeUpgrade<UpstreamClient<UpstreamBody<hyper::body::Incoming>>>>>;

/// The proxy in front of `urls` (what the tests serve).
#[allow(dead_code)]
pub fn app(o: &Options, urls: &[Uri]) -> Result<App, String> {
    o.upstream(urls)
        .and_then(|(upstream, set)| app_with(o, &upstream, set))
}

/// The proxy in front of `set` (a clone shares its health), with its own client.
fn app_with(o: &Options, upstream: &Upstream, set: EndpointSet) -> Result<App, String> {
    let gateway = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(o.attempts)
        .attempt_timeout(o.timeout)
        .retry_timeouts(true) // an idempotent request whose attempt timed out goes again
        .body_idle_timeout(o.body_idle);
    let share = f32::from(o.hedge_budget_percent) / 100.0;
    let budget = RetryBudget::new(share, 0, Duration::from_secs(10));
    let hedge = o.hedge_after.map(HedgePolicy::after);
    let hedge = hedge.map(|h| h.max_attempts(o.hedge_max_attempts).budget(budget));
    let throttle = o.retry_throttle.map(|(n, r)| RetryThrottle::new(n, r));
    let policy = throttle.map(|t| RetryPolicy::new().throttle(t));
    let gateway = o.deadline.into_iter().fold(gateway, GatewayLayer::deadline);
    let gateway = hedge.into_iter().fold(gateway, GatewayLayer::hedge);
    let gateway = policy.into_iter().fold(gateway, GatewayLayer::retry_policy);
    let client = upstream.client(&set, &o.client(upstream.urls())?);
    let gateway = gateway.layer(TakeUpgradeLayer::new().layer(client));
    Ok(ProxyLayer::new().upstream_http2(o.http2).layer(gateway))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = Options::parse(std::env::args().skip(1)).unwrap_or_else(|m| exit(m, 2));
    // Without --upstream, a deliberately broken one to try the failures on.
    let broken = broken_upstream::BrokenUpstream::start_if(o.upstreams.is_empty()).await;
    let broken = broken.unwrap_or_else(|e| exit(e, 1));
    let urls = broken.as_ref().map(|b| vec![b.url()]);
    let urls = urls.unwrap_or_else(|| o.upstreams.clone());
    // One set for every thread (one health), and the client's settings checked.
    let (upstream, set) = o.upstream(&urls).unwrap_or_else(|m| exit(m, 2));
    app_with(&o, &upstream, set.clone()).unwrap_or_else(|m| exit(m, 2));
    if let Some(addr) = o.metrics {
        let handle = prometheus::install();
        let handle = handle.unwrap_or_else(|_| exit("a metrics recorder is already installed", 1));
        let bind = tokio::net::TcpListener::bind(addr).await;
        let listener = bind.unwrap_or_else(|e| exit(format!("cannot listen on {addr}: {e}"), 1));
        let at = listener.local_addr().unwrap_or(addr);
        println!("metrics at http://{at}/metrics");
        tokio::spawn(prometheus::serve(listener, handle, std::future::pending()));
    }
    let bound = move |addr: SocketAddr| {
        let list = urls.iter().map(Uri::to_string).collect::<Vec<_>>();
        println!("proxying http://{addr} -> {}", list.join(", "));
        broken.iter().for_each(|b| b.print_paths(addr));
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
