//! The `proxy` module over real loopback sockets: raw HTTP/1.1 clients and
//! upstreams for the header rules (each rule a test), a real WebSocket client
//! and server through it, CONNECT refusals, base paths and path prefixes under
//! axum.

use crate::support::{self, within};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceBuilder};
use tower_bad_gateway::proxy::{self, ProxyLayer, TakeUpgradeLayer, Trust};
use tower_bad_gateway::upstreams::EndpointSet;
use tower_bad_gateway::{GatewayLayer, UpstreamBody};

type Client<B> = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    UpstreamBody<B>,
>;

fn client<B>() -> Client<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static + Unpin,
    B::Error: Into<tower_bad_gateway::BoxError>,
{
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// The proxy core, the gateway and a hyper-util client to `upstream` (a URL,
/// perhaps with a base path), served by `proxy::serve` on loopback.
async fn start(layer: ProxyLayer, upstream: &str) -> SocketAddr {
    let set = EndpointSet::from_urls([upstream]).unwrap();
    let stack = ServiceBuilder::new()
        .layer(layer)
        .layer(GatewayLayer::new().upstreams(set))
        .layer(TakeUpgradeLayer::new())
        .service(client::<hyper::body::Incoming>());
    serve(stack).await
}

async fn serve<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_bad_gateway::BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy::serve(listener, service, std::future::pending()));
    addr
}

/// An upstream over raw TCP: records every request head it reads (as sent, one
/// string each) and answers each with `reply`.
#[derive(Clone)]
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start(reply: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    while let Some(head) = read_head(&mut stream).await {
                        let length = content_length(&head);
                        let mut body = vec![0; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        log.lock().unwrap().push(head);
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, heads }
    }

    fn url(&self, base: &str) -> String {
        format!("http://{}{base}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The one request head received, lower-cased.
    fn only_head(&self) -> String {
        let heads = self.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        heads[0].to_ascii_lowercase()
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Reads up to the blank line ending a head; `None` at a clean end of stream.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The values of field `name` in a head, one per field line, in order.
fn lines(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// Sends `request` (a head, with `host` and the blank line added) on a new
/// connection and returns the answer's head, lower-cased, and its body.
async fn exchange(gateway: SocketAddr, request: &str) -> (String, String) {
    within("the gateway's answer", async {
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        let request = format!("{request}\r\nhost: gateway.example\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await.expect("an answer's head");
        let mut body = vec![0; content_length(&head)];
        stream.read_exact(&mut body).await.unwrap();
        (
            head.to_ascii_lowercase(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    })
    .await
}

#[tokio::test]
async fn fields_named_in_connection_and_the_well_known_hop_by_hop_fields_do_not_reach_the_upstream()
{
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    let (head, _) = exchange(
        gateway,
        "GET / HTTP/1.1\r\nconnection: x-secret, keep-alive\r\nconnection: X-Other\r\n\
         x-secret: 1\r\nx-other: 2\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n\
         proxy-authorization: Basic Zm9vOmJhcg==\r\nx-kept: yes",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let seen = upstream.only_head();
    for hop in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            lines(&seen, hop).is_empty(),
            "{hop} reached the upstream:\n{seen}"
        );
    }
    assert_eq!(lines(&seen, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn te_trailers_reaches_an_http1_upstream_announced_in_connection() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    exchange(
        gateway,
        "POST /pkg.Svc/Call HTTP/1.1\r\nconnection: te\r\nte: trailers\r\ncontent-length: 0",
    )
    .await;
    let seen = upstream.only_head();
    assert_eq!(lines(&seen, "te"), ["trailers"], "{seen}");
    assert_eq!(lines(&seen, "connection"), ["te"], "{seen}");
}

#[tokio::test]
async fn te_with_other_codings_is_reduced_to_trailers() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    exchange(
        gateway,
        "GET / HTTP/1.1\r\nconnection: TE\r\nte: gzip;q=0.5, Trailers",
    )
    .await;
    let seen = upstream.only_head();
    assert_eq!(lines(&seen, "te"), ["trailers"], "{seen}");
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    exchange(gateway, "GET / HTTP/1.1\r\nconnection: te\r\nte: gzip").await;
    let seen = upstream.only_head();
    assert!(lines(&seen, "te").is_empty(), "{seen}");
    assert!(lines(&seen, "connection").is_empty(), "{seen}");
}

#[tokio::test]
async fn an_upgrade_with_te_trailers_keeps_both_options_in_one_connection_field() {
    // The upstream declines the upgrade (a 200): the request head is what counts.
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    let (head, body) = exchange(
        gateway,
        "GET /ws HTTP/1.1\r\nconnection: Upgrade, TE\r\nupgrade: websocket\r\nte: trailers\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    let seen = upstream.only_head();
    assert_eq!(lines(&seen, "connection"), ["upgrade, te"], "{seen}");
    assert_eq!(lines(&seen, "upgrade"), ["websocket"], "{seen}");
    assert_eq!(lines(&seen, "te"), ["trailers"], "{seen}");
}

#[tokio::test]
async fn hop_by_hop_fields_of_the_answer_do_not_reach_the_client_and_via_is_appended() {
    let upstream = RawUpstream::start(
        "HTTP/1.1 200 OK\r\nconnection: x-up\r\nx-up: 1\r\nkeep-alive: timeout=5\r\n\
         proxy-authenticate: Basic\r\nvia: 1.1 backend\r\nx-kept: yes\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let gateway = start(ProxyLayer::new().via_name("edge-1"), &upstream.url("")).await;
    let (head, _) = exchange(gateway, "GET / HTTP/1.1").await;
    for hop in ["x-up", "keep-alive", "proxy-authenticate"] {
        assert!(
            lines(&head, hop).is_empty(),
            "{hop} reached the client:\n{head}"
        );
    }
    assert_eq!(lines(&head, "via"), ["1.1 backend", "1.1 edge-1"], "{head}");
    assert_eq!(lines(&head, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn forwarding_fields_and_via_are_appended_after_what_arrived() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    exchange(
        gateway,
        "GET / HTTP/1.1\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: https\r\n\
         via: 1.1 cdn",
    )
    .await;
    let seen = upstream.only_head();
    assert_eq!(
        lines(&seen, "x-forwarded-for"),
        ["203.0.113.7", "127.0.0.1"],
        "{seen}"
    );
    assert_eq!(
        lines(&seen, "x-forwarded-proto"),
        ["https", "http"],
        "{seen}"
    );
    assert_eq!(
        lines(&seen, "x-forwarded-host"),
        ["gateway.example"],
        "{seen}"
    );
    assert_eq!(
        lines(&seen, "via"),
        ["1.1 cdn", "1.1 tower-bad-gateway"],
        "{seen}"
    );
    assert_eq!(lines(&seen, "host"), [upstream.addr.to_string()], "{seen}");
}

#[tokio::test]
async fn at_the_edge_the_clients_own_forwarding_fields_are_dropped() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(
        ProxyLayer::new().trust(Trust::Edge).forwarded(true),
        &upstream.url(""),
    )
    .await;
    exchange(
        gateway,
        "GET / HTTP/1.1\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-host: evil.example\r\n\
         forwarded: for=203.0.113.7",
    )
    .await;
    let seen = upstream.only_head();
    assert_eq!(lines(&seen, "x-forwarded-for"), ["127.0.0.1"], "{seen}");
    assert_eq!(
        lines(&seen, "x-forwarded-host"),
        ["gateway.example"],
        "{seen}"
    );
    assert_eq!(
        lines(&seen, "forwarded"),
        ["for=127.0.0.1;host=\"gateway.example\";proto=http"],
        "{seen}"
    );
}

#[tokio::test]
async fn forwarded_is_appended_when_asked_and_only_then() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(
        ProxyLayer::new().forwarded(true).https(true),
        &upstream.url(""),
    )
    .await;
    exchange(gateway, "GET / HTTP/1.1\r\nforwarded: for=192.0.2.1").await;
    let seen = upstream.only_head();
    assert_eq!(
        lines(&seen, "forwarded"),
        [
            "for=192.0.2.1",
            "for=127.0.0.1;host=\"gateway.example\";proto=https"
        ],
        "{seen}"
    );
    assert_eq!(lines(&seen, "x-forwarded-proto"), ["https"], "{seen}");
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    exchange(gateway, "GET / HTTP/1.1").await;
    assert!(lines(&upstream.only_head(), "forwarded").is_empty());
}

#[tokio::test]
async fn an_absolute_form_uri_never_chooses_the_upstream() {
    let upstream = RawUpstream::start(OK).await;
    let elsewhere = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    let request = format!("GET http://{}/steal?x=1 HTTP/1.1", elsewhere.addr);
    let (head, _) = exchange(gateway, &request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let seen = upstream.only_head();
    assert!(seen.starts_with("get /steal?x=1 http/1.1\r\n"), "{seen}");
    assert!(
        elsewhere.heads().is_empty(),
        "the request URI chose the upstream"
    );
}

#[tokio::test]
async fn a_base_path_prefixes_every_request_path() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("/base/")).await;
    exchange(gateway, "GET /orders?id=7 HTTP/1.1").await;
    exchange(gateway, "GET / HTTP/1.1").await;
    let heads = upstream.heads();
    assert!(
        heads[0].starts_with("GET /base/orders?id=7 HTTP/1.1\r\n"),
        "{heads:?}"
    );
    assert!(heads[1].starts_with("GET /base/ HTTP/1.1\r\n"), "{heads:?}");
}

#[tokio::test]
async fn strip_prefix_takes_a_whole_prefix_off_and_leaves_other_paths() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(
        ProxyLayer::new().strip_prefix("/api/"),
        &upstream.url("/v2"),
    )
    .await;
    for path in ["/api/orders?id=1", "/api", "/apiary", "/other"] {
        exchange(gateway, &format!("GET {path} HTTP/1.1")).await;
    }
    let targets: Vec<String> = upstream
        .heads()
        .iter()
        .map(|h| h.split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(
        targets,
        ["/v2/orders?id=1", "/v2/", "/v2/apiary", "/v2/other"]
    );
}

#[tokio::test]
async fn under_axum_nest_service_the_nested_prefix_comes_off_and_the_base_path_goes_on() {
    let upstream = RawUpstream::start(OK).await;
    let set = EndpointSet::from_urls([upstream.url("/base")]).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ProxyLayer::new())
        .layer(GatewayLayer::new().upstreams(set))
        .layer(TakeUpgradeLayer::new())
        .service(client::<axum::body::Body>());
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "fine" }))
        .nest_service("/shop", stack);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (head, body) = exchange(gateway, "GET /shop/cart?item=3 HTTP/1.1").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    let (_, body) = exchange(gateway, "GET /health HTTP/1.1").await;
    assert_eq!(body, "fine");
    let seen = upstream.only_head();
    assert!(
        seen.starts_with("get /base/cart?item=3 http/1.1\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_gateway_and_not_sent_upstream() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    within("the upload", async {
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        stream
            .write_all(
                b"POST /upload HTTP/1.1\r\nhost: g\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
            )
            .await
            .unwrap();
        let head = read_head(&mut stream).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
        stream.write_all(b"hello").await.unwrap();
        let head = read_head(&mut stream).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    })
    .await;
    let seen = upstream.only_head();
    assert!(lines(&seen, "expect").is_empty(), "{seen}");
    assert_eq!(lines(&seen, "content-length"), ["5"], "{seen}");
}

#[tokio::test]
async fn connect_is_refused_with_501_and_nothing_reaches_the_upstream() {
    let upstream = RawUpstream::start(OK).await;
    let gateway = start(ProxyLayer::new(), &upstream.url("")).await;
    let (head, body) = exchange(gateway, "CONNECT example.com:443 HTTP/1.1").await;
    assert!(head.starts_with("http/1.1 501 "), "{head}");
    assert!(body.contains("CONNECT"), "{body}");
    assert!(body.contains("not supported"), "{body}");
    assert!(upstream.heads().is_empty(), "{:?}", upstream.heads());
}

/// RFC 8441's extended CONNECT arrives over HTTP/2 with a `:protocol` (hyper
/// puts it in the request's extensions): refused the same way.
#[tokio::test]
async fn extended_connect_with_a_protocol_is_refused_too() {
    use tower::ServiceExt;
    let upstream = RawUpstream::start(OK).await;
    let set = EndpointSet::from_urls([upstream.url("")]).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ProxyLayer::new())
        .layer(GatewayLayer::new().upstreams(set))
        .service(client::<http_body_util::Empty<Bytes>>());
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri("https://gateway.example/chat")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = stack.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::NOT_IMPLEMENTED);
    let body = support::collect(res.into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("CONNECT"));
    assert!(upstream.heads().is_empty());
}

/// A WebSocket server: echoes text upper-cased and binary as it is, answers
/// pings (tungstenite does), and closes with 4000 "done" when told `bye`.
async fn websocket_upstream() -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let reply = match message {
                        Message::Text(text) if text.as_str() == "bye" => {
                            let frame = CloseFrame {
                                code: 4000.into(),
                                reason: "done".into(),
                            };
                            let _ = ws.close(Some(frame)).await;
                            continue;
                        }
                        Message::Text(text) => Message::text(text.to_uppercase()),
                        Message::Binary(data) => Message::Binary(data),
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_through_the_proxy_carries_messages_both_ways_pings_and_a_close_code() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let upstream = websocket_upstream().await;
    let gateway = start(ProxyLayer::new(), &format!("http://{upstream}")).await;
    within("the WebSocket conversation", async {
        let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{gateway}/chat"))
            .await
            .expect("the handshake through the proxy");
        assert_eq!(res.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(res.headers()["via"], "1.1 tower-bad-gateway");
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("HELLO"));
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![0u8, 1, 2, 255])
        );
        ws.send(Message::Ping(Bytes::from_static(b"are you there")))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"are you there"))
        );
        ws.send(Message::text("bye")).await.unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4000);
                assert_eq!(frame.reason.as_str(), "done");
            }
            other => panic!("expected the upstream's close, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_the_upstream_declines_passes_through_as_it_answered() {
    let declines = RawUpstream::start(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 15\r\n\r\nno upgrade here",
    )
    .await;
    let gateway = start(ProxyLayer::new(), &declines.url("")).await;
    let ask = "GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket";
    let (head, body) = exchange(gateway, ask).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "no upgrade here");
    assert!(lines(&head, "upgrade").is_empty(), "{head}");
    let refuses = RawUpstream::start(
        "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    let gateway = start(ProxyLayer::new(), &refuses.url("")).await;
    let (head, _) = exchange(gateway, ask).await;
    assert!(head.starts_with("http/1.1 401 "), "{head}");
    assert_eq!(
        lines(&head, "www-authenticate"),
        ["Bearer".to_ascii_lowercase()]
    );
}

/// A client under the gateway that gets a `101` but has no connection to hand
/// over (as a client without upgrade support has): the attempt fails, and the
/// gateway answers and reports it with its own renderer and hook.
#[tokio::test]
async fn an_upgrade_that_cannot_be_taken_over_is_answered_and_reported_by_the_gateway() {
    use tower_bad_gateway::render::Renderer;
    use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError};
    let seen: Arc<Mutex<Vec<ErrorKind>>> = Arc::default();
    let log = seen.clone();
    let bad_gateway = BadGatewayLayer::new()
        .renderer(Renderer::new().proxy_name("edge-7"))
        .on_failure(move |e: &GatewayError| log.lock().unwrap().push(e.kind()));
    let no_handover = tower::service_fn(
        |_req: http::Request<UpstreamBody<hyper::body::Incoming>>| async {
            let res = http::Response::builder()
                .status(101)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            Ok::<_, std::io::Error>(res)
        },
    );
    let set = EndpointSet::from_urls(["http://127.0.0.1:9"]).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ProxyLayer::new())
        .layer(GatewayLayer::new().upstreams(set).bad_gateway(bad_gateway))
        .layer(TakeUpgradeLayer::new())
        .service(no_handover);
    let gateway = serve(stack).await;
    let (head, _) = exchange(
        gateway,
        "GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket",
    )
    .await;
    assert!(head.starts_with("http/1.1 502 "), "{head}");
    assert_eq!(
        lines(&head, "proxy-status"),
        ["edge-7; error=http_upgrade_failed"],
        "{head}"
    );
    assert_eq!(*seen.lock().unwrap(), [ErrorKind::UpgradeFailed]);
}

#[tokio::test]
async fn without_take_upgrade_below_an_upgrade_is_still_joined() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let upstream = websocket_upstream().await;
    let set = EndpointSet::from_urls([format!("http://{upstream}")]).unwrap();
    let stack = ServiceBuilder::new()
        .layer(ProxyLayer::new())
        .layer(GatewayLayer::new().upstreams(set))
        .service(client::<hyper::body::Incoming>());
    let gateway = serve(stack).await;
    within("the WebSocket echo", async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gateway}/"))
            .await
            .unwrap();
        ws.send(Message::text("again")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("AGAIN"));
    })
    .await;
}

/// Not a header rule, the server loop: the proxy's `serve` stops accepting on
/// shutdown and returns once its connections are done.
#[tokio::test]
async fn serve_returns_after_shutdown_once_connections_are_done() {
    let upstream = RawUpstream::start(OK).await;
    let set = EndpointSet::from_urls([upstream.url("")]).unwrap();
    let stack = ProxyLayer::new().layer(
        GatewayLayer::new()
            .upstreams(set)
            .layer(client::<hyper::body::Incoming>()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(proxy::serve(listener, stack, async {
        let _ = stopped.await;
    }));
    let (head, _) = exchange(gateway, "GET / HTTP/1.1").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    stop.send(()).unwrap();
    within("serve to return", server).await.unwrap().unwrap();
    assert!(
        TcpStream::connect(gateway).await.is_err(),
        "still accepting"
    );
}

/// `serve` keeps a connection without a request in flight for `IDLE_TIMEOUT`
/// to twice that, and no longer: a head completed within it is answered, and a
/// connection kept alive and idle past it, or one trickling its head, is closed
/// (nothing served). Each wait is advanced twice past the timeout: the
/// connection's watch looks once per timeout, from when it was accepted.
#[tokio::test(start_paused = true)]
async fn serve_closes_a_connection_without_a_request_in_flight_after_its_idle_timeout() {
    let clock = support::Frozen::hold();
    within("the connections", async {
        let ok = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
            let body = http_body_util::Full::new(Bytes::from_static(b"ok"));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let addr = serve(ok).await;
        let timeout = proxy::IDLE_TIMEOUT;
        let second = std::time::Duration::from_secs(1);

        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        clock.advance(timeout - second).await;
        slow.write_all(b"\r\n").await.unwrap();
        let head = read_head(&mut slow).await.expect("an answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0; 2];
        slow.read_exact(&mut body).await.unwrap();
        for _ in 0..2 {
            clock.advance(timeout + second).await;
        }
        let idle = slow.read(&mut [0; 1]).await;
        assert!(
            matches!(idle, Ok(0) | Err(_)),
            "an idle connection closed: {idle:?}"
        );

        let mut trickle = TcpStream::connect(addr).await.unwrap();
        trickle.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        for _ in 0..2 {
            clock.advance(timeout + second).await;
        }
        let mut rest = Vec::new();
        let _ = trickle.read_to_end(&mut rest).await;
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            !rest.contains(" 200"),
            "a trickled head is not served: {rest}"
        );
    })
    .await;
}

/// `Server::idle_timeout` replaces `IDLE_TIMEOUT`: under three times the
/// default, a connection idle for twice the default (when `serve` would have
/// closed it) still takes a request, and is closed once idle for twice its own.
/// The clock moves a second at a time, so that each look of the watch comes
/// when it would (one long jump would put them all at its end).
#[tokio::test(start_paused = true)]
async fn a_server_with_a_longer_idle_timeout_keeps_an_idle_connection_longer() {
    let clock = support::Frozen::hold();
    within("the connection", async {
        let ok = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
            let body = http_body_util::Full::new(Bytes::from_static(b"ok"));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let timeout = 3 * proxy::IDLE_TIMEOUT;
        let second = std::time::Duration::from_secs(1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = proxy::Server::new().idle_timeout(timeout);
        tokio::spawn(server.serve(listener, ok, std::future::pending()));

        let mut conn = TcpStream::connect(addr).await.unwrap();
        for (i, wait) in [std::time::Duration::ZERO, 2 * proxy::IDLE_TIMEOUT + second]
            .into_iter()
            .enumerate()
        {
            for _ in 0..wait.as_secs() {
                clock.advance(second).await;
            }
            conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let head = read_head(&mut conn).await;
            let head = head.unwrap_or_else(|| panic!("request {i}: the connection was closed"));
            assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
            let mut body = [0; 2];
            conn.read_exact(&mut body).await.unwrap();
        }
        for _ in 0..2 * (timeout + second).as_secs() {
            clock.advance(second).await;
        }
        let idle = conn.read(&mut [0; 1]).await;
        assert!(
            matches!(idle, Ok(0) | Err(_)),
            "closed once idle for twice its own timeout: {idle:?}"
        );
    })
    .await;
}

/// A request in flight keeps its connection however long its answer takes:
/// here a body whose last bytes come three idle timeouts after its head.
#[tokio::test(start_paused = true)]
async fn serve_keeps_a_connection_whose_answer_is_still_streaming() {
    let clock = support::Frozen::hold();
    let timeout = proxy::IDLE_TIMEOUT;
    within("the answer", async {
        let late = tower::service_fn(
            move |_req: http::Request<hyper::body::Incoming>| async move {
                let late = futures_util::stream::once(async move {
                    tokio::time::sleep(3 * timeout).await;
                    let data = http_body::Frame::data(Bytes::from_static(b"late"));
                    Ok::<_, std::convert::Infallible>(data)
                });
                let body = http_body_util::StreamBody::new(late);
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            },
        );
        let addr = serve(late).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut stream).await.expect("the head");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        for _ in 0..3 {
            clock.advance(timeout).await;
        }
        // Chunked: the size line, then the data.
        let mut chunk = [0; 9];
        stream.read_exact(&mut chunk).await.unwrap();
        assert_eq!(&chunk, b"4\r\nlate\r\n");
    })
    .await;
}

/// `serve_threads`: one address, a listener and a current-thread runtime per
/// thread, each serving its own service; every thread drains on shutdown.
#[tokio::test]
async fn serve_threads_serves_one_address_from_every_thread_and_drains_on_shutdown() {
    let upstream = RawUpstream::start(OK).await;
    let set = EndpointSet::from_urls([upstream.url("")]).unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        proxy::serve_threads(
            "127.0.0.1:0".parse().unwrap(),
            2,
            move || {
                ProxyLayer::new().layer(
                    GatewayLayer::new()
                        .upstreams(set.clone())
                        .layer(client::<hyper::body::Incoming>()),
                )
            },
            move |addr| bound_tx.send(addr).unwrap(),
            move || {
                let mut stopping = stopping.clone();
                async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                }
            },
        )
    });
    let gateway = within("the bound address", async {
        tokio::task::spawn_blocking(move || bound_rx.recv().unwrap())
            .await
            .unwrap()
    })
    .await;
    for _ in 0..8 {
        let (head, body) = exchange(gateway, "GET / HTTP/1.1").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "ok");
    }
    assert_eq!(upstream.heads().len(), 8);
    stop.send(true).unwrap();
    within("every thread to drain", async {
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        TcpStream::connect(gateway).await.is_err(),
        "still accepting"
    );
}

/// An upstream that answers every request `ok` and counts its connections;
/// with `close`, it closes each connection right after its answer (without
/// saying so in `Connection`), as an upstream whose idle timeout fired does.
async fn counting_upstream(close: bool) -> (SocketAddr, Arc<Mutex<usize>>) {
    let (addr, accepted, _closed) = counting_closes(close).await;
    (addr, accepted)
}

/// [`counting_upstream`], which also counts the connections it saw closed.
async fn counting_closes(close: bool) -> (SocketAddr, Arc<Mutex<usize>>, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let closed = Arc::new(Mutex::new(0));
    let (count, closes) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let closes = closes.clone();
            tokio::spawn(async move {
                let _closed = Closed(closes);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end + 2]).to_lowercase();
                        buf.drain(..end + 4);
                        // Its own address as `Host`, or a 400.
                        let answer: &[u8] = if head.contains(&format!("\r\nhost: {addr}\r\n")) {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                        };
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, closed)
}

/// Counts a connection as closed when its task ends, however it ends.
struct Closed(Arc<Mutex<usize>>);

impl Drop for Closed {
    fn drop(&mut self) {
        *self.0.lock().unwrap() += 1;
    }
}

async fn get_through(
    client: &proxy::UpstreamClient<http_body_util::Empty<Bytes>>,
    url: &str,
) -> Result<http::StatusCode, tower_bad_gateway::BoxError> {
    use http_body_util::BodyExt;
    let req = http::Request::get(url)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = tower::ServiceExt::oneshot(client.clone(), req).await?;
    let status = res.status();
    res.into_body().collect().await?;
    Ok(status)
}

/// `ClientBuilder::build`'s HTTP/1.1 client keeps a connection for the next
/// request, sets each upstream's own `Host` (its value made once per
/// authority), and a pooled connection the upstream closed is
/// replaced without the request failing.
#[tokio::test]
async fn the_upstream_client_reuses_its_connections_and_replaces_closed_ones() {
    within("the requests", async {
        let client = proxy::ClientBuilder::new().build();
        let (addr, accepted) = counting_upstream(false).await;
        for _ in 0..3 {
            let status = get_through(&client, &format!("http://{addr}/x"))
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
        assert_eq!(*accepted.lock().unwrap(), 1, "one connection, reused");

        let (addr, accepted) = counting_upstream(true).await;
        for _ in 0..3 {
            let status = get_through(&client, &format!("http://{addr}/x"))
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
        assert_eq!(*accepted.lock().unwrap(), 3, "a new connection each time");
    })
    .await;
}

/// A pooled connection idle past the pool's idle timeout is closed even when
/// its authority is never asked for again (the pools are swept as connections
/// come back), and not before: within the timeout it is reused.
#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_after_the_idle_timeout_without_another_request() {
    let clock = support::Frozen::hold();
    within("the requests", async {
        let idle = std::time::Duration::from_secs(10);
        let client = proxy::ClientBuilder::new().pool_idle_timeout(idle).build();
        let (a, a_accepted, a_closed) = counting_closes(false).await;
        let (b, _, _) = counting_closes(false).await;
        async fn get(
            client: &proxy::UpstreamClient<http_body_util::Empty<Bytes>>,
            addr: SocketAddr,
        ) -> http::StatusCode {
            get_through(client, &format!("http://{addr}/x"))
                .await
                .unwrap()
        }
        assert_eq!(get(&client, a).await, 200);
        clock.advance(idle / 2).await;
        // A sweep within the timeout leaves `a`'s connection for its next request.
        assert_eq!(get(&client, b).await, 200);
        assert_eq!(get(&client, a).await, 200);
        assert_eq!(*a_accepted.lock().unwrap(), 1, "reused within the timeout");
        assert_eq!(*a_closed.lock().unwrap(), 0);
        // Past it, requests to `b` alone close `a`'s idle connection.
        clock.advance(idle + idle / 2).await;
        assert_eq!(get(&client, b).await, 200);
        support::eventually("a's idle connection closed", || {
            *a_closed.lock().unwrap() == 1
        })
        .await;
    })
    .await;
}

/// A refused connection is the client's connect error, which the default
/// classifier reads as `connection_refused` (so the gateway retries it on
/// another endpoint whatever the method); a URI that is not `http://` is a
/// configuration error.
#[tokio::test]
async fn the_upstream_clients_errors_are_classified() {
    use tower_bad_gateway::{Classifier, ErrorKind, Phase, RequestSent};
    within("the errors", async {
        let client = proxy::ClientBuilder::new().build();
        let refused = support::refused_port();
        let err = get_through(&client, &format!("http://{}/x", refused.addr))
            .await
            .unwrap_err();
        let classified = Classifier::new().classify(&*err, Phase::AwaitHead);
        assert_eq!(classified.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(classified.request_sent(), RequestSent::No);
        let err = get_through(&client, "ftp://127.0.0.1:1/x")
            .await
            .unwrap_err();
        let classified = Classifier::new().classify(&*err, Phase::AwaitHead);
        assert_eq!(
            classified.kind(),
            ErrorKind::ProxyConfigurationError,
            "{err}"
        );
    })
    .await;
}
