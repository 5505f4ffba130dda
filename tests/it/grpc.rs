//! gRPC with real tonic peers on loopback (the standard health service):
//! a tonic `Channel` wrapped by the layers (client side), and a gRPC gateway
//! (axum + hyper-util + `GatewayLayer`) in front of a tonic server (server side).
//! Each asserts the status code the real tonic client sees.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::refused_port;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind};

#[allow(dead_code)]
#[path = "../../examples/grpc.rs"]
mod example;

use example::{channel, gateway_to, health_server, stalled_h2_server};

async fn check<T>(client: &mut HealthClient<T>) -> Result<ServingStatus, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    check_within(client, Duration::from_millis(300)).await
}

/// A health check whose caller allows `timeout` (sent as `grpc-timeout`; tonic's
/// channel also enforces it on its side).
async fn check_within<T>(
    client: &mut HealthClient<T>,
    timeout: Duration,
) -> Result<ServingStatus, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(timeout);
    let res = client.check(req).await?;
    Ok(res.into_inner().status())
}

mod client_side {
    use super::*;

    fn reported() -> (Arc<Mutex<Vec<ErrorKind>>>, BadGatewayLayer) {
        let kinds: Arc<Mutex<Vec<ErrorKind>>> = Arc::default();
        let log = kinds.clone();
        (
            kinds,
            BadGatewayLayer::new().on_failure(move |err| log.lock().unwrap().push(err.kind())),
        )
    }

    #[tokio::test]
    async fn a_healthy_upstream_answers_through_the_layers() {
        let (addr, _reporter) = health_server().await;
        let stack = ServiceBuilder::new()
            .layer(BadGatewayLayer::new())
            .service(channel(addr));
        assert_eq!(
            check(&mut HealthClient::new(stack)).await.unwrap(),
            ServingStatus::Serving
        );
    }

    #[tokio::test]
    async fn a_refused_channel_is_unavailable_with_a_typed_error() {
        let port = refused_port();
        let (kinds, layer) = reported();
        let stack = ServiceBuilder::new()
            .layer(layer)
            .service(channel(port.addr));
        let status = check(&mut HealthClient::new(stack)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "The upstream server refused the connection."
        );
        assert_eq!(*kinds.lock().unwrap(), [ErrorKind::ConnectionRefused]);
    }

    /// Retries around a tonic `Channel`, as the retry module's docs show: the
    /// channel takes `tonic::body::Body`, so a `map_request` turns each attempt's
    /// `ReplayBody` into one. A refused connection (never sent, so safe for a gRPC
    /// POST) is tried three times; a healthy upstream answers on the first.
    #[tokio::test]
    async fn retries_around_a_tonic_channel_retry_what_never_left() {
        use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
        let stack = |addr, attempts: Arc<Mutex<Vec<u32>>>| {
            ServiceBuilder::new()
                .layer(BadGatewayLayer::new().on_failure(move |err| {
                    attempts.lock().unwrap().push(err.attempts());
                }))
                .layer(RetryLayer::new(
                    RetryPolicy::new().backoff(Duration::ZERO, Duration::from_millis(5)),
                ))
                .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| {
                    req.map(tonic::body::Body::new)
                })
                .service(channel(addr))
        };
        let port = refused_port();
        let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
        let status = check(&mut HealthClient::new(stack(port.addr, attempts.clone())))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(*attempts.lock().unwrap(), [3]);

        let (addr, _reporter) = health_server().await;
        let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
        let serving = check(&mut HealthClient::new(stack(addr, attempts.clone())))
            .await
            .unwrap();
        assert_eq!(serving, ServingStatus::Serving);
        assert!(attempts.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stalled_upstream_behind_the_attempt_timeout_is_deadline_exceeded() {
        let addr = stalled_h2_server().await;
        let (kinds, layer) = reported();
        let stack = ServiceBuilder::new()
            .layer(layer)
            .layer(TimeoutLayer::new().attempt_timeout(Duration::from_millis(200)))
            .service(channel(addr));
        let status = check_within(&mut HealthClient::new(stack), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(*kinds.lock().unwrap(), [ErrorKind::ResponseHeaderTimeout]);
    }
}

mod gateway {
    use super::*;

    #[tokio::test]
    async fn proxies_a_healthy_tonic_upstream() {
        let (upstream, _reporter) = health_server().await;
        let gateway = gateway_to(upstream).await;
        assert_eq!(
            check(&mut HealthClient::new(channel(gateway)))
                .await
                .unwrap(),
            ServingStatus::Serving
        );
    }

    #[tokio::test]
    async fn a_refused_upstream_is_unavailable() {
        let port = refused_port();
        let gateway = gateway_to(port.addr).await;
        let status = check(&mut HealthClient::new(channel(gateway)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }

    /// The gateway's 300 ms deadline ends the wait for a stalled upstream, and the
    /// tonic caller (which allows 5 s) is told `DEADLINE_EXCEEDED`. (The gateway
    /// honouring a caller's shorter `grpc-timeout` is proven in `reverse_proxy.rs`:
    /// a tonic channel races it with its own timer, so it cannot be asserted here.)
    #[tokio::test]
    async fn a_stalled_upstream_is_deadline_exceeded_at_the_gateways_deadline() {
        let upstream = stalled_h2_server().await;
        let gateway = gateway_to(upstream).await;
        let start = std::time::Instant::now();
        let status = check_within(
            &mut HealthClient::new(channel(gateway)),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    /// A gRPC gateway like the example's, whose client gives up connecting after
    /// `connect_timeout` and makes one attempt, with no deadline of its own.
    async fn gateway_with_connect_timeout(
        upstream: std::net::SocketAddr,
        connect_timeout: Duration,
    ) -> std::net::SocketAddr {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build(connector);
        let proxy = ServiceBuilder::new()
            .map_request(move |mut req: axum::extract::Request| {
                let path = req.uri().path().to_owned();
                *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
                req
            })
            .layer(tower_bad_gateway::GatewayLayer::new().max_attempts(1))
            .service(client);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback_service(proxy);
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// One rule for the codes the gateway invents: the code tonic sees when it
    /// calls the upstream itself. A connect that timed out never left, so tonic
    /// reports `UNAVAILABLE` (which gRPC retry policies retry), and so must the
    /// gateway: it used to answer `DEADLINE_EXCEEDED`.
    #[tokio::test]
    async fn a_connect_timeout_is_unavailable_as_tonic_itself_reports_it() {
        let blackhole = support::blackhole_port().await;
        let connect_timeout = Duration::from_millis(150);

        let direct = tonic::transport::Channel::from_shared(format!("http://{}", blackhole.addr))
            .unwrap()
            .connect_timeout(connect_timeout)
            .connect_lazy();
        let tonic_itself = check_within(&mut HealthClient::new(direct), Duration::from_secs(5))
            .await
            .unwrap_err()
            .code();
        assert_eq!(tonic_itself, Code::Unavailable);

        let gateway = gateway_with_connect_timeout(blackhole.addr, connect_timeout).await;
        let through_gateway = check_within(
            &mut HealthClient::new(channel(gateway)),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(through_gateway.code(), tonic_itself);
        assert_eq!(
            through_gateway.message(),
            ErrorKind::ConnectionTimeout.description()
        );
    }
}
