//! What the benches share: a request as hyper hands it over, an upstream that
//! answers at once, polling without a runtime's scheduler, a global allocator
//! that counts, and endpoint sets of any size.

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tower::BoxError;

/// Polls a future that must be ready at once.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the benchmarked service was not ready at once"),
    }
}

/// Reads a body that is all there at once.
pub fn drain<B: Body>(body: B) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut body = pin!(body);
    let mut n = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => n += usize::from(frame.is_data()),
            Poll::Ready(None) => return n,
            Poll::Ready(Some(Err(_))) => panic!("body error"),
            Poll::Pending => panic!("body not ready"),
        }
    }
}

/// A request as hyper hands it over: shared header bytes, a small body.
pub fn request(body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://upstream.internal:8080/items")
        .body(Full::new(body.clone()))
        .unwrap();
    let headers = req.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    req
}

/// The upstream: reads the request body, answers 200 with a small body.
pub fn upstream<B: Body>(
    req: Request<B>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, BoxError>> {
    black_box(drain(req.into_body()));
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"ok\":true}",
    )))))
}

/// A cheap `metrics` recorder: every counter increment and histogram sample adds
/// one to a shared atomic, whatever its key (what an exporter does at the least).
#[allow(dead_code)] // not every bench uses it
#[derive(Default)]
pub struct CountingRecorder(std::sync::Arc<Samples>);

#[allow(dead_code)]
#[derive(Default)]
pub struct Samples(std::sync::atomic::AtomicU64);

#[allow(dead_code)]
impl CountingRecorder {
    pub fn samples(&self) -> u64 {
        self.0.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl metrics::CounterFn for Samples {
    fn increment(&self, value: u64) {
        self.0
            .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::HistogramFn for Samples {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for Samples {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, _: f64) {}
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.0.clone())
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.0.clone())
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.0.clone())
    }
}

/// A global allocator that counts allocations (and reallocations), for
/// [`allocations`]. A bench installs it with
/// `#[global_allocator] static GLOBAL: common::CountingAlloc = common::CountingAlloc;`.
#[allow(dead_code)] // not every bench counts allocations
pub struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations per call of `f`, counted by [`CountingAlloc`] (so only with no
/// other thread running: the counter is process-wide).
#[allow(dead_code)]
pub fn allocations<F: FnMut()>(mut f: F) -> f64 {
    use std::sync::atomic::Ordering;
    const N: u64 = 10_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..N {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

/// One request through `svc`, body drained: what a server does per request.
#[allow(dead_code)]
pub fn once<S, B>(svc: &mut S, body: &Bytes) -> usize
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    let res = now(svc.call(request(body))).unwrap();
    drain(res.into_body())
}

/// `n` endpoints: `http://10.0.{i/256}.{i%256}:8080`.
#[allow(dead_code)]
pub fn set_of(n: usize) -> tower_bad_gateway::upstreams::EndpointSet {
    tower_bad_gateway::upstreams::EndpointSet::from_urls(
        (0..n).map(|i| format!("http://10.0.{}.{}:8080", i / 256, i % 256)),
    )
    .unwrap()
}
