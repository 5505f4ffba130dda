//! Success-path cost of `RetryLayer`: a request through an inner service that reads
//! the whole request body and answers at once, bare and behind the layer, with an
//! empty and a 16 KiB body (which the layer buffers for replay).
//!
//! ```text
//! cargo bench --bench retry
//! ```

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use tower::{Layer, Service, ServiceExt};
use tower_bad_gateway::retry::{RetryLayer, RetryPolicy};

/// An upstream that reads the request body and answers 200 at once.
async fn upstream<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let body = req.into_body().collect().await.unwrap().to_bytes();
    std::hint::black_box(body.len());
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("http://upstream.test/items")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("retry_success_path");
    for (name, body) in [
        ("empty", Bytes::new()),
        ("16KiB", Bytes::from(vec![b'x'; 16 * 1024])),
    ] {
        group.bench_with_input(BenchmarkId::new("bare", name), &body, |b, body| {
            let svc = tower::service_fn(upstream::<Full<Bytes>>);
            b.to_async(&rt)
                .iter(|| async move { svc.oneshot(request(body)).await.unwrap() });
        });
        group.bench_with_input(BenchmarkId::new("retry_layer", name), &body, |b, body| {
            let svc = RetryLayer::new(RetryPolicy::new()).layer(tower::service_fn(upstream));
            b.to_async(&rt).iter(|| {
                let mut svc = svc.clone();
                async move {
                    svc.ready()
                        .await
                        .unwrap()
                        .call(request(body))
                        .await
                        .unwrap()
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
