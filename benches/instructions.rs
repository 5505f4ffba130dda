//! N requests through one stack, for callgrind: instructions per request are
//! (total(N) - total(0)) / N, a figure that does not depend on the machine's load.
//!
//! ```text
//! cargo bench --bench instructions --no-run     # prints nothing; builds target/release/deps/instructions-*
//! for n in 0 20000; do
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/instructions-* gateway $n
//! done
//! ```
//!
//! Stacks: `bare`, `bad_gateway`, `gateway`, `gateway_no_deadline` (the requests of
//! `benches/overhead.rs`, empty body), `gateway_recorder` (`gateway` with a
//! counting `metrics` recorder installed); for endpoint sets (`benches/upstreams.rs`):
//! `upstreams_3` and `upstreams_10000` (`Upstreams` over the bare service, a set of
//! 3 or 10,000 endpoints), `gateway_default` and `gateway_set_of_3`
//! (`GatewayLayer::new()` without and with a set of 3), `upstreams_timeout_3` and
//! `timeout_upstreams_3` (a set of 3 and a 10 s `TimeoutLayer` composed by hand,
//! Upstreams above Timeout and the other way round). Building a set is in both
//! runs, so the subtraction removes it, and so are a thousand warm-up requests
//! (120,000 for the set of 10,000, so that each endpoint's metric key is built
//! before the count: the steady state). Under `cargo bench` it runs each once.
mod common;

use bytes::Bytes;
use common::{CountingRecorder, drain, now, request, set_of, upstream};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use std::hint::black_box;
use std::time::Duration;
use tower::{Layer, Service};
use tower_bad_gateway::retry::{HedgePolicy, ReplayBody, RetryPolicy};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::upstreams::Upstreams;
use tower_bad_gateway::write_timeout::UploadBody;
use tower_bad_gateway::{BadGatewayLayer, GatewayLayer};

fn run<S, B>(svc: S, n: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    run_warm(svc, n, 1_000);
}

/// `warm` requests first, in both runs (so the subtraction removes them): each
/// label set's metric key is built once, on its first use, and kept; the steady
/// state is what a request costs.
fn run_warm<S, B>(mut svc: S, n: usize, warm: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    for _ in 0..warm + n {
        now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
        let res = now(svc.call(request(&Bytes::new()))).unwrap();
        black_box(drain(res.into_body()));
    }
}

/// `svc` given `GET`s instead of the bench's `POST`s.
fn get<S: Service<Request<Full<Bytes>>>>(
    svc: S,
) -> impl Service<Request<Full<Bytes>>, Response = S::Response, Error = S::Error> {
    tower::util::MapRequest::new(svc, |mut req: Request<Full<Bytes>>| {
        *req.method_mut() = http::Method::GET;
        req
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (stacks, n): (Vec<&str>, usize) = match args.as_slice() {
        [which, n] => (
            vec![which.as_str()],
            n.parse().expect("a number of requests"),
        ),
        // `cargo bench` passes `--bench`: run every stack once, as a smoke test.
        _ => (
            vec![
                "bare",
                "bad_gateway",
                "gateway",
                "gateway_no_deadline",
                "gateway_recorder",
                "upstreams_3",
                "upstreams_10000",
                "gateway_default",
                "gateway_set_of_3",
                "gateway_set_of_3_get",
                "gateway_hedge_set_of_3",
                "upstreams_timeout_3",
                "timeout_upstreams_3",
            ],
            1,
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let client = || tower::service_fn(upstream::<UploadBody<ReplayBody<Full<Bytes>>>>);
    for which in stacks {
        match which {
            "bare" => run(tower::service_fn(upstream::<Full<Bytes>>), n),
            "bad_gateway" => run(
                BadGatewayLayer::new().layer(tower::service_fn(upstream::<Full<Bytes>>)),
                n,
            ),
            "gateway" => run(
                GatewayLayer::new()
                    .max_attempts(3)
                    .attempt_timeout(Duration::from_secs(10))
                    .body_idle_timeout(Duration::from_secs(30))
                    .deadline(Duration::from_secs(30))
                    .retry_policy(RetryPolicy::new())
                    .layer(client()),
                n,
            ),
            "gateway_recorder" => {
                let recorder = CountingRecorder::default();
                let _local = metrics::set_default_local_recorder(&recorder);
                run(
                    GatewayLayer::new()
                        .max_attempts(3)
                        .attempt_timeout(Duration::from_secs(10))
                        .body_idle_timeout(Duration::from_secs(30))
                        .deadline(Duration::from_secs(30))
                        .retry_policy(RetryPolicy::new())
                        .layer(client()),
                    n,
                );
                assert!(n == 0 || recorder.samples() > 0, "the recorder saw nothing");
            }
            "gateway_no_deadline" => run(
                GatewayLayer::new()
                    .max_attempts(3)
                    .attempt_timeout(Duration::from_secs(10))
                    .body_idle_timeout(Duration::from_secs(30))
                    .retry_policy(RetryPolicy::new())
                    .layer(client()),
                n,
            ),
            "upstreams_3" => run(
                Upstreams::new(tower::service_fn(upstream::<Full<Bytes>>), set_of(3)),
                n,
            ),
            // Warm enough that every endpoint's key was built (e^-12 of them not).
            "upstreams_10000" => run_warm(
                Upstreams::new(tower::service_fn(upstream::<Full<Bytes>>), set_of(10_000)),
                n,
                120_000,
            ),
            "gateway_default" => run(GatewayLayer::new().layer(client()), n),
            "gateway_set_of_3" => run(GatewayLayer::new().upstreams(set_of(3)).layer(client()), n),
            // The same with `GET`s, and hedged after 50 ms (none is: each answers at
            // once): what a hedgeable request costs when no hedge is sent.
            "gateway_set_of_3_get" => run(
                get(GatewayLayer::new().upstreams(set_of(3)).layer(client())),
                n,
            ),
            "gateway_hedge_set_of_3" => run(
                get(GatewayLayer::new()
                    .upstreams(set_of(3))
                    .hedge(HedgePolicy::after(Duration::from_millis(50)))
                    .layer(client())),
                n,
            ),
            "upstreams_timeout_3" => run(
                Upstreams::new(
                    TimeoutLayer::new()
                        .attempt_timeout(Duration::from_secs(10))
                        .layer(tower::service_fn(upstream::<Full<Bytes>>)),
                    set_of(3),
                ),
                n,
            ),
            "timeout_upstreams_3" => run(
                TimeoutLayer::new()
                    .attempt_timeout(Duration::from_secs(10))
                    .layer(Upstreams::new(
                        tower::service_fn(upstream::<Full<Bytes>>),
                        set_of(3),
                    )),
                n,
            ),
            other => panic!("unknown stack {other}"),
        }
    }
}
