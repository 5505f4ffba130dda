//! Hedged requests over real loopback replicas, on a frozen clock: a slow attempt
//! is hedged to another replica and the loser's connection is closed, a `POST` is
//! never hedged, a failure or a retryable answer never wins over an attempt in
//! flight, a cancelled loser does not eject its endpoint, and the budget caps the
//! extra load when every replica is slow.

use crate::support::{Counting, Frozen, TestBody, eventually, hyper_client, within};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt};
use tower_bad_gateway::retry::{HedgePolicy, RetryPolicy};
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy};
use tower_bad_gateway::{Attempts, GatewayLayer, UpstreamBody};

type Body = tower_bad_gateway::bad_gateway::ResponseBody<
    tower_bad_gateway::timeout::TimeoutBody<hyper::body::Incoming>,
>;

type Client = Counting<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        UpstreamBody<TestBody>,
    >,
>;

/// What a [`Slow`] replica does with each request it reads.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// Answers with this status after the wait (on tokio's clock).
    Answer(u16, Duration),
    /// Resets the connection after the wait.
    Reset(Duration),
    /// Answers `200`, after the wait if the request carries `x-slow`, else at once.
    SlowIfMarked(Duration),
    /// Answers `200` with `grpc-status: 14` (`UNAVAILABLE`) and this
    /// `grpc-retry-pushback-ms`, after the wait.
    Unavailable(&'static str, Duration),
}

/// A raw HTTP/1.1 replica: reads each request head, then does what it is told;
/// counts the requests it read and the connections closed by the client while
/// it was still working on a request (a cancelled attempt).
struct Slow {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    received: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Slow {
    async fn start(then: Then) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let then = Arc::new(Mutex::new(then));
        let received = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let task = tokio::spawn({
            let (then, heads) = (then.clone(), heads.clone());
            let (received, cancelled) = (received.clone(), cancelled.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (then, heads) = (then.clone(), heads.clone());
                    let (received, cancelled) = (received.clone(), cancelled.clone());
                    tokio::spawn(serve(stream, then, heads, received, cancelled));
                }
            }
        });
        Self {
            addr,
            heads,
            received,
            cancelled,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The heads of the requests read, lower case.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    then: Arc<Mutex<Then>>,
    heads: Arc<Mutex<Vec<String>>>,
    received: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        // One request head (the tests send no bodies).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let marked = head.contains("\r\nx-slow:");
        heads.lock().unwrap().push(head);
        buf.clear();
        received.fetch_add(1, Ordering::SeqCst);
        let then = *then.lock().unwrap();
        let wait = match then {
            Then::Answer(_, wait) | Then::Reset(wait) | Then::Unavailable(_, wait) => wait,
            Then::SlowIfMarked(wait) if marked => wait,
            Then::SlowIfMarked(_) => Duration::ZERO,
        };
        // Waiting, and watching for the client closing the connection.
        let mut probe = [0u8; 1];
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stream.read(&mut probe) => {
                cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        match then {
            Then::Unavailable(pushback, _) => {
                let head = format!(
                    "HTTP/1.1 200 X\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n\
                     grpc-retry-pushback-ms: {pushback}\r\ncontent-length: 0\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
            }
            Then::SlowIfMarked(_) => {
                let head = "HTTP/1.1 200 X\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
            }
            Then::Answer(status, _) => {
                let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
            }
            Then::Reset(_) => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
        }
    }
}

fn get() -> Request<TestBody> {
    Request::get("/items").body(Full::default()).unwrap()
}

/// What came back, and how many attempts it took.
async fn answer(pending: tokio::task::JoinHandle<http::Response<Body>>) -> (StatusCode, u32) {
    let res = within("the answer", pending).await.unwrap();
    let attempts = Attempts::of(&res);
    let status = res.status();
    let _ = res.into_body().collect().await;
    (status, attempts)
}

/// A gateway over `set` hedging after 50 ms (no budget, unless `policy` says),
/// the client counted.
fn gateway(
    set: &EndpointSet,
    hedge: HedgePolicy,
    retry: RetryPolicy,
) -> (tower_bad_gateway::Gateway<Client>, Client) {
    let client = Counting::new(hyper_client());
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(retry.no_backoff())
        .hedge(hedge)
        .layer(client.clone());
    (svc, client)
}

fn after_50ms() -> HedgePolicy {
    HedgePolicy::after(Duration::from_millis(50)).no_budget()
}

/// `slow` alone in the set for the first attempt, then `fast` joins: the hedge,
/// which avoids the endpoint in flight, can only go to `fast`.
async fn first_attempt_to(
    slow: &Slow,
    fast: &Slow,
    set: &EndpointSet,
    svc: &tower_bad_gateway::Gateway<Client>,
    req: Request<TestBody>,
) -> tokio::task::JoinHandle<http::Response<Body>> {
    let before = slow.received();
    let pending = tokio::spawn(svc.clone().oneshot(req).map(Result::unwrap));
    eventually("the first attempt reaching the slow replica", || {
        slow.received() > before
    })
    .await;
    set.replace([slow.url().parse().unwrap(), fast.url().parse().unwrap()])
        .unwrap();
    pending
}

/// A replica that answers after a second, one that answers at once, and a set of
/// the slow one alone: the first attempt's (see [`first_attempt_to`]).
async fn slow_and_fast() -> (Slow, Slow, EndpointSet) {
    let slow = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    let fast = Slow::start(Then::Answer(200, Duration::ZERO)).await;
    let set = EndpointSet::from_urls([slow.url()]).unwrap();
    (slow, fast, set)
}

use futures_util::FutureExt;

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_hedged_to_another_replica_which_wins_and_the_loser_is_closed() {
    let clock = Frozen::hold();
    let slow = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    let fast = Slow::start(Then::Answer(200, Duration::ZERO)).await;
    // One failure would eject: a cancelled loser must not count as one.
    let set = EndpointSet::from_urls([slow.url()])
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(1).no_jitter());
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new());

    let pending = first_attempt_to(&slow, &fast, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(49)).await;
    assert_eq!(client.calls(), 1, "no hedge before its delay");
    clock.advance(Duration::from_millis(1)).await;
    let (status, attempts) = answer(pending).await;
    assert_eq!(status, 200);
    assert_eq!(attempts, 2, "the hedge's answer, the second attempt");
    assert_eq!(fast.received(), 1, "the hedge went to the other replica");
    eventually("the slow replica seeing its connection closed", || {
        slow.cancelled() == 1
    })
    .await;
    let health = set.health();
    assert!(
        health.iter().all(|(_, h)| *h == Health::Healthy),
        "a cancelled loser ejects nothing: {health:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_is_not_hedged() {
    let clock = Frozen::hold();
    let fast = Slow::start(Then::Answer(200, Duration::from_millis(10))).await;
    let other = Slow::start(Then::Answer(200, Duration::ZERO)).await;
    let set = EndpointSet::from_urls([fast.url()]).unwrap();
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new());
    let pending = first_attempt_to(&fast, &other, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(10)).await;
    let (status, attempts) = answer(pending).await;
    assert_eq!((status, attempts), (StatusCode::OK, 1));
    clock.advance(Duration::from_millis(100)).await;
    assert_eq!(client.calls(), 1, "no hedge after the answer");
    assert_eq!(other.received(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let clock = Frozen::hold();
    let (slow, fast, set) = slow_and_fast().await;
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new());
    let post = Request::post("/orders").body(Full::default()).unwrap();
    let pending = first_attempt_to(&slow, &fast, &set, &svc, post).await;
    for _ in 0..20 {
        clock.advance(Duration::from_millis(50)).await;
    }
    let (status, attempts) = answer(pending).await;
    assert_eq!((status, attempts), (StatusCode::OK, 1));
    assert_eq!(client.calls(), 1, "sent exactly once");
    assert_eq!(fast.received(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_in_flight_never_wins_over_the_hedge() {
    let clock = Frozen::hold();
    // The first attempt's connection is reset at 100 ms; the hedge, sent at 50 ms,
    // answers at 150 ms.
    let resets = Slow::start(Then::Reset(Duration::from_millis(100))).await;
    let late = Slow::start(Then::Answer(200, Duration::from_millis(100))).await;
    let set = EndpointSet::from_urls([resets.url()]).unwrap();
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new());
    let pending = first_attempt_to(&resets, &late, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(50)).await;
    eventually("the hedge reaching the other replica", || {
        late.received() == 1
    })
    .await;
    clock.advance(Duration::from_millis(50)).await;
    clock.advance(Duration::from_millis(50)).await;
    let (status, attempts) = answer(pending).await;
    assert_eq!(status, 200, "the reset lost to the hedge in flight");
    assert_eq!(attempts, 2);
    assert_eq!(client.calls(), 2, "and was not retried meanwhile");
}

#[tokio::test(start_paused = true)]
async fn an_answer_the_policy_would_retry_waits_for_the_hedge_and_one_it_would_not_wins() {
    for (retry_503, want) in [(true, 200), (false, 503)] {
        let clock = Frozen::hold();
        // The first attempt answers 503 at 100 ms; the hedge 200 at 150 ms.
        let unavailable = Slow::start(Then::Answer(503, Duration::from_millis(100))).await;
        let late = Slow::start(Then::Answer(200, Duration::from_millis(100))).await;
        let set = EndpointSet::from_urls([unavailable.url()]).unwrap();
        let retry = if retry_503 {
            RetryPolicy::new().retry_on(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            RetryPolicy::new()
        };
        let (svc, _client) = gateway(&set, after_50ms(), retry);
        let pending = first_attempt_to(&unavailable, &late, &set, &svc, get()).await;
        clock.advance(Duration::from_millis(50)).await;
        eventually("the hedge reaching the other replica", || {
            late.received() == 1
        })
        .await;
        clock.advance(Duration::from_millis(50)).await;
        if !retry_503 {
            let (status, _) = answer(pending).await;
            assert_eq!(status, 503, "a final answer wins at once");
            eventually("the hedge cancelled", || late.cancelled() == 1).await;
            continue;
        }
        clock.advance(Duration::from_millis(50)).await;
        let (status, attempts) = answer(pending).await;
        assert_eq!(status.as_u16(), want, "retry_on(503): {retry_503}");
        assert_eq!(attempts, 2);
        drop(clock);
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_replica_is_slow_the_budget_holds_hedges_to_a_tenth_of_the_requests() {
    for (budget, hedges) in [(true, 10), (false, 100)] {
        let clock = Frozen::hold();
        let replicas = [
            Slow::start(Then::Answer(200, Duration::from_millis(200))).await,
            Slow::start(Then::Answer(200, Duration::from_millis(200))).await,
            Slow::start(Then::Answer(200, Duration::from_millis(200))).await,
        ];
        let set = EndpointSet::from_urls(replicas.iter().map(Slow::url)).unwrap();
        let hedge = HedgePolicy::after(Duration::from_millis(50));
        let hedge = if budget { hedge } else { hedge.no_budget() };
        let (svc, client) = gateway(&set, hedge, RetryPolicy::new());
        let pending: Vec<_> = (0..100)
            .map(|_| tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap)))
            .collect();
        let received = || replicas.iter().map(Slow::received).sum::<usize>();
        eventually("every first attempt arriving", || received() == 100).await;
        clock.advance(Duration::from_millis(50)).await;
        eventually("the hedges arriving", || received() == 100 + hedges).await;
        clock.advance(Duration::from_millis(150)).await;
        for p in pending {
            assert_eq!(answer(p).await.0, 200);
        }
        assert_eq!(
            client.calls(),
            100 + hedges,
            "budget {budget}: {hedges} hedges for 100 requests"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_hedge_starts_past_the_deadline() {
    let clock = Frozen::hold();
    let (slow, fast, set) = slow_and_fast().await;
    let client = Counting::new(hyper_client());
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .deadline(Duration::from_millis(40))
        .hedge(after_50ms())
        .layer(client.clone());
    let pending = first_attempt_to(&slow, &fast, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(40)).await;
    let (status, _) = answer(pending).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    clock.advance(Duration::from_millis(20)).await;
    assert_eq!(
        client.calls(),
        1,
        "the deadline ended the exchange, no hedge"
    );
    assert_eq!(fast.received(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_hedge_avoids_the_endpoint_in_flight_even_when_it_is_the_least_loaded() {
    let clock = Frozen::hold();
    let slow = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    let busy = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    // `busy` holds three requests in flight, the slow replica one (the first
    // attempt): picking by load alone, the hedge would go to the slow one.
    let set = EndpointSet::from_urls([busy.url()]).unwrap();
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new());
    let posts: Vec<_> = (0..3)
        .map(|_| {
            let post = Request::post("/orders").body(Full::default()).unwrap();
            tokio::spawn(svc.clone().oneshot(post).map(Result::unwrap))
        })
        .collect();
    eventually("three requests in flight at the busy replica", || {
        busy.received() == 3
    })
    .await;
    // Picking by load, the first attempt goes to the idle slow replica.
    set.replace([busy.url().parse().unwrap(), slow.url().parse().unwrap()])
        .unwrap();
    let pending = tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap));
    eventually("the first attempt reaching the slow replica", || {
        slow.received() == 1
    })
    .await;
    clock.advance(Duration::from_millis(50)).await;
    eventually("the hedge reaching the busy replica", || {
        busy.received() == 4
    })
    .await;
    assert_eq!(
        slow.received(),
        1,
        "the endpoint in flight is not asked twice"
    );
    clock.advance(Duration::from_millis(950)).await;
    let (status, attempts) = answer(pending).await;
    assert_eq!(
        (status, attempts),
        (StatusCode::OK, 2),
        "the first attempt won"
    );
    for post in posts {
        assert_eq!(answer(post).await.0, 200);
    }
    assert_eq!(client.calls(), 5);
}

/// A hedge sent and won is one event each and one count each; a refused one is
/// counted. A recorder of the test's own (thread-local: the test's runtime runs
/// its tasks on its thread).
#[tokio::test(start_paused = true)]
async fn hedges_sent_won_and_refused_are_events_and_counters() {
    let events = crate::support::EventLog::install();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let clock = Frozen::hold();
    let slow = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    let fast = Slow::start(Then::Answer(200, Duration::ZERO)).await;
    let set = EndpointSet::from_urls([fast.url()]).unwrap();
    // The default budget: ten requests pay for one hedge. Nine answered at once...
    let hedge = HedgePolicy::after(Duration::from_millis(50));
    let (svc, _client) = gateway(&set, hedge, RetryPolicy::new());
    for _ in 0..9 {
        let quick = tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap));
        assert_eq!(answer(quick).await, (StatusCode::OK, 1));
    }
    // ...and the tenth, slow, is hedged.
    set.replace([slow.url().parse().unwrap()]).unwrap();
    let pending = first_attempt_to(&slow, &fast, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(50)).await;
    assert_eq!(answer(pending).await, (StatusCode::OK, 2));
    // The budget is spent: the next slow request is not hedged.
    set.replace([slow.url().parse().unwrap()]).unwrap();
    let pending = first_attempt_to(&slow, &fast, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(1000)).await;
    assert_eq!(answer(pending).await, (StatusCode::OK, 1));

    let text = handle.render();
    let value = |series: &str| crate::support::prometheus_value(&text, series);
    assert_eq!(value("tower_bad_gateway_hedges "), Some(1.0), "{text}");
    assert_eq!(value("tower_bad_gateway_hedges_won "), Some(1.0), "{text}");
    assert_eq!(
        value("tower_bad_gateway_hedges_refused "),
        Some(1.0),
        "{text}"
    );
    let log = events.messages().join("\n");
    assert!(log.contains("hedging upstream request"), "{log}");
    assert!(log.contains("attempt=2"), "{log}");
    assert!(
        log.contains("hedged request answered, the other attempts cancelled"),
        "{log}"
    );
    assert!(log.contains("cancelled=1"), "{log}");
    assert!(log.contains("winner=2 attempts=2"), "the hedge won: {log}");
}

#[tokio::test(start_paused = true)]
async fn a_learned_percentile_hedges_just_past_what_attempts_usually_take() {
    let clock = Frozen::hold();
    let usual = Slow::start(Then::Answer(200, Duration::from_millis(10))).await;
    let slow = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
    let set = EndpointSet::from_urls([usual.url()]).unwrap();
    // Until learned, a second: far beyond the test's wait below.
    let hedge = HedgePolicy::percentile(95.0, Duration::from_secs(1)).no_budget();
    let (svc, client) = gateway(&set, hedge, RetryPolicy::new());
    let learning: Vec<_> = (0..128)
        .map(|_| tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap)))
        .collect();
    eventually("every request at the usual replica", || {
        usual.received() == 128
    })
    .await;
    clock.advance(Duration::from_millis(10)).await;
    for l in learning {
        assert_eq!(answer(l).await, (StatusCode::OK, 1));
    }
    // Attempts take 10 ms: the 95th percentile's bucket ends under 12 ms.
    set.replace([slow.url().parse().unwrap()]).unwrap();
    let pending = first_attempt_to(&slow, &usual, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(9)).await;
    assert_eq!(client.calls(), 129, "not before the learned delay");
    clock.advance(Duration::from_millis(3)).await;
    eventually("the hedge reaching the usual replica", || {
        usual.received() == 129
    })
    .await;
    clock.advance(Duration::from_millis(10)).await;
    assert_eq!(answer(pending).await, (StatusCode::OK, 2));
}

/// Over HTTP/2 the loser's stream is reset: the upstream's handler is dropped,
/// its connection stays up for the next request.
#[tokio::test(start_paused = true)]
async fn over_http2_the_losers_stream_is_reset_and_its_connection_kept() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let clock = Frozen::hold();
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Two h2 replicas: each answers after `wait`, counting handlers dropped
    // before they answered, the connections accepted and the requests.
    type Counts = (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>);
    async fn h2(wait: Duration) -> (String, Counts) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts: Counts = Default::default();
        let (d, c, r) = counts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (d, r) = (d.clone(), r.clone());
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    r.fetch_add(1, Ordering::SeqCst);
                    let guard = Dropped(d.clone());
                    async move {
                        tokio::time::sleep(wait).await;
                        std::mem::forget(guard);
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        (url, counts)
    }
    let (slow, (slow_dropped, slow_conns, slow_requests)) = h2(Duration::from_secs(1)).await;
    let (fast, _) = h2(Duration::ZERO).await;
    let set = EndpointSet::from_urls([slow.clone()]).unwrap();
    let client = Counting::new(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http(),
    );
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .hedge(after_50ms())
        .layer(client.clone());
    let pending = tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap));
    eventually("the first attempt at the slow replica", || {
        slow_requests.load(Ordering::SeqCst) == 1
    })
    .await;
    set.replace([slow.parse().unwrap(), fast.parse().unwrap()])
        .unwrap();
    clock.advance(Duration::from_millis(50)).await;
    let res = within("the hedge's answer", pending).await.unwrap();
    assert_eq!((res.status(), Attempts::of(&res)), (StatusCode::OK, 2));
    eventually("the loser's handler dropped by its stream's reset", || {
        slow_dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    // The same connection takes the next request to the slow replica.
    set.replace([slow.parse().unwrap()]).unwrap();
    let next = tokio::spawn(svc.clone().oneshot(get()).map(Result::unwrap));
    eventually("the next request at the slow replica", || {
        slow_requests.load(Ordering::SeqCst) == 2
    })
    .await;
    clock.advance(Duration::from_secs(1)).await;
    let res = within("the next answer", next).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(slow_conns.load(Ordering::SeqCst), 1, "one connection");
}

#[tokio::test(start_paused = true)]
async fn a_hedged_grpc_call_declared_idempotent_tells_the_hedge_it_is_the_second_attempt() {
    let clock = Frozen::hold();
    let (slow, fast, set) = slow_and_fast().await;
    let retry =
        RetryPolicy::new().idempotent_if(|req| req.uri.path().starts_with("/catalog.Catalog/Get"));
    let (svc, _client) = gateway(&set, after_50ms(), retry);
    let call = Request::post("/catalog.Catalog/GetItem")
        .header("content-type", "application/grpc")
        .body(Full::default())
        .unwrap();
    let pending = first_attempt_to(&slow, &fast, &set, &svc, call).await;
    clock.advance(Duration::from_millis(50)).await;
    assert_eq!(answer(pending).await, (StatusCode::OK, 2));
    let (first, hedge) = (&slow.heads()[0], &fast.heads()[0]);
    assert!(!first.contains("grpc-previous-rpc-attempts"), "{first}");
    assert!(
        hedge.contains("grpc-previous-rpc-attempts: 1\r\n"),
        "{hedge}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttle_at_half_its_tokens_stops_hedges_as_it_stops_retries() {
    use tower_bad_gateway::retry::RetryThrottle;
    let clock = Frozen::hold();
    let (slow, fast, set) = slow_and_fast().await;
    // 2 tokens; one failure leaves 1, half: no more retries, no hedges (gRFC A6).
    let throttle = RetryThrottle::new(2, 0.1);
    throttle.record_failure();
    assert!(!throttle.allows());
    let (svc, client) = gateway(&set, after_50ms(), RetryPolicy::new().throttle(throttle));
    let pending = first_attempt_to(&slow, &fast, &set, &svc, get()).await;
    clock.advance(Duration::from_millis(50)).await;
    clock.advance(Duration::from_millis(950)).await;
    assert_eq!(answer(pending).await, (StatusCode::OK, 1));
    assert_eq!(client.calls(), 1, "not hedged");
    assert_eq!(fast.received(), 0);
}

/// The tail, on a frozen clock: one replica of three delays the requests
/// marked slow by a second (5 of 100), the others answer at once. With hedging
/// after 50 ms and the default budget, every request is answered by 50 ms, none
/// waits the second, and the extra requests are the delayed ones' hedges.
#[tokio::test(start_paused = true)]
async fn the_tail_one_slow_replica_delaying_5_percent_by_a_second_ends_at_the_hedge_delay() {
    let clock = Frozen::hold();
    let replicas = [
        Slow::start(Then::SlowIfMarked(Duration::from_secs(1))).await,
        Slow::start(Then::SlowIfMarked(Duration::ZERO)).await,
        Slow::start(Then::SlowIfMarked(Duration::ZERO)).await,
    ];
    let set = EndpointSet::from_urls(replicas.iter().map(Slow::url)).unwrap();
    let hedge = HedgePolicy::after(Duration::from_millis(50));
    let (svc, client) = gateway(&set, hedge, RetryPolicy::new());
    // The delayed ones must go to the slow replica: it alone in the set for them.
    let mut pending = Vec::new();
    for i in 0..100 {
        let marked = i % 20 == 19;
        set.replace(if marked {
            vec![replicas[0].url().parse().unwrap()]
        } else {
            replicas.iter().map(|r| r.url().parse().unwrap()).collect()
        })
        .unwrap();
        let mut req = get();
        if marked {
            req.headers_mut()
                .insert("x-slow", http::HeaderValue::from_static("1"));
        }
        let before = client.calls();
        pending.push(tokio::spawn(svc.clone().oneshot(req).map(Result::unwrap)));
        eventually("the request sent", || client.calls() > before).await;
    }
    set.replace(
        replicas
            .iter()
            .map(|r| r.url().parse().unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    clock.advance(Duration::from_millis(50)).await;
    let mut hedged = 0;
    for p in pending {
        let (status, attempts) = answer(p).await;
        assert_eq!(status, 200);
        hedged += usize::from(attempts == 2);
    }
    assert_eq!(
        hedged, 5,
        "the five delayed requests, answered by their hedges"
    );
    assert_eq!(client.calls(), 105, "5% extra upstream requests");
}

/// A losing attempt's gRPC pushback (gRFC A6) delays the next hedge by its value;
/// a negative one stops hedging. The first attempt answers `UNAVAILABLE` at 60 ms
/// while the first hedge (sent at 50 ms) is in flight; the third attempt would go
/// at 100 ms. Its pushback of 100 ms sends it at 160 ms, of 0 at once.
#[tokio::test(start_paused = true)]
async fn a_losing_attempts_pushback_delays_the_next_hedge_and_a_negative_one_stops_them() {
    use tower_bad_gateway::GrpcCode;
    for (pushback, third_at) in [("-1", None), ("100", Some(160)), ("0", Some(60))] {
        let events = crate::support::EventLog::install();
        let clock = Frozen::hold();
        let first = Slow::start(Then::Unavailable(pushback, Duration::from_millis(60))).await;
        let second = Slow::start(Then::Answer(200, Duration::from_secs(1))).await;
        let third = Slow::start(Then::Answer(200, Duration::ZERO)).await;
        let set = EndpointSet::from_urls([first.url()]).unwrap();
        let hedge = after_50ms().max_attempts(3);
        let retry = RetryPolicy::new()
            .max_attempts(3)
            .retry_on(GrpcCode::Unavailable);
        let (svc, client) = gateway(&set, hedge, retry);
        let pending = first_attempt_to(&first, &second, &set, &svc, get()).await;
        clock.advance(Duration::from_millis(50)).await;
        eventually("the first hedge", || second.received() == 1).await;
        set.replace([first.url(), second.url(), third.url()].map(|u| u.parse().unwrap()))
            .unwrap();
        clock.advance(Duration::from_millis(10)).await;
        let lines = events.lines();
        eventually("the first attempt losing", || {
            lines
                .messages()
                .iter()
                .any(|e| e.contains("hedged attempt lost"))
        })
        .await;
        // Millisecond by millisecond: no third attempt before its time.
        let until = third_at.unwrap_or(200);
        for at in 61..=until {
            clock.advance(Duration::from_millis(1)).await;
            if at < until {
                assert_eq!(
                    client.calls(),
                    2,
                    "pushback {pushback}: a third attempt at {at} ms"
                );
            }
        }
        match third_at {
            Some(_) => {
                eventually("the third attempt", || third.received() == 1).await;
                assert_eq!(
                    answer(pending).await,
                    (StatusCode::OK, 3),
                    "pushback {pushback}"
                );
            }
            None => {
                assert_eq!(
                    client.calls(),
                    2,
                    "no more hedges after a negative pushback"
                );
                clock.advance(Duration::from_millis(850)).await;
                assert_eq!(
                    answer(pending).await,
                    (StatusCode::OK, 2),
                    "the hedge's answer"
                );
                assert_eq!(third.received(), 0);
            }
        }
    }
}
