//! A reverse proxy you could copy: axum in front, hyper-util's pooled client
//! behind (HTTP/1.1, or HTTP/2 with `--http2`), the whole `GatewayLayer` between,
//! hop-by-hop headers removed, `Via` and `X-Forwarded-*` added, graceful shutdown
//! on Ctrl-C and SIGTERM.
//!
//! ```text
//! cargo run --release --example reverse_proxy -- --upstream http://127.0.0.1:8080
//! cargo run --example reverse_proxy            # built-in broken upstream to try
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:3000), `--upstream URL`,
//! `--timeout-ms N` (per attempt, and the connect timeout; default 10000),
//! `--body-idle-ms N` (default 30000), `--attempts N` (default 3),
//! `--deadline-ms N` (optional), `--http2` (HTTP/2 with prior knowledge upstream),
//! `--metrics ADDR` (serve the gateway's metrics, Prometheus text, at
//! `http://ADDR/metrics`).

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

// Its refusing and black-hole ports are for the demo: this proxy has one upstream.
#[allow(dead_code)]
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

/// The proxy's settings, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub upstream: Option<Uri>,
    pub timeout: Duration,
    pub body_idle: Duration,
    pub attempts: u32,
    pub deadline: Option<Duration>,
    pub http2: bool,
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
            upstream: None,
            timeout: Duration::from_millis(10_000),
            body_idle: Duration::from_millis(30_000),
            attempts: 3,
            deadline: None,
            http2: false,
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
                    options.upstream = Some(uri);
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
        Ok(options)
    }
}

const USAGE: &str = "usage: reverse_proxy [--listen ADDR] [--upstream URL] [--timeout-ms N] \
[--body-idle-ms N] [--attempts N] [--deadline-ms N] [--http2] [--bare] [--metrics ADDR]";

/// The proxy: every request goes to `upstream` through the whole `GatewayLayer`.
pub fn app(options: &Options, upstream: Uri) -> Router {
    let mut gateway = GatewayLayer::new()
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
            .service(client(options));
        return Router::new().fallback_service(bare);
    }
    let proxy = ServiceBuilder::new()
        .map_request(rewrite)
        .map_response(tidy)
        .layer(gateway)
        .service(client(options));
    Router::new().fallback_service(proxy)
}

/// Removes the upstream's hop-by-hop headers from its answer and adds `Via`.
fn tidy<B>(mut res: http::Response<B>) -> http::Response<B> {
    let version = res.version();
    strip_hop_by_hop(res.headers_mut());
    append_via(res.headers_mut(), version);
    res
}

/// A pooled hyper-util client: HTTP/1.1, or HTTP/2 with prior knowledge.
fn client<B>(options: &Options) -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(options.timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .http2_only(options.http2)
        .pool_idle_timeout(Duration::from_secs(90))
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
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
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
    let upstream = match options.upstream.clone() {
        Some(upstream) => upstream,
        None => {
            let broken = broken_upstream::BrokenUpstream::start()
                .await
                .expect("cannot start the built-in upstream");
            let uri = format!("http://{}", broken.addr)
                .parse()
                .expect("a valid URI");
            _broken = Some(broken);
            uri
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
    println!("proxying http://{addr} -> {upstream}");
    if _broken.is_some() {
        println!("built-in broken upstream; try:");
        for (path, what) in broken_upstream::PATHS {
            println!("  curl -i http://{addr}{path:<14} # {what}");
        }
    }
    if let Err(err) = serve(listener, app(&options, upstream), shutdown_signal()).await {
        eprintln!("server error: {err}");
        std::process::exit(1);
    }
}
