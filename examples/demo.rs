//! A self-contained tour: a deliberately broken upstream and a gateway in front of
//! it, both on loopback in this process. One request per failure; each answer is
//! printed as a row of a table. Then three replicas behind one gateway, one of them
//! dead: clients see no failure, and the dead one is ejected, probed and restored
//! when it comes back.
//!
//! ```text
//! cargo run --example demo
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::Layer;
use tower::ServiceBuilder;
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy};
use tower_bad_gateway::{BadGatewayLayer, GatewayError, GatewayLayer, ResponsePolicy};

// Its list of paths is for the reverse proxy's help; the demo has its own cases.
#[allow(dead_code)]
#[path = "support/broken_upstream.rs"]
mod broken_upstream;

/// Each case: a label, the path asked of the gateway, and whether it is a gRPC call.
const CASES: &[(&str, &str, bool)] = &[
    ("healthy upstream", "/ok", false),
    ("connection refused", "/refused", false),
    ("DNS name does not resolve", "/dns", false),
    ("connect hangs (full backlog)", "/blackhole", false),
    ("closed before answering", "/close", false),
    ("reset before answering", "/reset", false),
    ("answer is not HTTP", "/garbage", false),
    ("header line without a colon", "/no-colon", false),
    ("head cut off halfway", "/half-head", false),
    ("1 MiB response header", "/huge-header", false),
    ("no answer at all", "/silent", false),
    ("500 leaking a stack trace", "/leaky-500", false),
    ("body larger than allowed", "/too-large", false),
    ("body shorter than announced", "/short-body", false),
    ("body stalls mid-way", "/stall-body", false),
    ("invalid chunk size", "/bad-chunk", false),
    ("gRPC call, upstream refused", "/refused", true),
    ("gRPC call, no answer", "/silent", true),
];

#[tokio::main]
async fn main() {
    let broken = broken_upstream::BrokenUpstream::start().await.unwrap();
    let (upstream, refused_addr, blackhole_addr) = (broken.addr, broken.refused, broken.blackhole);

    // Every failure the gateway reports, as the typed error its hook receives.
    let reported: Arc<Mutex<Vec<GatewayError>>> = Arc::default();
    let hook = reported.clone();

    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(300)));
    let client = Client::builder(TokioExecutor::new()).build::<_, Body>(connector);

    let proxy = ServiceBuilder::new()
        // Pick the next hop: some faults live at other addresses.
        .map_request(move |mut req: Request| {
            let path = req.uri().path().to_owned();
            let target = match path.as_str() {
                "/refused" => format!("http://{refused_addr}{path}"),
                "/dns" => "http://upstream.nonexistent.invalid/".to_owned(),
                "/blackhole" => format!("http://{blackhole_addr}{path}"),
                _ => format!("http://{upstream}{path}"),
            };
            *req.uri_mut() = target.parse().unwrap();
            req
        })
        .layer(
            BadGatewayLayer::new()
                .response_policy(
                    ResponsePolicy::new()
                        .reject_on(StatusCode::INTERNAL_SERVER_ERROR)
                        .max_body_size(1 << 20),
                )
                .on_failure(move |err| hook.lock().unwrap().push(err.clone())),
        )
        .layer(
            TimeoutLayer::new()
                .attempt_timeout(Duration::from_millis(600))
                .body_idle_timeout(Duration::from_millis(400)),
        )
        .service(client);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback_service(proxy))
            .await
            .unwrap();
    });

    println!("tower-bad-gateway demo");
    println!("  upstream  http://{upstream}  (deliberately broken: one fault per path)");
    println!(
        "  gateway   http://{gateway}  (axum + BadGatewayLayer + TimeoutLayer + hyper-util Client)"
    );
    println!();
    println!(
        "{:<30} {:<20} {:<70} {:>7}",
        "case", "answer", "Proxy-Status (or what the body failed with)", "time"
    );
    println!("{}", "─".repeat(30 + 1 + 20 + 1 + 70 + 1 + 7));

    let http = reqwest::Client::new();
    for &(label, path, grpc) in CASES {
        reported.lock().unwrap().clear();
        let mut req = http.post(format!("http://{gateway}{path}"));
        if grpc {
            req = req.header("content-type", "application/grpc");
        }
        let start = Instant::now();
        let (answer, proxy_status) = match req.send().await {
            Ok(res) => {
                let status = res.status();
                let proxy_status = res
                    .headers()
                    .get("proxy-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let grpc_status = res
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = res.bytes().await;
                let answer = match (grpc_status, body) {
                    (Some(code), _) => format!("{} grpc-status {code}", status.as_u16()),
                    (None, Ok(_)) => format!(
                        "{} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    ),
                    (None, Err(_)) => format!("{}, body cut", status.as_u16()),
                };
                (answer, proxy_status)
            }
            // The body failed before its first byte: the server aborted the
            // connection before its buffered head went out.
            Err(_) => ("connection aborted".to_owned(), None),
        };
        let took = start.elapsed();
        let what = match (proxy_status, reported.lock().unwrap().first()) {
            (Some(header), _) => header,
            (None, Some(err)) => format!("(body: {})", err.kind()),
            (None, None) => "-".to_owned(),
        };
        println!(
            "{label:<30} {answer:<20} {what:<70} {:>4} ms",
            took.as_millis()
        );
    }

    println!();
    println!("Every failure is a typed GatewayError (kind, phase, whether the request was sent),");
    println!("in the synthetic answer's extensions and in the on_failure hook. Nothing internal");
    println!(
        "leaks unless `Renderer::expose_details(true)`. Failures after the head went out cut the"
    );
    println!("stream instead of ending it cleanly; gRPC calls get grpc-status instead.");
    drop(broken);

    replicas().await;
}

/// Three replicas behind one gateway, the third dead at first.
async fn replicas() {
    println!();
    println!("Three replicas of one upstream, c dead (its port refuses connections)");
    println!("{}", "─".repeat(72));
    let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // c's port, free again: connecting to it is refused until c starts.
    let c_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = [a.local_addr(), b.local_addr()]
        .map(|addr| format!("http://{}", addr.unwrap()))
        .into_iter()
        .chain([format!("http://{c_addr}")]);
    tokio::spawn(replica("a", a));
    tokio::spawn(replica("b", b));

    let set = EndpointSet::from_urls(urls).unwrap().health_policy(
        HealthPolicy::new()
            .consecutive_failures(2)
            .base_ejection(Duration::from_millis(500)),
    );
    let client =
        Client::builder(TokioExecutor::new()).build_http::<tower_bad_gateway::UpstreamBody<Body>>();
    let gateway = GatewayLayer::new().upstreams(set.clone()).layer(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback_service(gateway))
            .await
            .unwrap();
    });

    let http = reqwest::Client::new();
    let round = |label: &'static str| {
        let (http, set) = (http.clone(), set.clone());
        async move {
            let mut answers = Vec::new();
            for i in 0..12 {
                let req = if i % 2 == 0 {
                    http.post(format!("http://{addr}/orders"))
                } else {
                    http.get(format!("http://{addr}/orders"))
                };
                let res = req.body("order").send().await.unwrap();
                let status = res.status().as_u16();
                let body = res.text().await.unwrap_or_default();
                answers.push(if status == 200 {
                    body
                } else {
                    status.to_string()
                });
            }
            let health: Vec<String> = set
                .health()
                .iter()
                .zip(["a", "b", "c"])
                .map(|((_, health), name)| match health {
                    Health::Healthy => format!("{name} healthy"),
                    Health::Ejected { probe_in } => {
                        format!("{name} ejected (probe in {} ms)", probe_in.as_millis())
                    }
                    _ => format!("{name} probing"),
                })
                .collect();
            println!("{label:<26} answered by {}", answers.join(" "));
            println!("{:<26} {}", "", health.join(", "));
        }
    };
    round("12 requests, POST and GET").await;
    tokio::spawn(replica("c", TcpListener::bind(c_addr).await.unwrap()));
    println!("c comes back; after its ejection one request probes it:");
    tokio::time::sleep(Duration::from_millis(600)).await;
    round("12 more requests").await;
    println!();
    println!("No client saw a failure: a request that never reached c went to a or b");
    println!("(POSTs too, since they provably were not sent), c was ejected after 2");
    println!("refusals, then one probe restored it.");
}

/// A replica that answers every request with its name.
async fn replica(name: &'static str, listener: TcpListener) {
    let app = Router::new().fallback(move || async move { name });
    axum::serve(listener, app).await.unwrap();
}
