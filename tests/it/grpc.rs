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

/// Serves `proxy` (a gateway stack) on loopback with axum, in front of whatever
/// it forwards to.
async fn serve_gateway<S>(proxy: S) -> std::net::SocketAddr
where
    S: tower::Service<axum::extract::Request, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Sends every request to `upstream`, keeping its path, as HTTP/1.1 when `http1`.
fn to(
    upstream: std::net::SocketAddr,
    http1: bool,
) -> impl Fn(axum::extract::Request) -> axum::extract::Request + Clone {
    move |mut req| {
        let path = req.uri().path().to_owned();
        *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
        if http1 {
            *req.version_mut() = http::Version::HTTP_11;
        }
        req
    }
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

/// The client-side recipe: `IntoStatusLayer` on top of Retry and Timeout around
/// a `Channel` makes every failure a `Status` with the table's code and the
/// `GatewayError` as its source, every time. (Without it, a stalled call was
/// `CANCELLED` or `UNKNOWN` depending on which timer fired first, and the
/// `GatewayError` was lost.)
mod into_status {
    use super::*;
    use tower_bad_gateway::GatewayError;
    use tower_bad_gateway::retry::{ReplayBody, RetryLayer, RetryPolicy};
    use tower_bad_gateway::tonic::IntoStatusLayer;

    const RUNS: usize = 20;

    fn client(
        addr: std::net::SocketAddr,
        attempt_timeout: Duration,
    ) -> HealthClient<
        impl tonic::client::GrpcService<
            tonic::body::Body,
            Error = tonic::Status,
            ResponseBody = impl http_body::Body<Data = bytes::Bytes, Error = tonic::Status>
                           + Send
                           + 'static,
        >,
    > {
        let svc = ServiceBuilder::new()
            .layer(IntoStatusLayer::new())
            .layer(RetryLayer::new(
                RetryPolicy::new().backoff(Duration::ZERO, Duration::from_millis(5)),
            ))
            .layer(TimeoutLayer::new().attempt_timeout(attempt_timeout))
            .map_request(|req: http::Request<ReplayBody<tonic::body::Body>>| {
                req.map(tonic::body::Body::new)
            })
            .service(channel(addr));
        HealthClient::new(svc)
    }

    fn gateway_error(status: &tonic::Status) -> &GatewayError {
        std::error::Error::source(status)
            .and_then(|e| e.downcast_ref::<GatewayError>())
            .unwrap_or_else(|| panic!("the source is not a GatewayError: {status:?}"))
    }

    #[tokio::test]
    async fn a_dead_upstream_is_unavailable_with_the_gateway_error_as_source_every_time() {
        let port = refused_port();
        for run in 0..RUNS {
            let status = check(&mut client(port.addr, Duration::from_millis(200)))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Unavailable, "run {run}: {status:?}");
            assert_eq!(status.message(), ErrorKind::ConnectionRefused.description());
            let err = gateway_error(&status);
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "run {run}");
            assert_eq!(err.attempts(), 3, "run {run}: retried what never left");
        }
    }

    /// The caller's `grpc-timeout` equals the attempt timeout, so tonic's own timer
    /// and the layer's race: whichever fires, the answer is the same.
    #[tokio::test]
    async fn a_stalling_upstream_is_deadline_exceeded_whichever_timer_fires_first() {
        let addr = stalled_h2_server().await;
        let timeout = Duration::from_millis(150);
        for run in 0..RUNS {
            let status = check_within(&mut client(addr, timeout), timeout)
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::DeadlineExceeded,
                "run {run}: {status:?}"
            );
            let err = gateway_error(&status);
            assert!(err.is_timeout(), "run {run}: {err:?}");
            assert_eq!(err.phase(), tower_bad_gateway::Phase::AwaitHead);
            assert_eq!(err.attempts(), 1, "run {run}: a timeout is not retried");
        }
    }

    /// An HTTP/2 server that answers every call's head at once (200, gRPC) and
    /// then never sends a byte of its body.
    async fn head_then_stall() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(stream).await else {
                        return;
                    };
                    let mut held = Vec::new();
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let head = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        if let Ok(stream) = respond.send_response(head, false) {
                            held.push(stream);
                        }
                    }
                });
            }
        });
        addr
    }

    /// A failure after the head (the body stalls past the idle timeout) is the
    /// same typed `Status`: its source is the `GatewayError`, phase `read_body`.
    #[tokio::test]
    async fn a_body_that_stalls_after_the_head_is_a_typed_status_too() {
        let addr = head_then_stall().await;
        let svc = ServiceBuilder::new()
            .layer(IntoStatusLayer::new())
            .layer(
                TimeoutLayer::new()
                    .attempt_timeout(Duration::from_secs(2))
                    .body_idle_timeout(Duration::from_millis(150)),
            )
            .service(channel(addr));
        let status = check_within(&mut HealthClient::new(svc), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(status.message(), ErrorKind::ReadTimeout.description());
        let err = gateway_error(&status);
        assert_eq!(err.kind(), ErrorKind::ReadTimeout);
        assert_eq!(err.phase(), tower_bad_gateway::Phase::ReadBody);
    }

    #[tokio::test]
    async fn a_healthy_upstream_answers_through_into_status() {
        let (addr, _reporter) = health_server().await;
        assert_eq!(
            check(&mut client(addr, Duration::from_secs(2)))
                .await
                .unwrap(),
            ServingStatus::Serving
        );
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

    /// Through `reverse_proxy --http2` with two `--upstream`s, one of them refusing:
    /// every call (a POST) that met the refusal never left, so it goes to the live
    /// replica, and the tonic client sees only `SERVING`.
    #[tokio::test]
    async fn behind_two_replicas_with_one_dead_every_call_is_served() {
        use crate::reverse_proxy::reverse_proxy::{self as proxy, Options};
        let (live, _reporter) = health_server().await;
        let dead = refused_port();
        let options = Options {
            http2: true,
            ..Options::default()
        };
        let upstreams = [
            format!("http://{}", dead.addr).parse().unwrap(),
            format!("http://{live}").parse().unwrap(),
        ];
        let app = proxy::app(&options, &upstreams).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = listener.local_addr().unwrap();
        tokio::spawn(tower_bad_gateway::proxy::serve(
            listener,
            app,
            std::future::pending(),
        ));
        let mut client = HealthClient::new(channel(gateway));
        for i in 0..20 {
            let status = check(&mut client).await;
            assert_eq!(
                status.map_err(|s| s.code()),
                Ok(ServingStatus::Serving),
                "call {i}"
            );
        }
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
            .map_request(to(upstream, false))
            .layer(tower_bad_gateway::GatewayLayer::new().max_attempts(1))
            .service(client);
        serve_gateway(proxy).await
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

/// The codes for answers the upstream got wrong, through a gateway whose client
/// speaks HTTP/1.1 to the upstream, as seen by a tonic client: a header section
/// over the limits is `RESOURCE_EXHAUSTED`, a malformed answer `INTERNAL` (both
/// used to be `UNAVAILABLE`, inviting retries that fail the same way).
mod upstream_errors {
    use super::*;
    use support::{After, Upstream};

    async fn gateway_http1_to(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
        let proxy = ServiceBuilder::new()
            .map_request(to(upstream, true))
            .layer(tower_bad_gateway::GatewayLayer::new().max_attempts(1))
            .service(support::hyper_client::<
                tower_bad_gateway::UpstreamBody<axum::body::Body>,
            >());
        serve_gateway(proxy).await
    }

    #[tokio::test]
    async fn size_limits_are_resource_exhausted_and_malformed_answers_internal() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nx-huge: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(1 << 20)
        );
        for (reply, code, kind) in [
            (
                huge,
                Code::ResourceExhausted,
                ErrorKind::HeaderSectionTooLarge,
            ),
            (
                "SSH-2.0-OpenSSH_9.6\r\n".to_owned(),
                Code::Internal,
                ErrorKind::ProtocolError,
            ),
        ] {
            let upstream = Upstream::raw(reply, After::Close).await;
            let gateway = gateway_http1_to(upstream.addr).await;
            let status = check_within(
                &mut HealthClient::new(channel(gateway)),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
            assert_eq!(status.code(), code, "{kind:?}");
            assert_eq!(status.message(), kind.description());
        }
    }
}

/// gRPC-Web: the status travels in a trailer frame at the end of the body, which
/// is all a gRPC-Web client reads. A failure after the head ends with that frame
/// at a message boundary, and with an error mid-message.
mod web {
    use super::*;
    use support::{After, Upstream};

    /// A gateway (axum + `BadGatewayLayer` + hyper-util) in front of `upstream`.
    async fn gateway_to_raw(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
        let proxy = ServiceBuilder::new()
            .map_request(to(upstream, false))
            .layer(BadGatewayLayer::new())
            .service(support::hyper_client::<axum::body::Body>());
        serve_gateway(proxy).await
    }

    /// A gRPC-Web upstream whose answer is cut after `body` (chunked, no end).
    async fn cut_after(content_type: &str, body: &[u8]) -> Upstream {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(body);
        reply.extend_from_slice(b"\r\n");
        Upstream::raw(reply, After::Close).await
    }

    async fn check_over_grpc_web(
        gateway: std::net::SocketAddr,
    ) -> Result<ServingStatus, tonic::Status> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<tonic_web::GrpcWebCall<tonic::body::Body>>();
        let svc = ServiceBuilder::new()
            .layer(tonic_web::GrpcWebClientLayer::new())
            .service(client);
        let origin = format!("http://{gateway}").parse().unwrap();
        check_within(
            &mut HealthClient::with_origin(svc, origin),
            Duration::from_secs(5),
        )
        .await
    }

    /// `HealthCheckResponse { status: SERVING }`, framed: one whole message.
    const SERVING: &[u8] = b"\x00\x00\x00\x00\x02\x08\x01";

    #[tokio::test]
    async fn a_cut_after_a_whole_message_ends_with_a_trailer_frame_tonic_web_reads() {
        let upstream = cut_after("application/grpc-web+proto", SERVING).await;
        let gateway = gateway_to_raw(upstream.addr).await;
        let status = check_over_grpc_web(gateway).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(
            status.message(),
            ErrorKind::ResponseIncomplete.description()
        );
    }

    #[tokio::test]
    async fn a_cut_mid_message_ends_with_an_error_not_a_trailer_frame() {
        let upstream = cut_after("application/grpc-web+proto", &SERVING[..6]).await;
        let gateway = gateway_to_raw(upstream.addr).await;
        let status = check_over_grpc_web(gateway).await.unwrap_err();
        assert_ne!(
            status.message(),
            ErrorKind::ResponseIncomplete.description(),
            "a trailer frame after half a message would be read as its rest"
        );
    }

    /// `-text` callers get the trailer frame base64-encoded, after the upstream's
    /// own base64 messages.
    #[tokio::test]
    async fn a_text_caller_gets_the_trailer_frame_in_base64() {
        // base64 of SERVING.
        let upstream = cut_after("application/grpc-web-text+proto", b"AAAAAAIIAQ==").await;
        let gateway = gateway_to_raw(upstream.addr).await;
        let res = reqwest::Client::new()
            .post(format!("http://{gateway}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc-web-text+proto")
            .body("AAAAAAA=")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body = tokio::time::timeout(Duration::from_secs(10), res.text())
            .await
            .expect("the body ends within 10 s")
            .unwrap();
        let frame = {
            let block =
                "grpc-status:14\r\ngrpc-message:The upstream server's answer was cut short.\r\n";
            let mut frame = vec![0x80];
            frame.extend_from_slice(&(block.len() as u32).to_be_bytes());
            frame.extend_from_slice(block.as_bytes());
            frame
        };
        let trailer = body
            .strip_prefix("AAAAAAIIAQ==")
            .expect("the message first");
        assert_eq!(decode_base64(trailer), frame);
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for quad in text.as_bytes().chunks(4) {
            let pads = quad.iter().filter(|&&c| c == b'=').count();
            let n = quad
                .iter()
                .map(|&c| if c == b'=' { 0 } else { u32::from(value(c)) })
                .fold(0u32, |n, v| n << 6 | v);
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pads]);
        }
        out
    }
}
