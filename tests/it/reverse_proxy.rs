//! End to end through `examples/reverse_proxy.rs`'s own stack (the file is
//! compiled in here): axum, the whole `GatewayLayer`, a pooled hyper-util client,
//! real upstreams and a real client on loopback.

use crate::support;

// The example as it is: its `main` goes unused here, and it keeps its own name
// inside this module of the same name.
#[allow(dead_code, clippy::module_inception)]
#[path = "../../examples/reverse_proxy.rs"]
pub(crate) mod reverse_proxy;

use bytes::Bytes;
use http::StatusCode;
use reverse_proxy::Options;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{After, Recorder, Script, Upstream};

const MS: Duration = Duration::from_millis(1);

/// Starts the example's proxy in front of `upstream`.
async fn proxy(upstream: SocketAddr, options: Options) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app =
        reverse_proxy::app(&options, &[format!("http://{upstream}").parse().unwrap()]).unwrap();
    tokio::spawn(tower_bad_gateway::proxy::serve(
        listener,
        app,
        std::future::pending(),
    ));
    addr
}

/// Starts the example's proxy in front of several replicas.
async fn proxy_to(upstreams: &[String], options: Options) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let uris: Vec<http::Uri> = upstreams.iter().map(|u| u.parse().unwrap()).collect();
    let app = reverse_proxy::app(&options, &uris).unwrap();
    tokio::spawn(tower_bad_gateway::proxy::serve(
        listener,
        app,
        std::future::pending(),
    ));
    addr
}

fn options(
    timeout: Duration,
    body_idle: Duration,
    attempts: u32,
    deadline: Option<Duration>,
) -> Options {
    Options {
        timeout,
        body_idle,
        attempts,
        deadline,
        ..Options::default()
    }
}

/// A client that gives up after 5 s: a test must never wait on a hung proxy.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_stalled_upstream_is_504_after_every_idempotent_attempt_and_after_one_post() {
    let upstream = Upstream::raw("", After::Hang).await;
    let gateway = proxy(upstream.addr, options(200 * MS, 1000 * MS, 3, None)).await;

    let start = Instant::now();
    let res = client()
        .get(format!("http://{gateway}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        res.headers()["proxy-status"],
        "tower-bad-gateway; error=http_response_timeout"
    );
    assert_eq!(upstream.requests(), 3, "a GET gets every attempt");
    assert!(
        start.elapsed() >= 600 * MS,
        "three 200 ms attempts took {:?}",
        start.elapsed()
    );

    let res = client()
        .post(format!("http://{gateway}/"))
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        upstream.requests(),
        4,
        "a POST that may have been processed is sent once"
    );
}

#[tokio::test]
async fn a_body_that_stalls_mid_way_is_cut_after_the_idle_timeout() {
    let parts = vec![
        Bytes::from("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"),
        Bytes::from("first part"),
    ];
    let upstream = Upstream::raw_parts(parts, 20 * MS, After::Hang).await;
    let gateway = proxy(upstream.addr, options(1000 * MS, 300 * MS, 3, None)).await;
    let start = Instant::now();
    let res = client()
        .get(format!("http://{gateway}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let err = res
        .bytes()
        .await
        .expect_err("a cut body must not look complete");
    assert!(
        !err.is_timeout(),
        "the proxy cut it, not the test client's own timeout: {err:?}"
    );
    assert!(
        start.elapsed() >= 300 * MS,
        "cut after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn the_deadline_caps_the_whole_exchange() {
    let upstream = Upstream::raw("", After::Hang).await;
    // Five 300 ms attempts would take 1.5 s; the 500 ms deadline allows two.
    let gateway = proxy(
        upstream.addr,
        options(300 * MS, 1000 * MS, 5, Some(500 * MS)),
    )
    .await;
    let start = Instant::now();
    let res = client()
        .get(format!("http://{gateway}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        upstream.requests() <= 2,
        "{} attempts started within a 500 ms deadline",
        upstream.requests()
    );
    assert!(start.elapsed() >= 500 * MS);
}

#[tokio::test]
async fn a_long_but_steady_body_is_not_cut_by_the_attempt_timeout() {
    let mut parts = vec![Bytes::from("HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")];
    parts.extend((0..10).map(|_| Bytes::from("hello")));
    let upstream = Upstream::raw_parts(parts, 60 * MS, After::Hang).await;
    let gateway = proxy(upstream.addr, options(200 * MS, 300 * MS, 3, None)).await;
    let start = Instant::now();
    let res = client()
        .get(format!("http://{gateway}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "hello".repeat(10));
    assert!(
        start.elapsed() >= 600 * MS,
        "the body took longer than the attempt timeout"
    );
}

fn grpc_call(gateway: SocketAddr, timeout: &str) -> reqwest::RequestBuilder {
    client()
        .post(format!("http://{gateway}/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(Bytes::from_static(b"\0\0\0\0\0"))
}

/// Parses a `grpc-timeout` the way a gRPC server would.
fn grpc_timeout(value: &str) -> Duration {
    let (n, unit) = value.split_at(value.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => panic!("bad unit in {value}"),
    }
}

/// The `grpc-timeout` an upstream receives for a gRPC call through a proxy
/// with `attempt_timeout`, when the caller sent `caller`.
async fn grpc_timeout_seen_upstream(attempt_timeout: Duration, caller: &str) -> Duration {
    let upstream = Recorder::start(vec![Script::Respond(
        200,
        vec![("content-type", "application/grpc"), ("grpc-status", "0")],
        "",
    )])
    .await;
    let gateway = proxy(upstream.addr, options(attempt_timeout, 1000 * MS, 3, None)).await;
    let res = grpc_call(gateway, caller).send().await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    let headers = upstream.headers();
    grpc_timeout(headers[0]["grpc-timeout"].to_str().unwrap())
}

#[tokio::test]
async fn grpc_timeout_is_rewritten_to_the_time_left() {
    let sent = grpc_timeout_seen_upstream(10_000 * MS, "300m").await;
    assert!(
        sent <= 300 * MS,
        "the upstream was given {sent:?}, more than the caller's 300 ms"
    );
    assert!(sent > 200 * MS, "the upstream was given only {sent:?}");
}

/// `grpc-timeout` is the whole call's deadline: the upstream is given the time
/// left of it, never the per-attempt head timeout (400 ms here), which would have
/// it cancel a streaming call whose messages outlive the head.
#[tokio::test]
async fn grpc_timeout_sent_upstream_is_the_deadline_not_the_attempt_timeout() {
    let sent = grpc_timeout_seen_upstream(400 * MS, "10S").await;
    assert!(sent <= 10_000 * MS, "more than the caller's 10 s: {sent:?}");
    assert!(
        sent > 9_000 * MS,
        "the upstream was given {sent:?}: the attempt timeout, not the deadline"
    );
}

#[tokio::test]
async fn grpc_timeout_is_honoured_with_deadline_exceeded() {
    let upstream = Upstream::raw("", After::Hang).await;
    // The proxy itself would wait 10 s; the caller allows 200 ms.
    let gateway = proxy(upstream.addr, options(10_000 * MS, 1000 * MS, 3, None)).await;
    let start = Instant::now();
    let res = grpc_call(gateway, "200m")
        .send()
        .await
        .expect("answered within the caller's deadline, not 10 s");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    assert!(start.elapsed() >= 200 * MS);
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let upstream = Recorder::start(vec![Script::Respond(
        200,
        vec![
            ("connection", "x-upstream-hop"),
            ("x-upstream-hop", "1"),
            ("x-kept", "yes"),
        ],
        "ok",
    )])
    .await;
    let gateway = proxy(upstream.addr, Options::default()).await;
    let res = client()
        .get(format!("http://{gateway}/path?q=1"))
        .header("connection", "x-client-hop")
        .header("x-client-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers().get("x-upstream-hop").is_none(),
        "a header the upstream's Connection named"
    );
    assert_eq!(res.headers()["x-kept"], "yes");
    assert_eq!(res.headers()["via"], "1.1 tower-bad-gateway");

    let seen = &upstream.headers()[0];
    for hop in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            seen.get(hop).is_none(),
            "{hop} reached the upstream: {seen:?}"
        );
    }
    assert_eq!(seen["via"], "1.1 tower-bad-gateway");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], gateway.to_string());
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["host"], upstream.addr.to_string());
}

/// Earlier proxies' `Via` and `X-Forwarded-For` lines are all kept, ours comes
/// last; `TE: trailers` goes to an HTTP/1.1 upstream only named in `Connection`.
#[tokio::test]
async fn forwarding_lists_keep_every_earlier_line_and_te_is_named_in_connection() {
    let upstream = Recorder::start(vec![Script::Respond(200, vec![], "ok")]).await;
    let gateway = proxy(upstream.addr, Options::default()).await;
    let res = client()
        .get(format!("http://{gateway}/"))
        .header("via", "1.1 edge-a")
        .header("via", "1.0 edge-b, 1.1 edge-c")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-for", "198.51.100.2")
        .header("te", "trailers")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = &upstream.headers()[0];
    let list = |name: &str| {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(
        list("via"),
        "1.1 edge-a, 1.0 edge-b, 1.1 edge-c, 1.1 tower-bad-gateway"
    );
    assert_eq!(
        list("x-forwarded-for"),
        "203.0.113.7, 198.51.100.2, 127.0.0.1"
    );
    assert_eq!(seen["te"], "trailers");
    assert_eq!(seen["connection"], "te");
}

#[test]
fn bad_flags_are_clear_errors() {
    let parse = |args: &[&str]| Options::parse(args.iter().map(|s| s.to_string()));
    assert!(
        parse(&["--attempts"])
            .unwrap_err()
            .contains("--attempts needs a value")
    );
    assert!(
        parse(&["--timeout-ms", "soon"])
            .unwrap_err()
            .contains("--timeout-ms")
    );
    assert!(
        parse(&["--upstream", "ftp://x"])
            .unwrap_err()
            .contains("http://")
    );
    assert!(
        parse(&["--bogus"])
            .unwrap_err()
            .contains("unknown flag --bogus")
    );
    let ok = parse(&[
        "--listen",
        "127.0.0.1:8081",
        "--deadline-ms",
        "250",
        "--http2",
    ])
    .unwrap();
    assert_eq!(ok.deadline, Some(250 * MS));
    assert!(ok.http2);
}

#[tokio::test]
async fn several_upstreams_are_balanced_and_a_dead_one_costs_no_client_a_failure() {
    use support::Replica;
    let (a, b, dead) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    dead.kill();
    let gateway = proxy_to(&[a.url(), b.url(), dead.url()], Options::default()).await;
    let client = client();
    for i in 0..40 {
        let req = if i % 2 == 0 {
            client
                .post(format!("http://{gateway}/orders"))
                .body(format!("{i}"))
        } else {
            client.get(format!("http://{gateway}/orders"))
        };
        let res = req.header("x-id", i.to_string()).send().await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "request {i}: {:?}",
            res.headers()
        );
    }
    let mut seen = [a.seen(), b.seen()].concat();
    seen.sort_by_key(|id| id.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..40).map(|i: u32| i.to_string()).collect();
    assert_eq!(
        seen, expected,
        "each request reached one live replica, once"
    );
    assert!(
        !a.seen().is_empty() && !b.seen().is_empty(),
        "both live replicas served"
    );
}

/// `--hedge-after-ms`: a GET whose first attempt went to a replica that takes
/// 10 s is answered by the other replica's hedge, well inside the client's 5 s;
/// `--hedge-budget-percent 100` lets every request pay for its own hedge.
#[tokio::test]
async fn with_hedge_after_ms_a_get_stuck_at_a_slow_replica_is_answered_by_the_other() {
    use support::Replica;
    let slow = Replica::start_slow("slow", Duration::from_secs(10)).await;
    let fast = Replica::start("fast").await;
    let flags = ["--hedge-after-ms", "50", "--hedge-budget-percent", "100"];
    let options = Options::parse(flags.iter().map(|s| s.to_string())).unwrap();
    let gateway = proxy_to(&[slow.url(), fast.url()], options).await;
    let client = client();
    for i in 0..12 {
        let res = client
            .get(format!("http://{gateway}/items"))
            .header("x-id", format!("get-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {i}");
        assert_eq!(res.text().await.unwrap(), "fast", "GET {i}");
    }
    assert!(
        !slow.seen().is_empty(),
        "some first attempts went to the slow replica, and were hedged"
    );
    let parse = |args: &[&str]| Options::parse(args.iter().map(|s| s.to_string()));
    let throttled = parse(&["--grpc-retry-throttle", "10,0.1"]).unwrap();
    assert_eq!(throttled.retry_throttle, Some((10, 0.1)));
    let err = parse(&["--grpc-retry-throttle", "ten"]).unwrap_err();
    assert!(err.contains("MAX_TOKENS,TOKEN_RATIO"), "{err}");
}

#[tokio::test]
async fn a_lone_upstream_is_not_ejected_unless_asked() {
    let upstream = Upstream::raw("", After::Close).await;
    let url = format!("http://{}", upstream.addr);
    // Default: like nginx for a lone server, never cut off.
    let gateway = proxy_to(
        std::slice::from_ref(&url),
        options(500 * MS, 1000 * MS, 1, None),
    )
    .await;
    for _ in 0..8 {
        let res = client()
            .get(format!("http://{gateway}/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    }
    // Asked: a circuit breaker.
    let breaker = Options {
        consecutive_failures: Some(2),
        ..options(500 * MS, 1000 * MS, 1, None)
    };
    let gateway = proxy_to(&[url], breaker).await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            let res = client()
                .get(format!("http://{gateway}/x"))
                .send()
                .await
                .unwrap();
            out.push(res.status().as_u16());
        }
        out
    };
    assert_eq!(statuses, [502, 502, 503, 503]);
}

#[test]
fn the_upstream_set_flags_are_checked() {
    let parse = |args: &[&str]| Options::parse(args.iter().map(|s| s.to_string()));
    let two = parse(&["--upstream", "http://a:1", "--upstream", "http://b:2"]).unwrap();
    assert_eq!(two.upstreams.len(), 2);
    assert!(
        parse(&[
            "--upstream",
            "http://a:1/api",
            "--upstream",
            "http://b:2/v2"
        ])
        .unwrap_err()
        .contains("same path")
    );
    assert!(
        parse(&["--consecutive-failures", "many"])
            .unwrap_err()
            .contains("--consecutive-failures")
    );
    let tuned = parse(&[
        "--consecutive-failures",
        "3",
        "--base-ejection-ms",
        "500",
        "--max-ejection-ms",
        "4000",
    ])
    .unwrap();
    assert_eq!(tuned.consecutive_failures, Some(3));
    assert_eq!(tuned.base_ejection, 500 * MS);
    assert_eq!(tuned.max_ejection, 4000 * MS);
    // The ejection guard: defaults, and its two flags.
    assert_eq!(two.max_ejection_percent, 10);
    assert_eq!(two.short_ejection, 1000 * MS);
    assert_eq!(two.failure_rate_window, 50);
    assert_eq!(two.slow_start, Duration::ZERO);
    assert_eq!(
        parse(&["--slow-start-ms", "30000"]).unwrap().slow_start,
        30000 * MS
    );
    let windowed = parse(&["--failure-rate-window", "200"]).unwrap();
    assert_eq!(windowed.failure_rate_window, 200);
    assert!(
        parse(&["--failure-rate-window", "-3"])
            .unwrap_err()
            .contains("--failure-rate-window")
    );
    let guarded = parse(&["--max-ejection-percent", "33", "--short-ejection-ms", "250"]).unwrap();
    assert_eq!(guarded.max_ejection_percent, 33);
    assert_eq!(guarded.short_ejection, 250 * MS);
    for bad in ["101", "-1", "half"] {
        assert!(
            parse(&["--max-ejection-percent", bad])
                .unwrap_err()
                .contains("--max-ejection-percent"),
            "{bad}"
        );
    }
    // Active health checks: one kind, and an interval only with one.
    let checked = parse(&[
        "--health-check-path",
        "/healthz",
        "--health-check-interval-ms",
        "2000",
    ])
    .unwrap();
    assert_eq!(checked.health_check_path.as_deref(), Some("/healthz"));
    assert_eq!(checked.health_check_interval, Some(2000 * MS));
    assert!(parse(&["--health-check-grpc"]).unwrap().health_check_grpc);
    assert!(parse(&["--health-check-tcp"]).unwrap().health_check_tcp);
    for (args, error) in [
        (
            &["--health-check-path", "healthz"][..],
            "--health-check-path",
        ),
        (
            &["--health-check-path"][..],
            "--health-check-path needs a value",
        ),
        (
            &["--health-check-interval-ms", "100"][..],
            "needs --health-check-path",
        ),
        (
            &["--health-check-interval-ms", "soon", "--health-check-tcp"][..],
            "--health-check-interval-ms",
        ),
        (
            &["--health-check-tcp", "--health-check-grpc"][..],
            "choose one",
        ),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(error), "{args:?}: {err}");
    }
    let dup = ["http://a:1".parse().unwrap(), "http://a:1".parse().unwrap()];
    assert!(
        reverse_proxy::app(&Options::default(), &dup)
            .unwrap_err()
            .contains("listed twice")
    );
}

/// Sends a POST with `Expect: 100-continue` and no body yet; returns the first
/// thing the gateway says (up to its first blank line).
async fn expect_continue(gateway: SocketAddr) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut client = tokio::net::TcpStream::connect(gateway).await.unwrap();
    client
        .write_all(
            b"POST /upload HTTP/1.1\r\nhost: gateway\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut byte = [0; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte))
            .await
            .expect("the gateway answered")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    (String::from_utf8(got).unwrap(), client)
}

#[tokio::test]
async fn expect_100_continue_gets_the_502_without_sending_its_body_when_the_upstream_fails_first() {
    let refused = support::refused_port();
    let gateway = proxy(refused.addr, Options::default()).await;
    let (head, _client) = expect_continue(gateway).await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    assert!(head.contains("error=connection_refused"), "{head}");
}

#[tokio::test]
async fn expect_100_continue_to_a_healthy_upstream_is_told_to_continue_and_its_body_arrives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Recorder::start(vec![Script::Respond(200, vec![], "stored")]).await;
    let gateway = proxy(upstream.addr, Options::default()).await;
    let (head, mut client) = expect_continue(gateway).await;
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    client.write_all(b"hello").await.unwrap();
    let mut rest = vec![0; 4096];
    let n = client.read(&mut rest).await.unwrap();
    let answer = String::from_utf8_lossy(&rest[..n]);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(upstream.received()[0].1, Bytes::from_static(b"hello"));
}

/// An upstream for upgrades: to `/ws` it answers `101` and then echoes what it
/// reads, upper-cased; to `/plain` it answers `200`; to `/auth`, `401`.
async fn upgrading_upstream() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
                        let status = match req.uri().path() {
                            "/ws"
                                if req
                                    .headers()
                                    .get("upgrade")
                                    .is_some_and(|v| v == "websocket") =>
                            {
                                let upgrade = hyper::upgrade::on(&mut req);
                                tokio::spawn(async move {
                                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                                    let Ok(io) = upgrade.await else { return };
                                    let mut io = TokioIo::new(io);
                                    let mut buf = [0; 64];
                                    while let Ok(n) = io.read(&mut buf).await {
                                        if n == 0
                                            || io
                                                .write_all(&buf[..n].to_ascii_uppercase())
                                                .await
                                                .is_err()
                                        {
                                            return;
                                        }
                                    }
                                });
                                101
                            }
                            "/auth" => 401,
                            _ => 200,
                        };
                        let mut res = http::Response::builder().status(status);
                        if status == 101 {
                            res = res
                                .header("upgrade", "websocket")
                                .header("connection", "upgrade");
                        }
                        Ok::<_, std::convert::Infallible>(
                            res.body(http_body_util::Empty::<Bytes>::new()).unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Asks `path` for a WebSocket upgrade over a raw connection; returns the answer's
/// head and the connection.
async fn ask_upgrade(gateway: SocketAddr, path: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut client = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: gateway\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    client.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (
        String::from_utf8(head).unwrap().to_ascii_lowercase(),
        client,
    )
}

#[tokio::test]
async fn a_websocket_upgrade_passes_through_and_the_two_connections_are_joined_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upgrading_upstream().await;
    let gateway = proxy(upstream, Options::default()).await;
    let (head, mut client) = ask_upgrade(gateway, "/ws").await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols"),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    for message in ["hello", "and again"] {
        client.write_all(message.as_bytes()).await.unwrap();
        let mut echo = vec![0; message.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut echo))
            .await
            .expect("the echo came back")
            .unwrap();
        assert_eq!(echo, message.to_ascii_uppercase().as_bytes());
    }
}

/// An upstream may ignore an upgrade and answer as to a plain request (RFC 9110
/// §7.8): its `200` passes through, as nginx and Envoy pass it (issue 21; it was a
/// `502 http_upgrade_failed` before), and so do its refusals.
#[tokio::test]
async fn an_upgrade_the_upstream_ignores_passes_through_and_so_does_its_refusal() {
    let upstream = upgrading_upstream().await;
    let gateway = proxy(upstream, Options::default()).await;
    let (head, _) = ask_upgrade(gateway, "/plain").await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(!head.contains("proxy-status"), "{head}");
    let (head, _) = ask_upgrade(gateway, "/auth").await;
    assert!(head.starts_with("http/1.1 401 "), "{head}");
}

/// The library's `/metrics` server over a real socket: `GET` the text in the
/// exposition format's content type, `HEAD` the same head (its length) without the text, any
/// other method a 405 naming what is allowed, any other path a 404.
#[tokio::test]
async fn the_metrics_server_answers_get_and_head_of_metrics_only() {
    use tower_bad_gateway::proxy::prometheus;
    let recorder = prometheus::recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(tower_bad_gateway::metrics::RETRIES).increment(3);
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(prometheus::serve(listener, handle, std::future::pending()));
    let client = client();
    let get = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    let text_plain = "text/plain; version=0.0.4; charset=utf-8";
    assert_eq!(get.headers()["content-type"], text_plain);
    let text = get.text().await.unwrap();
    assert_eq!(
        support::prometheus_value(&text, "tower_bad_gateway_retries_total"),
        Some(3.0),
        "{text}"
    );
    let head = client.head(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-type"], text_plain);
    let length = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(length, text.len().to_string(), "the length GET's text has");
    assert_eq!(head.bytes().await.unwrap().len(), 0);
    let post = client.post(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let other = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

/// `--metrics`: the example's Prometheus endpoint, scraped with a real client,
/// shows a refused connection (a failure, two retries, each attempt's duration
/// with the endpoint and `error.type`, the whole exchange's) and a success (its
/// status code), each with its labels, in the conventions' buckets and with the
/// recommended names (`_total`, `_seconds`).
/// The recorder is this test's own (a thread-local default: the test's runtime,
/// its servers and clients run on its thread), so other tests cannot move it.
#[tokio::test]
async fn metrics_show_a_refused_connection_its_retries_and_a_success_with_their_labels() {
    let recorder = tower_bad_gateway::proxy::prometheus::recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    tower_bad_gateway::metrics::describe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let metrics =
        tower_bad_gateway::proxy::prometheus::serve(listener, handle, std::future::pending());
    tokio::spawn(metrics);

    let refused = support::refused_port();
    let gateway = proxy(refused.addr, options(1000 * MS, 1000 * MS, 3, None)).await;
    let res = client()
        .get(format!("http://{gateway}/orders?id=secret-query"))
        .header("x-request-id", "secret-id")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let upstream = Upstream::ok("fine").await;
    let gateway = proxy(upstream.addr, options(1000 * MS, 1000 * MS, 3, None)).await;
    let res = client()
        .post(format!("http://{gateway}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let unavailable = Upstream::raw(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        After::Close,
    )
    .await;
    let gateway = proxy(unavailable.addr, options(1000 * MS, 1000 * MS, 3, None)).await;
    let res = client()
        .request(
            http::Method::from_bytes(b"PURGE").unwrap(),
            format!("http://{gateway}/"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    let text = client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| support::prometheus_value(&text, series);
    assert_eq!(
        value(r#"tower_bad_gateway_retries_total{error_type="connection_refused"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            r#"tower_bad_gateway_failures_total{error_type="connection_refused",tower_bad_gateway_phase="connect"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // Each attempt, with the endpoint's address and port: three refused.
    let (refused_port, ok_port, unavailable_port) = (
        refused.addr.port(),
        upstream.addr.port(),
        unavailable.addr.port(),
    );
    assert_eq!(
        value(&format!(
            r#"http_client_request_duration_seconds_count{{http_request_method="GET",server_address="127.0.0.1",server_port="{refused_port}",error_type="connection_refused"}}"#
        )),
        Some(3.0),
        "{text}"
    );
    // The whole exchange, once, in the crate's own metric.
    assert_eq!(
        value(
            r#"tower_bad_gateway_exchange_duration_seconds_count{http_request_method="GET",error_type="connection_refused"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&format!(
            r#"http_client_request_duration_seconds_count{{http_request_method="POST",server_address="127.0.0.1",server_port="{ok_port}",http_response_status_code="200"}}"#
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&format!(
            r#"http_client_request_duration_seconds_count{{http_request_method="_OTHER",server_address="127.0.0.1",server_port="{unavailable_port}",http_response_status_code="503",error_type="503"}}"#
        )),
        Some(1.0),
        "an error status is the error.type; an unknown method is _OTHER: {text}"
    );
    // The conventions' bucket boundaries.
    assert!(
        text.contains(r#"le="0.075""#) && text.contains(r#"le="7.5""#),
        "{text}"
    );
    for secret in ["secret-query", "secret-id", "/orders", "PURGE"] {
        assert!(!text.contains(secret), "a label carries {secret}: {text}");
    }
}

/// `--health-check-path`: a replica whose health path answers `503` is taken out
/// by its checks, though every request it gets would succeed; without the checks
/// it would take about half the requests.
#[tokio::test]
async fn a_replica_failing_its_health_path_gets_no_requests_through_the_proxy() {
    use axum::routing::get;
    async fn serve(name: &'static str, healthy: bool) -> String {
        let app = axum::Router::new()
            .route(
                "/healthz",
                get(move || async move {
                    if healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }),
            )
            .fallback(move || async move { name });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
    let (a, b) = (serve("a", true).await, serve("b", false).await);
    let options = Options::parse(
        [
            "--health-check-path",
            "/healthz",
            "--health-check-interval-ms",
            "50",
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .unwrap();
    let proxy = proxy_to(&[a, b], options).await;
    let client = client();
    // Until b's three failed checks take it out (about 150 ms), b answers some;
    // then twenty in a row come from a.
    support::within("twenty answers in a row from the healthy replica", async {
        let mut from_a = 0;
        while from_a < 20 {
            let body = client
                .get(format!("http://{proxy}/orders"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            from_a = if body == "a" { from_a + 1 } else { 0 };
            if from_a == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
}

/// `--upstream http://NAME:PORT --dns-server ADDR`: the replicas are the name's
/// addresses (two here, on 127.0.0.2 and 127.0.0.3), both get requests, and each
/// request keeps the name in `Host`.
#[tokio::test]
async fn an_upstream_by_name_is_its_addresses_and_requests_keep_the_name() {
    use std::net::Ipv4Addr;
    use support::{DnsServer, Replica, Zone};
    let ips = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let replicas = Replica::start_at(&["two", "three"], &ips).await;
    let port = replicas[0].addr.port();
    let dns = DnsServer::start(Zone::Records(ips.to_vec(), 30)).await;
    let options = Options::parse(
        ["--dns-server", &dns.addr.to_string()]
            .iter()
            .map(|s| s.to_string()),
    )
    .unwrap();
    let proxy = proxy_to(&[format!("http://orders.test:{port}")], options).await;
    let client = client();
    support::within("both addresses answer", async {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 2 {
            let res = client
                .get(format!("http://{proxy}/orders"))
                .send()
                .await
                .unwrap();
            if res.status() == 200 {
                seen.insert(res.text().await.unwrap());
            } else {
                // Before the first answer of the name server: 503, come back soon.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    for replica in &replicas {
        let hosts = replica.hosts();
        assert!(!hosts.is_empty());
        assert!(
            hosts.iter().all(|h| *h == format!("orders.test:{port}")),
            "{hosts:?}"
        );
    }
}

/// `--upstream https://NAME:PORT --ca-file PATH`: TLS to the address the name
/// resolved to, SNI and verification by the name, with the roots of the file;
/// with another CA's roots, `502` and `tls_certificate_error`.
#[tokio::test]
async fn an_https_upstream_is_verified_by_name_with_the_ca_file() {
    use support::tls::{Ca, TlsUpstream};
    use support::{DnsServer, Zone};
    let ca = Ca::new("reverse_proxy test ca");
    let upstream = TlsUpstream::start(ca.leaf(&["orders.test"])).await;
    let port = upstream.addr.port();
    let dns = DnsServer::start(Zone::Records(vec![std::net::Ipv4Addr::LOCALHOST], 30)).await;
    let dir = std::env::temp_dir().join(format!("tbg-ca-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, other) = (dir.join("good.pem"), dir.join("other.pem"));
    std::fs::write(&good, ca.pem()).unwrap();
    std::fs::write(&other, Ca::new("another ca").pem()).unwrap();
    let get = |ca_file: &std::path::Path| {
        let options = Options::parse(
            [
                "--dns-server",
                &dns.addr.to_string(),
                "--ca-file",
                ca_file.to_str().unwrap(),
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        let upstream = format!("https://orders.test:{port}");
        async move {
            let proxy = proxy_to(&[upstream], options).await;
            support::within("an answer past the first lookup", async {
                loop {
                    let res = client()
                        .get(format!("http://{proxy}/orders"))
                        .send()
                        .await
                        .unwrap();
                    if res.status() != 503 {
                        return res;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
        }
    };
    let res = get(&good).await;
    assert_eq!(res.status(), 200);
    assert!(
        upstream
            .server_names()
            .contains(&Some("orders.test".to_owned())),
        "SNI is the name: {:?}",
        upstream.server_names()
    );
    let res = get(&other).await;
    assert_eq!(res.status(), 502);
    let proxy_status = res.headers()["proxy-status"].to_str().unwrap().to_owned();
    assert!(
        proxy_status.contains("error=tls_certificate_error"),
        "{proxy_status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_dns_and_tls_flags_are_checked() {
    let parse = |args: &[&str]| Options::parse(args.iter().map(|s| s.to_string()));
    let ok = parse(&[
        "--dns-server",
        "127.0.0.1:5353",
        "--dns-min-ttl-ms",
        "1000",
        "--ca-file",
        "/x.pem",
    ])
    .unwrap();
    assert_eq!(ok.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
    assert_eq!(ok.dns_min_ttl, 1000 * MS);
    assert_eq!(ok.ca_file.as_deref(), Some(std::path::Path::new("/x.pem")));
    assert_eq!(Options::default().dns_min_ttl, 5000 * MS);
    let idle = parse(&["--idle-timeout-ms", "75000"]).unwrap();
    assert_eq!(idle.idle_timeout, 75_000 * MS);
    assert_eq!(
        Options::default().idle_timeout,
        tower_bad_gateway::proxy::IDLE_TIMEOUT
    );
    let err = parse(&["--idle-timeout-ms", "0"]).unwrap_err();
    assert!(err.contains("--idle-timeout-ms: at least 1"), "{err}");
    assert!(
        parse(&["--dns-server", "nowhere"])
            .unwrap_err()
            .contains("--dns-server")
    );
    assert!(
        parse(&["--dns-min-ttl-ms", "soon"])
            .unwrap_err()
            .contains("--dns-min-ttl-ms")
    );
    assert!(
        parse(&["--upstream", "ftp://x:1"])
            .unwrap_err()
            .contains("https://")
    );
    assert!(parse(&["--upstream", "https://x:1"]).is_ok());
    // A CA file that cannot be read is a clear error when the proxy is built.
    let options = parse(&["--ca-file", "/nonexistent/ca.pem"]).unwrap();
    let err = reverse_proxy::app(&options, &["https://127.0.0.1:1".parse().unwrap()])
        .err()
        .unwrap();
    assert!(err.contains("--ca-file /nonexistent/ca.pem"), "{err}");
}

/// Behind an endpoint set of two replicas and one dead, each attempt's duration
/// names the replica it went to (address and port), the dead one's with its
/// error: never the address the client asked the gateway for.
#[tokio::test]
async fn the_duration_histogram_names_each_replica_an_attempt_went_to() {
    let recorder = tower_bad_gateway::proxy::prometheus::recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    tower_bad_gateway::metrics::describe();
    let (a, b) = (
        support::Replica::start("a").await,
        support::Replica::start("b").await,
    );
    let dead = support::refused_port();
    let urls: Vec<String> = [a.addr, b.addr, dead.addr]
        .iter()
        .map(|addr| format!("http://{addr}"))
        .collect();
    let gateway = proxy_to(&urls, Options::default()).await;
    let client = client();
    for _ in 0..30 {
        let res = client
            .get(format!("http://{gateway}/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "a refused attempt is retried on another replica"
        );
    }
    let text = handle.render();
    for (addr, labels) in [
        (a.addr, r#"http_response_status_code="200""#),
        (b.addr, r#"http_response_status_code="200""#),
        (dead.addr, r#"error_type="connection_refused""#),
    ] {
        let series = format!(
            r#"http_client_request_duration_seconds_count{{http_request_method="GET",server_address="127.0.0.1",server_port="{}",{labels}}}"#,
            addr.port()
        );
        assert!(
            support::prometheus_value(&text, &series).is_some_and(|n| n >= 1.0),
            "{series} in {text}"
        );
    }
    assert!(
        !text.contains(&gateway.port().to_string()),
        "the gateway's own address: {text}"
    );
}
