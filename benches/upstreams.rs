//! Endpoint sets (issue 13): what picking an endpoint costs per request, at 3,
//! 100 and 10,000 endpoints, alone and with the other core hammering the same
//! set, and what `GatewayLayer::upstreams` adds to the whole stack. Time
//! (criterion) and heap allocations (a counting global allocator), as in
//! `benches/overhead.rs`.
//!
//! ```text
//! cargo bench --bench upstreams -- --measurement-time 3 --warm-up-time 1
//! ```
//!
//! The pick is crate-private; its public path is `Upstreams::new(inner, set)`:
//! `poll_ready` picks (power of two choices on in-flight counts), `call` rewrites
//! the URI, the future records the outcome. The inner service answers at once
//! (`common::upstream`), so `pick/N − pick/bare` is the middleware's own cost.
//! Futures are polled directly with a no-op waker inside the runtime's context.
//!
//! `pick/contended/N`: one background thread sends requests through a clone of
//! the same `Upstreams` (same set, same in-flight counters) in a loop for as long
//! as the row runs; the main thread measures. `pick/other_set/3` is the control:
//! the same background load through a set of its own. The background thread's
//! throughput is printed at the end, to show it was running.
//!
//! Then, outside criterion, the rows are run again interleaved in 100 ms rounds
//! (15 rounds, the order rotating): the single-threaded rows together, and for 3
//! and 10,000 endpoints the three ways of running (alone, contended, other set).
//! Each ratio is taken within a round and the median printed, so that a change in
//! the machine's load between two rows does not skew it. Deterministic
//! instruction counts for the same stacks: `benches/instructions.rs`.

mod common;

use bytes::Bytes;
use common::{allocations, once, request, set_of, upstream};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower::{Layer, Service};
use tower_bad_gateway::GatewayLayer;
use tower_bad_gateway::retry::ReplayBody;
use tower_bad_gateway::upstreams::Upstreams;
use tower_bad_gateway::write_timeout::UploadBody;

#[global_allocator]
static GLOBAL: common::CountingAlloc = common::CountingAlloc;

const SIZES: [usize; 3] = [3, 100, 10_000];

/// Runs `f` on this thread while another thread sends requests through `theirs`
/// in a loop; returns what `f` returns and the other thread's requests per second.
fn alongside<S, B, T>(mut theirs: S, f: impl FnOnce() -> T) -> (T, f64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Send,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let hammer = scope.spawn(move || {
            let body = Bytes::new();
            let started = Instant::now();
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(once(&mut theirs, &body));
                done += 1;
            }
            done as f64 / started.elapsed().as_secs_f64()
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        (out, hammer.join().unwrap())
    })
}

/// Nanoseconds per request through `svc`, over at least `time`.
fn timed<S, B>(svc: &mut S, time: Duration) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let body = Bytes::new();
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        for _ in 0..256 {
            black_box(once(svc, &body));
        }
        done += 256;
        let elapsed = started.elapsed();
        if elapsed >= time {
            return elapsed.as_nanos() as f64 / done as f64;
        }
    }
}

/// One interleaved round of one row: nanoseconds per request.
type Round<'a> = Box<dyn FnMut() -> f64 + 'a>;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = rt.enter();
    let body = Bytes::new();
    let mut report = Vec::new();
    let mut background = Vec::new();

    // Building the request is the same for all: measure it to subtract it.
    let base = allocations(|| drop(black_box(request(&body))));

    let mut group = c.benchmark_group("pick");
    let mut bare = tower::service_fn(upstream::<Full<Bytes>>);
    group.bench_function("bare", |b| b.iter(|| once(&mut bare, &body)));
    report.push((
        "pick/bare".to_owned(),
        allocations(|| {
            black_box(once(&mut bare, &body));
        }) - base,
    ));

    let services: Vec<_> = SIZES
        .iter()
        .map(|&n| {
            let svc = Upstreams::new(tower::service_fn(upstream::<Full<Bytes>>), set_of(n));
            (n, svc)
        })
        .collect();

    for (n, svc) in &services {
        let mut svc = svc.clone();
        // Every request goes to one of the set's endpoints.
        let probe = tower::service_fn(|req: Request<Full<Bytes>>| {
            let host = req.uri().host().unwrap_or_default().to_owned();
            assert!(host.starts_with("10.0."), "{host}");
            assert_eq!(req.uri().path(), "/items");
            upstream(req)
        });
        once(&mut Upstreams::new(probe, set_of(*n)), &body);

        group.bench_function(n.to_string(), |b| b.iter(|| once(&mut svc, &body)));
        report.push((
            format!("pick/{n}"),
            allocations(|| {
                black_box(once(&mut svc, &body));
            }) - base,
        ));
    }

    // `contended/N`: the background thread uses a clone (the same set). The
    // control, `other_set/3`: the same load on the other core, but through a set
    // of its own, so only the process-wide random sequence is shared; what
    // `contended/3` costs beyond it is the shared set's cache lines.
    let other = Upstreams::new(tower::service_fn(upstream::<Full<Bytes>>), set_of(3));
    let rows = services
        .iter()
        .map(|(n, svc)| (format!("contended/{n}"), svc.clone(), svc.clone()))
        .chain([("other_set/3".to_owned(), services[0].1.clone(), other)]);
    for (name, mut svc, theirs) in rows {
        let ((), rate) = alongside(theirs, || {
            group.bench_function(&name, |b| b.iter(|| once(&mut svc, &body)));
        });
        background.push((format!("pick/{name}"), rate));
    }
    group.finish();

    // The whole stack, defaults, with and without a set of 3, over the upstream
    // of `benches/overhead.rs`.
    let client = || tower::service_fn(upstream::<UploadBody<ReplayBody<Full<Bytes>>>>);
    let mut group = c.benchmark_group("gateway");
    let mut plain = GatewayLayer::new().layer(client());
    group.bench_function("no_set", |b| b.iter(|| once(&mut plain, &body)));
    report.push((
        "gateway/no_set".to_owned(),
        allocations(|| {
            black_box(once(&mut plain, &body));
        }) - base,
    ));
    let mut with_set = GatewayLayer::new().upstreams(set_of(3)).layer(client());
    group.bench_function("set_of_3", |b| b.iter(|| once(&mut with_set, &body)));
    report.push((
        "gateway/set_of_3".to_owned(),
        allocations(|| {
            black_box(once(&mut with_set, &body));
        }) - base,
    ));
    group.finish();

    // The rows above run one after the other, seconds apart, and the load the
    // other engineers put on this machine changes in between. Here the rows'
    // services are interleaved, 100 ms each, 15 rounds (the order rotating), and
    // each ratio is taken within a round; the median is printed.
    let time = Duration::from_millis(100);
    let mut stacks: Vec<(&str, Round)> = vec![
        ("pick/bare", Box::new(|| timed(&mut bare, time))),
        ("pick/3", {
            let mut svc = services[0].1.clone();
            Box::new(move || timed(&mut svc, time))
        }),
        ("pick/100", {
            let mut svc = services[1].1.clone();
            Box::new(move || timed(&mut svc, time))
        }),
        ("pick/10000", {
            let mut svc = services[2].1.clone();
            Box::new(move || timed(&mut svc, time))
        }),
        ("gateway/no_set", Box::new(|| timed(&mut plain, time))),
        ("gateway/set_of_3", Box::new(|| timed(&mut with_set, time))),
    ];
    let mut ns = vec![Vec::new(); stacks.len()];
    let k = stacks.len();
    for round in 0..15 {
        for i in (0..k).map(|i| (i + round) % k) {
            ns[i].push((stacks[i].1)());
        }
    }
    let names: Vec<&str> = stacks.iter().map(|(name, _)| *name).collect();
    drop(stacks);
    let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(a, b)| a / b).collect());
    println!("\ninterleaved rounds, single-threaded, ns per request (medians of 15):");
    for (name, xs) in names.iter().zip(&ns) {
        println!("  {name:<24} {:>8.0}", median(xs.clone()));
    }
    for (a, b) in [(1, 0), (2, 1), (3, 1), (5, 4)] {
        println!(
            "  {:<18} / {:<18} {:>6.3}",
            names[a],
            names[b],
            ratio(&ns[a], &ns[b])
        );
    }

    println!(
        "\ninterleaved rounds, both cores, ns per request on the measuring thread (medians of 15):"
    );
    println!(
        "  set      single  contended  other set   contended/single  other/single  contended/other"
    );
    for (n, svc) in [&services[0], &services[2]] {
        let own = || Upstreams::new(tower::service_fn(upstream::<Full<Bytes>>), set_of(*n));
        let (mut single, mut contended, mut other) = (Vec::new(), Vec::new(), Vec::new());
        let mut mine = svc.clone();
        for round in 0..15 {
            for which in (0..3).map(|i| (i + round) % 3) {
                match which {
                    0 => single.push(timed(&mut mine, time)),
                    1 => contended.push(alongside(svc.clone(), || timed(&mut mine, time)).0),
                    _ => other.push(alongside(own(), || timed(&mut mine, time)).0),
                }
            }
        }
        println!(
            "  {n:<6} {:>8.0} {:>10.0} {:>10.0} {:>18.2} {:>13.2} {:>16.2}",
            median(single.clone()),
            median(contended.clone()),
            median(other.clone()),
            ratio(&contended, &single),
            ratio(&other, &single),
            ratio(&contended, &other),
        );
    }

    println!("\nheap allocations per request (request construction subtracted):");
    for (name, allocs) in report {
        println!("  {name:<24} {allocs:>6.2}");
    }
    println!("(contended rows run the same code as the single-threaded ones; not counted)");
    println!("\nbackground thread during the contended rows, requests/s:");
    for (name, rate) in background {
        println!("  {name:<24} {rate:>12.0}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
