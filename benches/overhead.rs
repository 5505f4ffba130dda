//! What the middleware adds to every request, in one process: time (criterion) and
//! heap allocations (a counting global allocator), side by side.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! Futures are polled directly with a no-op waker inside the runtime's context
//! (every service here answers at once), so the figures are the middleware's own
//! cost, not the scheduler's.

mod common;

use axum::error_handling::HandleErrorLayer;
use bytes::Bytes;
use common::{CountingRecorder, allocations, once, request, upstream};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use std::hint::black_box;
use std::time::Duration;
use tower::{BoxError, Layer, ServiceBuilder};
use tower_bad_gateway::render::{Renderer, RequestInfo};
use tower_bad_gateway::retry::{ReplayBody, RetryPolicy};
use tower_bad_gateway::write_timeout::UploadBody;
use tower_bad_gateway::{BadGatewayLayer, GatewayLayer};

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

/// The retry policy a user writes for `tower::retry` today: clone the request
/// (its body must be in memory), retry errors up to 3 attempts.
#[derive(Clone)]
struct HandPolicy(usize);

impl<E> tower::retry::Policy<Request<Full<Bytes>>, Response<Full<Bytes>>, E> for HandPolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Full<Bytes>>, E>,
    ) -> Option<Self::Future> {
        (result.is_err() && self.0 > 1).then(|| {
            self.0 -= 1;
            std::future::ready(())
        })
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = rt.enter();
    let bodies = [
        ("empty", Bytes::new()),
        ("16KiB", Bytes::from(vec![b'x'; 16 * 1024])),
    ];
    let mut report = Vec::new();

    // Building the request is the same for all: measure it to subtract it.
    let base = allocations(|| drop(black_box(request(&bodies[0].1))));

    let mut group = c.benchmark_group("success_path");
    for (name, body) in &bodies {
        let mut bare = tower::service_fn(upstream::<Full<Bytes>>);
        group.bench_function(format!("bare/{name}"), |b| b.iter(|| once(&mut bare, body)));
        report.push((
            format!("bare/{name}"),
            allocations(|| {
                black_box(once(&mut bare, body));
            }) - base,
        ));

        let mut bad_gateway =
            BadGatewayLayer::new().layer(tower::service_fn(upstream::<Full<Bytes>>));
        group.bench_function(format!("bad_gateway/{name}"), |b| {
            b.iter(|| once(&mut bad_gateway, body))
        });
        report.push((
            format!("bad_gateway/{name}"),
            allocations(|| {
                black_box(once(&mut bad_gateway, body));
            }) - base,
        ));

        let mut full = GatewayLayer::new()
            .max_attempts(3)
            .attempt_timeout(Duration::from_secs(10))
            .body_idle_timeout(Duration::from_secs(30))
            .deadline(Duration::from_secs(30))
            .retry_policy(RetryPolicy::new())
            .layer(tower::service_fn(
                upstream::<UploadBody<ReplayBody<Full<Bytes>>>>,
            ));
        group.bench_function(format!("gateway_layer/{name}"), |b| {
            b.iter(|| once(&mut full, body))
        });
        report.push((
            format!("gateway_layer/{name}"),
            allocations(|| {
                black_box(once(&mut full, body));
            }) - base,
        ));

        // The same with a `metrics` recorder installed (a counting one: an atomic
        // add per sample), against the row above, where none is (the facade's
        // no-op recorder).
        {
            let recorder = CountingRecorder::default();
            let _local = metrics::set_default_local_recorder(&recorder);
            let mut recorded = GatewayLayer::new()
                .max_attempts(3)
                .attempt_timeout(Duration::from_secs(10))
                .body_idle_timeout(Duration::from_secs(30))
                .deadline(Duration::from_secs(30))
                .retry_policy(RetryPolicy::new())
                .layer(tower::service_fn(
                    upstream::<UploadBody<ReplayBody<Full<Bytes>>>>,
                ));
            group.bench_function(format!("gateway_layer_recorder/{name}"), |b| {
                b.iter(|| once(&mut recorded, body))
            });
            report.push((
                format!("gateway_layer_recorder/{name}"),
                allocations(|| {
                    black_box(once(&mut recorded, body));
                }) - base,
            ));
            assert!(recorder.samples() > 0, "the recorder saw nothing");
        }

        // The same without a deadline: what the hand-built stack below does (an
        // attempt timeout, retries, an answer for every failure), and more.
        let mut no_deadline = GatewayLayer::new()
            .max_attempts(3)
            .attempt_timeout(Duration::from_secs(10))
            .body_idle_timeout(Duration::from_secs(30))
            .retry_policy(RetryPolicy::new())
            .layer(tower::service_fn(
                upstream::<UploadBody<ReplayBody<Full<Bytes>>>>,
            ));
        group.bench_function(format!("gateway_layer_no_deadline/{name}"), |b| {
            b.iter(|| once(&mut no_deadline, body))
        });
        report.push((
            format!("gateway_layer_no_deadline/{name}"),
            allocations(|| {
                black_box(once(&mut no_deadline, body));
            }) - base,
        ));

        let mut by_hand = ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|err: BoxError| async move {
                if err.is::<tower::timeout::error::Elapsed>() {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream timed out".to_owned())
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream failed".to_owned())
                }
            }))
            .layer(tower::retry::RetryLayer::new(HandPolicy(3)))
            .timeout(Duration::from_secs(10))
            .service(tower::service_fn(upstream::<Full<Bytes>>));
        group.bench_function(format!("hand_built_tower/{name}"), |b| {
            b.iter(|| once(&mut by_hand, body))
        });
        report.push((
            format!("hand_built_tower/{name}"),
            allocations(|| {
                black_box(once(&mut by_hand, body));
            }) - base,
        ));
    }
    group.finish();

    // The failure path: a real connect error from hyper-util (a refused port on
    // loopback), classified and rendered.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = refused.local_addr().unwrap();
    drop(refused);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let error: BoxError = rt
        .block_on(client.get(format!("http://{addr}/").parse().unwrap()))
        .expect_err("nothing listens there")
        .into();
    let classifier = tower_bad_gateway::classify::Classifier::new();
    let renderer = Renderer::new();
    let mut group = c.benchmark_group("failure_path");
    group.bench_function("classify_hyper_connect_error", |b| {
        b.iter(|| classifier.classify(black_box(&*error), tower_bad_gateway::Phase::AwaitHead))
    });
    let err = classifier.classify(&*error, tower_bad_gateway::Phase::AwaitHead);
    assert_eq!(err.kind(), tower_bad_gateway::ErrorKind::ConnectionRefused);
    report.push((
        "classify_hyper_connect_error".into(),
        allocations(|| drop(classifier.classify(&*error, tower_bad_gateway::Phase::AwaitHead))),
    ));
    for (name, accept, content_type) in [
        ("text", "*/*", None),
        ("problem_json", "application/json", None),
        ("grpc", "*/*", Some("application/grpc")),
    ] {
        let mut req = Request::get("/").header("accept", accept);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let info = RequestInfo::from_request(&req.body(()).unwrap());
        group.bench_function(format!("render_502/{name}"), |b| {
            b.iter(|| renderer.render(black_box(&err), &info))
        });
        report.push((
            format!("render_502/{name}"),
            allocations(|| drop(renderer.render(&err, &info))),
        ));
    }
    group.finish();

    // What any answer with headers, and any response extension, costs in `http`'s
    // own types: the floor under a rendered 502's allocations.
    report.push((
        "floor: a response with 3 headers".into(),
        allocations(|| {
            let mut res = Response::new(Full::new(Bytes::new()));
            let headers = res.headers_mut();
            headers.reserve(3);
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            headers.insert(
                http::HeaderName::from_static("proxy-status"),
                HeaderValue::from_static("x"),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            drop(black_box(res));
        }),
    ));
    report.push((
        "floor: one response extension".into(),
        allocations(|| {
            let mut res = Response::new(());
            res.extensions_mut().insert(err.clone());
            drop(black_box(res));
        }),
    ));

    println!("\nheap allocations per request (request construction subtracted):");
    for (name, allocs) in report {
        println!("  {name:<34} {allocs:>6.2}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
