//! gRPC, both sides, with real tonic peers (the standard health service):
//!
//! - a gRPC gateway (axum + `GatewayLayer` + a hyper-util HTTP/2 client) in front of
//!   a tonic server, called by a tonic client;
//! - a tonic client whose `Channel` is wrapped by `IntoStatusLayer`, `RetryLayer`
//!   and `TimeoutLayer`, so a refused connection is retried and transport failures
//!   become `UNAVAILABLE` and `DEADLINE_EXCEEDED` with a clear message, every
//!   time, with the `GatewayError` (attempts, phase, cause) as the status's source.
//!
//! ```text
//! cargo run --example grpc
//! ```

use axum::Router;
use axum::extract::Request;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tonic::transport::{Channel, server::TcpIncoming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::tonic::IntoStatusLayer;
use tower_bad_gateway::{GatewayError, GatewayLayer};

#[tokio::main]
async fn main() {
    let (healthy, _reporter) = health_server().await;
    let refused = TcpSocket::new_v4().unwrap();
    refused.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused_addr = refused.local_addr().unwrap();
    let stalled = stalled_h2_server().await;

    println!("A gRPC gateway (deadline 300 ms) in front of each upstream, called by tonic:");
    for (what, upstream) in [
        ("healthy", healthy),
        ("refused", refused_addr),
        ("stalled", stalled),
    ] {
        let gateway = gateway_to(upstream).await;
        report(what, HealthClient::new(channel(gateway))).await;
    }

    println!(
        "\nA tonic client whose Channel is wrapped by IntoStatusLayer + RetryLayer + TimeoutLayer (300 ms):"
    );
    for (what, upstream) in [
        ("healthy", healthy),
        ("refused", refused_addr),
        ("stalled", stalled),
    ] {
        let stack = ServiceBuilder::new()
            // Every failure becomes a tonic::Status: the code from the kind table,
            // the GatewayError as its source (whichever timer fires first).
            .layer(IntoStatusLayer::new())
            // A refused connection never reached the upstream: retried even for a
            // gRPC call (a POST). A timed-out attempt is not retried.
            .layer(RetryLayer::new(RetryPolicy::new()))
            .layer(TimeoutLayer::new().attempt_timeout(Duration::from_millis(300)))
            // The channel takes tonic's body: each attempt's `ReplayBody` becomes one.
            .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| {
                req.map(tonic::body::Body::new)
            })
            .service(channel(upstream));
        report(what, HealthClient::new(stack)).await;
    }
    drop(refused);
}

async fn report<T>(what: &str, mut client: HealthClient<T>)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let start = Instant::now();
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(Duration::from_secs(5));
    let outcome = match client.check(req).await {
        Ok(res) => format!("{:?}", res.into_inner().status()),
        Err(status) => {
            // Behind IntoStatusLayer, the status's source is the GatewayError.
            let attempts = std::error::Error::source(&status)
                .and_then(|e| e.downcast_ref::<GatewayError>())
                .map_or_else(String::new, |e| format!(" ({} attempts)", e.attempts()));
            format!("{:?}: {}{attempts}", status.code(), status.message())
        }
    };
    println!(
        "  {what:<8} upstream -> {outcome:<70} {:>4} ms",
        start.elapsed().as_millis()
    );
}

/// A lazily connecting tonic channel to `addr`.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_lazy()
}

/// A gRPC gateway on loopback: axum, `GatewayLayer` (10 s attempts, a 300 ms
/// deadline), and a hyper-util HTTP/2 client to `upstream`.
pub async fn gateway_to(upstream: SocketAddr) -> SocketAddr {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let proxy = ServiceBuilder::new()
        .map_request(move |mut req: Request| {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("http://{upstream}{path}")
                .parse()
                .expect("a valid URI");
            req
        })
        .layer(
            GatewayLayer::new()
                .attempt_timeout(Duration::from_secs(10))
                .deadline(Duration::from_millis(300)),
        )
        .service(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: Router = Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A real tonic server with the health service; `""` is SERVING.
pub async fn health_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (addr, reporter)
}

/// An HTTP/2 server that accepts every call and never answers.
pub async fn stalled_h2_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                let mut held = Vec::new();
                while let Some(Ok(call)) = conn.accept().await {
                    held.push(call);
                }
            });
        }
    });
    addr
}
