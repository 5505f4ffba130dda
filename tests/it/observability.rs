//! What an operator gets: the failure event names the request (method, path,
//! request id), the hop, the answer (HTTP status or gRPC code) and the retries, in
//! OpenTelemetry's field names; the retry event times each failed attempt; the
//! `on_failure_with_request` hook sees the request.

use crate::support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{After, EventLog, Upstream, collect, refused_port, through};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::render::Renderer;
use tower_bad_gateway::{BadGatewayLayer, GatewayLayer, UpstreamBody};

fn failures(events: &EventLog) -> Vec<String> {
    events
        .messages()
        .into_iter()
        .filter(|e| e.contains("upstream request failed"))
        .collect()
}

/// A field's value in a captured event line (`name=value `).
fn field<'a>(event: &'a str, name: &str) -> Option<&'a str> {
    let start = event.find(&format!("{name}="))? + name.len() + 1;
    event[start..].split(' ').next()
}

#[tokio::test]
async fn the_failure_event_names_the_request_the_hop_and_the_answer_in_otel_fields() {
    let events = EventLog::install();
    let port = refused_port();
    let req = Request::delete(format!("http://{}/items/7?token=secret", port.addr))
        .header("x-request-id", "req-42")
        .body(Full::default())
        .unwrap();
    let res = through(BadGatewayLayer::new(), req).await;
    assert_eq!(res.status(), 502);

    let failures = failures(&events);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let e = &failures[0];
    assert_eq!(field(e, "error.type"), Some("connection_refused"), "{e}");
    assert_eq!(field(e, "http.request.method"), Some("DELETE"), "{e}");
    assert_eq!(field(e, "url.path"), Some("/items/7"), "{e}");
    assert!(!e.contains("secret"), "the query is never logged: {e}");
    assert_eq!(field(e, "request_id"), Some("req-42"), "{e}");
    assert_eq!(field(e, "server.address"), Some("127.0.0.1"), "{e}");
    let port_text = port.addr.port().to_string();
    assert_eq!(field(e, "server.port"), Some(port_text.as_str()), "{e}");
    // No status was received: the conventions' field is left out; the gateway's
    // own answer has its own field.
    assert!(field(e, "http.response.status_code").is_none(), "{e}");
    assert_eq!(
        field(e, "tower_bad_gateway.answered_status"),
        Some("502"),
        "{e}"
    );
    // Sent once: no resend count (the conventions: only when retried).
    assert!(field(e, "http.request.resend_count").is_none(), "{e}");
    assert_eq!(field(e, "phase"), Some("connect"), "{e}");
    assert!(field(e, "elapsed_ms").is_some(), "{e}");
    assert!(field(e, "rpc.grpc.status_code").is_none(), "{e}");
}

/// The request id comes from the renderer's configured header, and a hostile one
/// is logged bounded and printable (it is not echoed to the client).
#[tokio::test]
async fn the_logged_request_id_follows_the_configured_header_bounded_and_printable() {
    let events = EventLog::install();
    let port = refused_port();
    let layer = || {
        BadGatewayLayer::new().renderer(
            Renderer::new().request_id_header(http::HeaderName::from_static("x-correlation-id")),
        )
    };
    let req = Request::get(format!("http://{}/", port.addr))
        .header("x-correlation-id", "corr-1")
        .header("x-request-id", "not-this-one")
        .body(Full::default())
        .unwrap();
    let _ = through(layer(), req).await;
    let long = format!("a\tb{}", "x".repeat(300));
    let req = Request::get(format!("http://{}/", port.addr))
        .header("x-correlation-id", long.as_str())
        .body(Full::default())
        .unwrap();
    let res = through(layer(), req).await;
    assert!(
        res.headers().get("x-correlation-id").is_none(),
        "a malformed id is not echoed"
    );

    let failures = failures(&events);
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert_eq!(field(&failures[0], "request_id"), Some("corr-1"));
    let logged = field(&failures[1], "request_id").unwrap();
    assert_eq!(logged.len(), 128, "{logged}");
    assert!(logged.starts_with("a?bxxx"), "{logged}");
    assert!(logged.bytes().all(|b| b.is_ascii_graphic()), "{logged}");
}

/// A gRPC call's failure logs its gRPC code, not the 200 of a trailers-only answer;
/// a failure mid-body logs the code its trailers carry.
#[tokio::test]
async fn a_grpc_failure_logs_the_grpc_code_not_the_http_200() {
    let events = EventLog::install();
    let port = refused_port();
    let grpc = |url: String| {
        Request::post(url)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::default())
            .unwrap()
    };
    let res = through(
        BadGatewayLayer::new(),
        grpc(format!("http://{}/pkg.Svc/Call", port.addr)),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "14");
    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ncontent-length: 100\r\n\r\n\0\0\0\0\x05hel";
    let upstream = Upstream::raw(reply, After::Close).await;
    let res = through(BadGatewayLayer::new(), grpc(upstream.url("/pkg.Svc/Call"))).await;
    let _ = collect(res.into_body()).await;

    let failures = failures(&events);
    assert_eq!(failures.len(), 2, "{failures:#?}");
    for e in &failures {
        assert_eq!(field(e, "rpc.grpc.status_code"), Some("14"), "{e}");
        assert!(field(e, "http.response.status_code").is_none(), "{e}");
        assert_eq!(field(e, "url.path"), Some("/pkg.Svc/Call"), "{e}");
        assert_eq!(field(e, "http.request.method"), Some("POST"), "{e}");
    }
    assert_eq!(
        field(&failures[1], "error.type"),
        Some("http_response_incomplete")
    );
}

/// Each retry event says how long the failed attempt took; the failure event
/// counts the resends and times the whole exchange.
#[tokio::test]
async fn retry_events_time_each_attempt_and_the_failure_counts_resends() {
    let events = EventLog::install();
    let port = support::blackhole_port().await;
    // The client's 150 ms connect timeout ends each attempt.
    let mut svc = ServiceBuilder::new()
        .layer(GatewayLayer::new().max_attempts(2))
        .service(support::hyper_client::<UpstreamBody<Full<Bytes>>>());
    let req = Request::get(format!("http://{}/slow", port.addr))
        .header("x-request-id", "r-9")
        .body(Full::default())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 504);

    let messages = events.messages();
    let retries: Vec<_> = messages.iter().filter(|e| e.contains("retrying")).collect();
    assert_eq!(retries.len(), 1, "{messages:#?}");
    let r = retries[0];
    assert_eq!(field(r, "error.type"), Some("connection_timeout"), "{r}");
    assert_eq!(field(r, "attempt"), Some("1"), "{r}");
    assert_eq!(field(r, "http.request.method"), Some("GET"), "{r}");
    assert_eq!(
        field(r, "request_id"),
        Some("r-9"),
        "the retry event names the request: {r}"
    );
    assert_eq!(field(r, "url.path"), Some("/slow"), "{r}");
    let port_text = port.addr.port().to_string();
    assert_eq!(field(r, "server.port"), Some(port_text.as_str()), "{r}");
    let took: u64 = field(r, "attempt_duration_ms").unwrap().parse().unwrap();
    assert!((140..2000).contains(&took), "{r}");

    let failures = failures(&events);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let e = &failures[0];
    assert_eq!(field(e, "http.request.resend_count"), Some("1"), "{e}");
    assert_eq!(field(e, "request_id"), Some("r-9"), "{e}");
    assert_eq!(field(e, "url.path"), Some("/slow"), "{e}");
    let whole: u64 = field(e, "elapsed_ms").unwrap().parse().unwrap();
    assert!(whole >= 2 * 140, "the whole exchange, both attempts: {e}");
}

/// The hook sees the request's method, path and id, for a failure before the
/// head and one in the body.
#[tokio::test]
async fn on_failure_with_request_sees_method_path_and_request_id() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let layer = BadGatewayLayer::new().on_failure_with_request(move |err, req| {
        log.lock().unwrap().push(format!(
            "{} {} {} {}",
            req.method(),
            req.path().unwrap_or("-"),
            req.request_id_for_log().unwrap_or_default(),
            err.kind()
        ));
    });
    let port = refused_port();
    let req = Request::put(format!("http://{}/a/b?q=1", port.addr))
        .header("x-request-id", "id-1")
        .body(Full::default())
        .unwrap();
    let _ = through(layer.clone(), req).await;
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
        After::Close,
    )
    .await;
    let req = Request::get(upstream.url("/c"))
        .header("x-request-id", "id-2")
        .body(Full::default())
        .unwrap();
    let res = through(layer, req).await;
    let _ = collect(res.into_body()).await;

    assert_eq!(
        *seen.lock().unwrap(),
        [
            "PUT /a/b id-1 connection_refused",
            "GET /c id-2 http_response_incomplete"
        ]
    );
}

/// The gateway's own counters: the deadline ending a wait, and the retry budget
/// refusing a retry. A recorder of the test's own (thread-local: the test's
/// runtime runs its clients on its thread).
#[tokio::test]
async fn deadline_and_retry_budget_counters_move() {
    use tower_bad_gateway::retry::{RetryBudget, RetryPolicy};
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    // The deadline (100 ms) passes before the client's connect timeout (150 ms).
    // Connecting to the hole never completes, so tokio's paused clock may
    // auto-advance: the two timers fire in their order, however slow the machine.
    let blackhole = support::blackhole_port().await;
    tokio::time::pause();
    let mut svc = ServiceBuilder::new()
        .layer(GatewayLayer::new().deadline(Duration::from_millis(100)))
        .service(support::hyper_client::<UpstreamBody<Full<Bytes>>>());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(support::get(&format!("http://{}/", blackhole.addr)))
        .await
        .unwrap();
    assert_eq!(res.status(), 504);

    // A budget with nothing in it refuses the retry of a refused connection. A
    // real socket answers here: the clock is held still, so the client's connect
    // timeout cannot pass while the refusal comes back.
    let _still = support::Frozen::hold();
    let port = refused_port();
    let empty = RetryBudget::new(0.0, 0, Duration::from_secs(10));
    let mut svc = ServiceBuilder::new()
        .layer(GatewayLayer::new().retry_policy(RetryPolicy::new().budget(empty)))
        .service(support::hyper_client::<UpstreamBody<Full<Bytes>>>());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(support::get(&format!("http://{}/", port.addr)))
        .await
        .unwrap();
    assert_eq!(res.status(), 502);

    let text = handle.render();
    let value = |series: &str| support::prometheus_value(&text, series);
    assert_eq!(
        value(r#"tower_bad_gateway_deadline_expirations{tower_bad_gateway_phase="await_head"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("tower_bad_gateway_retries_refused "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("tower_bad_gateway_retries{"),
        None,
        "no retry: {text}"
    );
}

/// The endpoint set's state changes are counted by state and endpoint: one dead
/// endpoint is ejected, probed, ejected again; it comes back, is probed and
/// restored. On a frozen clock: each ejection ends when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn endpoint_ejections_probes_and_restorations_are_counted() {
    use tower::Layer;
    use tower_bad_gateway::upstreams::{EndpointSet, HealthPolicy};
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let clock = support::Frozen::hold();
    let replica = support::Replica::start("back").await;
    replica.kill();
    let set = EndpointSet::from_urls([replica.url()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .no_jitter()
                .consecutive_failures(1)
                .base_ejection(Duration::from_millis(100)),
        );
    let svc = GatewayLayer::new()
        .upstreams(set)
        .max_attempts(1)
        .layer(support::hyper_client::<UpstreamBody<Full<Bytes>>>());
    let status = || {
        let svc = svc.clone();
        async move {
            svc.oneshot(support::get("/"))
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status().await, 502, "refused: ejected");
    clock.advance(Duration::from_millis(100)).await;
    assert_eq!(status().await, 502, "the probe is refused: ejected again");
    replica.restart().await;
    clock.advance(Duration::from_millis(200)).await;
    assert_eq!(status().await, 200, "the probe succeeds: restored");

    let text = handle.render();
    let (host, port) = (replica.addr.ip(), replica.addr.port());
    let value = |state: &str| {
        let series = format!(
            r#"tower_bad_gateway_endpoint_state_changes{{tower_bad_gateway_endpoint_state="{state}",server_address="{host}",server_port="{port}"}}"#
        );
        support::prometheus_value(&text, &series)
    };
    assert_eq!(value("ejected"), Some(2.0), "{text}");
    assert_eq!(value("probing"), Some(2.0), "{text}");
    assert_eq!(value("restored"), Some(1.0), "{text}");
}

/// An upstream's error answer that the gateway intercepts is still the
/// upstream's failure: one event, the `intercepted` counter and the hook.
#[tokio::test]
async fn an_intercepted_upstream_500_is_reported_by_event_counter_and_hook() {
    use tower::Layer;
    use tower_bad_gateway::ResponsePolicy;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let events = EventLog::install();
    let upstream = Upstream::raw(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\ntrace",
        After::Close,
    )
    .await;
    let hooked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = hooked.clone();
    let layer = BadGatewayLayer::new()
        .response_policy(ResponsePolicy::new().intercept_statuses([500]))
        .on_intercept(move |status, req| {
            log.lock()
                .unwrap()
                .push(format!("{} {}", status.as_u16(), req.path().unwrap_or("-")));
        });
    let svc = GatewayLayer::new()
        .bad_gateway(layer)
        .max_attempts(1)
        .layer(support::hyper_client::<UpstreamBody<Full<Bytes>>>());
    let req = Request::get(upstream.url("/orders"))
        .header("x-request-id", "i-1")
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 500);
    let messages = events.messages();
    let event = messages
        .iter()
        .find(|e| e.contains("upstream error answer intercepted"))
        .unwrap_or_else(|| panic!("no event: {messages:#?}"));
    assert_eq!(
        field(event, "http.response.status_code"),
        Some("500"),
        "{event}"
    );
    assert_eq!(field(event, "request_id"), Some("i-1"), "{event}");
    assert_eq!(field(event, "url.path"), Some("/orders"), "{event}");
    assert_eq!(*hooked.lock().unwrap(), ["500 /orders"]);
    let text = handle.render();
    assert!(
        text.contains(r#"tower_bad_gateway_intercepted{http_response_status_code="500"} 1"#),
        "{text}"
    );
}
