//! Endpoint sets over real loopback replicas: retries go to another replica,
//! passive health ejects and probes, nothing healthy fails fast, membership
//! changes at runtime.

use crate::support::{
    Counting, EventLog, Frozen, Recorder, Replica, Script, TestBody, blackhole_port, eventually,
    hyper_client, within,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};
use tower_bad_gateway::retry::RetryPolicy;
use tower_bad_gateway::upstreams::{Endpoint, EndpointSet, Health, HealthPolicy};
use tower_bad_gateway::{GatewayLayer, UpstreamBody};

type Body = UpstreamBody<TestBody>;

fn client() -> Counting<
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
> {
    Counting::new(hyper_client())
}

fn no_backoff() -> RetryPolicy {
    RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO)
}

pub(crate) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn send<S, B>(svc: &S, method: Method, id: &str) -> Answer
where
    S: Service<Request<TestBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let body = if method == Method::POST {
        Full::new(Bytes::from(id.to_owned()))
    } else {
        Full::default()
    };
    let req = Request::builder()
        .method(method)
        .uri("/orders")
        .header("x-id", id)
        .body(body)
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn health_of(set: &EndpointSet, url: &str) -> Health {
    health_of_endpoint(set, &url.parse().unwrap())
}

fn health_of_endpoint(set: &EndpointSet, ep: &Endpoint) -> Health {
    set.health().into_iter().find(|(e, _)| e == ep).unwrap().1
}

#[tokio::test]
async fn behind_three_replicas_with_one_dead_every_request_succeeds_posts_included_and_each_once() {
    let (a, b, dead) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    dead.kill();
    let set = EndpointSet::from_urls([a.url(), b.url(), dead.url()]).unwrap();
    let client = client();
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(client.clone());
    for i in 0..60 {
        let method = if i % 2 == 0 {
            Method::POST
        } else {
            Method::GET
        };
        let answer = send(&svc, method.clone(), &i.to_string()).await;
        assert_eq!(answer.status, 200, "{method} {i}: {:?}", answer.headers);
        assert!(answer.body == "a" || answer.body == "b");
    }
    let mut seen = [a.seen(), b.seen()].concat();
    seen.sort_by_key(|id| id.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..60).map(|i: u32| i.to_string()).collect();
    assert_eq!(
        seen, expected,
        "every request reached a live replica exactly once"
    );
    // The dead one took at most the threshold (5) before it was ejected.
    let to_dead = client.calls_to(dead.addr);
    assert!(
        (1..=5).contains(&to_dead),
        "{to_dead} attempts went to the dead replica"
    );
    assert!(matches!(
        health_of(&set, &dead.url()),
        Health::Ejected { .. }
    ));
}

#[tokio::test]
async fn a_post_that_may_have_reached_a_replica_is_never_sent_to_another() {
    // `dropper` reads each request in full, then closes without answering.
    let dropper = Recorder::start(vec![Script::Drop]).await;
    let good = Replica::start("good").await;
    let set = EndpointSet::from_urls([format!("http://{}", dropper.addr), good.url()])
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(1000));
    let svc = GatewayLayer::new()
        .upstreams(set)
        .retry_policy(no_backoff())
        .layer(client());
    let mut dropped_posts = 0;
    for i in 0..20 {
        let post = send(&svc, Method::POST, &format!("post-{i}")).await;
        if post.status == StatusCode::BAD_GATEWAY {
            dropped_posts += 1;
            assert!(
                post.headers["proxy-status"]
                    .to_str()
                    .unwrap()
                    .contains("connection_terminated"),
                "{:?}",
                post.headers
            );
        } else {
            assert_eq!(post.status, 200);
        }
        // A GET that met the dropper goes again, to the other replica.
        let get = send(&svc, Method::GET, &format!("get-{i}")).await;
        assert_eq!(get.status, 200);
        assert_eq!(get.body, "good");
    }
    assert!(
        dropped_posts > 0,
        "no POST went to the dropping replica (odds 2^-20)"
    );
    // Each GET met the dropper at most once: its retry went to the other replica.
    let mut gets: Vec<String> = dropper
        .headers()
        .iter()
        .filter_map(|h| h.get("x-id")?.to_str().ok().map(str::to_owned))
        .filter(|id| id.starts_with("get-"))
        .collect();
    let hits = gets.len();
    gets.dedup();
    assert!(hits > 0, "no GET went to the dropping replica (odds 2^-20)");
    assert_eq!(
        gets.len(),
        hits,
        "a GET's retry went back to the dropping replica"
    );
    let posts_dropped: Vec<Bytes> = dropper
        .received()
        .into_iter()
        .filter(|(m, _)| m == Method::POST)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        posts_dropped.len(),
        dropped_posts,
        "each dropped POST reached it once"
    );
    let good_saw = good.seen();
    for body in posts_dropped {
        let id = String::from_utf8(body.to_vec()).unwrap();
        assert!(!good_saw.contains(&id), "{id} was sent to a second replica");
    }
}

/// On a frozen clock: the replica's sockets work in no time, and the ejection
/// ends exactly when the test moves the clock past it.
#[tokio::test(start_paused = true)]
async fn with_one_endpoint_the_set_is_a_circuit_breaker_that_fails_fast_then_probes_once() {
    let events = EventLog::install();
    let clock = Frozen::hold();
    let replica = Replica::start("back").await;
    replica.kill();
    let set = EndpointSet::from_urls([replica.url()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .no_jitter()
                .consecutive_failures(2)
                .base_ejection(Duration::from_millis(400)),
        );
    let client = client();
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(1)
        .layer(client.clone());

    for i in 0..2 {
        let answer = send(&svc, Method::GET, &i.to_string()).await;
        assert_eq!(answer.status, 502);
    }
    assert_eq!(client.calls(), 2);
    assert_eq!(
        health_of(&set, &replica.url()),
        Health::Ejected {
            probe_in: Duration::from_millis(400)
        }
    );
    let readies = client.readies.load(Ordering::SeqCst);

    // Open: no network I/O, not even asking the client whether it is ready.
    for i in 0..3 {
        let answer = send(&svc, Method::GET, &format!("open-{i}")).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        let proxy_status = answer.headers["proxy-status"].to_str().unwrap();
        assert!(
            proxy_status.ends_with("error=destination_unavailable"),
            "{proxy_status}"
        );
        assert_eq!(
            answer.headers["retry-after"], "1",
            "the probe is under a second away"
        );
    }
    assert_eq!(client.calls(), 2, "no attempt while open");
    assert_eq!(
        client.readies.load(Ordering::SeqCst),
        readies,
        "the client was not polled"
    );

    replica.restart().await;
    // Still open a moment before the ejection ends; the probe goes as it ends.
    clock.advance(Duration::from_millis(399)).await;
    let open = send(&svc, Method::GET, "still-open").await;
    assert_eq!(open.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(client.calls(), 2, "no attempt while open");
    clock.advance(Duration::from_millis(1)).await;
    let probe = send(&svc, Method::GET, "probe").await;
    assert_eq!(probe.status, 200);
    assert_eq!(health_of(&set, &replica.url()), Health::Healthy);
    assert_eq!(send(&svc, Method::GET, "after").await.status, 200);

    let log = events.messages().join("\n");
    for event in [
        "upstream endpoint ejected",
        "upstream endpoint probing",
        "upstream endpoint restored",
    ] {
        assert_eq!(log.matches(event).count(), 1, "{event} once in:\n{log}");
    }
}

/// The default policy's times (a 10 s base ejection, doubled), on a frozen clock.
#[tokio::test(start_paused = true)]
async fn a_failed_probe_ejects_the_endpoint_again_for_twice_as_long() {
    const BASE: Duration = Duration::from_secs(10);
    let clock = Frozen::hold();
    let replica = Replica::start("x").await;
    replica.kill();
    let set = EndpointSet::from_urls([replica.url()])
        .unwrap()
        .health_policy(HealthPolicy::new().no_jitter().consecutive_failures(1));
    let client = client();
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(1)
        .layer(client.clone());
    assert_eq!(send(&svc, Method::GET, "1").await.status, 502);
    assert_eq!(
        health_of(&set, &replica.url()),
        Health::Ejected { probe_in: BASE }
    );
    clock.advance(BASE).await;
    assert_eq!(
        send(&svc, Method::GET, "probe").await.status,
        502,
        "the probe is refused"
    );
    assert_eq!(client.calls(), 2, "the probe went");
    assert_eq!(
        health_of(&set, &replica.url()),
        Health::Ejected { probe_in: 2 * BASE }
    );
}

/// Nothing here completes on a socket (connecting to the hole hangs), so tokio's
/// paused clock may auto-advance: each wait ends exactly at its timer, in order.
#[tokio::test]
async fn a_cancelled_probe_frees_its_slot_and_a_timed_out_one_ejects_again() {
    // Connecting to it hangs until the client's 150 ms connect timeout.
    let hole = blackhole_port().await;
    tokio::time::pause();
    let url = format!("http://{}", hole.addr);
    let set = EndpointSet::from_urls([url.as_str()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .no_jitter()
                .consecutive_failures(1)
                .base_ejection(Duration::from_millis(200)),
        );
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(1)
        .layer(client());
    assert_eq!(
        send(&svc, Method::GET, "1").await.status,
        504,
        "connect timeout"
    );
    assert!(matches!(health_of(&set, &url), Health::Ejected { .. }));
    tokio::time::sleep(Duration::from_millis(250)).await;

    // The probe's caller gives up (drops it) before the connect times out.
    let probe = tokio::time::timeout(Duration::from_millis(50), send(&svc, Method::GET, "probe"));
    // (50 ms is well before the connect timeout: on the paused clock, exactly.)
    assert!(probe.await.is_err());
    assert!(
        matches!(health_of(&set, &url), Health::Ejected { probe_in } if probe_in.is_zero()),
        "the cancelled probe freed the slot: {:?}",
        set.health()
    );
    assert_eq!(
        set.in_flight(),
        0,
        "the cancelled attempt no longer counts as in flight"
    );
    // So the next request is the probe, not a fail-fast 503; it times out, and the
    // endpoint is ejected again, not left probing.
    let next = send(&svc, Method::GET, "next").await;
    assert_eq!(next.status, 504, "{:?}", next.headers);
    assert_eq!(
        health_of(&set, &url),
        Health::Ejected {
            probe_in: Duration::from_millis(400)
        },
        "ejected again, for twice as long"
    );
}

#[tokio::test]
async fn nothing_healthy_answers_a_grpc_caller_unavailable_without_a_call() {
    let replica = Replica::start("x").await;
    replica.kill();
    let set = EndpointSet::from_urls([replica.url()])
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(1));
    let client = client();
    let svc = GatewayLayer::new()
        .upstreams(set)
        .max_attempts(1)
        .layer(client.clone());
    assert_eq!(send(&svc, Method::GET, "1").await.status, 502);
    let req = Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(client.calls(), 1);
}

/// On a frozen clock: the slow replica holds its answer until the test moves the
/// clock, so the set is replaced while the request is surely in flight.
#[tokio::test(start_paused = true)]
async fn replacing_the_set_keeps_health_and_loses_no_request_in_flight() {
    let events = EventLog::install();
    let clock = Frozen::hold();
    let slow = Replica::start_slow("slow", Duration::from_millis(300)).await;
    let fast = Replica::start("fast").await;
    let set = EndpointSet::from_urls([slow.url()]).unwrap();
    let svc = GatewayLayer::new().upstreams(set.clone()).layer(client());
    let in_flight = tokio::spawn({
        let svc = svc.clone();
        async move { send(&svc, Method::POST, "in-flight").await }
    });
    eventually("the slow replica has the request", || {
        slow.seen().contains(&"in-flight".to_owned())
    })
    .await;
    set.replace([fast.url().parse().unwrap()]).unwrap();
    assert!(!in_flight.is_finished(), "answered before the replacement");
    clock.advance(Duration::from_millis(300)).await;
    let answer = within("the in-flight answer", in_flight).await.unwrap();
    assert_eq!(
        (answer.status, &answer.body[..]),
        (StatusCode::OK, &b"slow"[..])
    );
    assert_eq!(send(&svc, Method::GET, "next").await.body, "fast");

    // An ejected endpoint that stays in the set stays ejected.
    let dead = Replica::start("dead").await;
    dead.kill();
    set.replace([dead.url().parse().unwrap()]).unwrap();
    let set = set.health_policy(HealthPolicy::new().consecutive_failures(1));
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(1)
        .layer(client());
    assert_eq!(send(&svc, Method::GET, "x").await.status, 502);
    set.replace([dead.url().parse().unwrap(), fast.url().parse().unwrap()])
        .unwrap();
    assert!(matches!(
        health_of(&set, &dead.url()),
        Health::Ejected { .. }
    ));
    for i in 0..10 {
        assert_eq!(send(&svc, Method::GET, &i.to_string()).await.body, "fast");
    }
    let replaced: Vec<String> = events
        .messages()
        .into_iter()
        .filter(|m| m.contains("upstream endpoint set replaced"))
        .collect();
    assert_eq!(replaced.len(), 3, "one event per replacement: {replaced:?}");
    assert!(
        replaced[2].contains("added=1") && replaced[2].contains("removed=0"),
        "{replaced:?}"
    );
}

#[tokio::test]
async fn a_discover_stream_drives_the_membership() {
    use tower::discover::Change;
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let set = EndpointSet::from_urls(["http://127.0.0.1:9"]).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Change<&str, Endpoint>, Infallible>>(8);
    let follower = tokio::spawn({
        let set = set.clone();
        async move {
            set.discover(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }
    });
    let svc = GatewayLayer::new().upstreams(set.clone()).layer(client());
    let settle = |want: Vec<String>| {
        let set = set.clone();
        async move {
            let what = format!("the set becoming {want:?}");
            eventually(&what, || {
                let now: Vec<String> = set.health().iter().map(|(e, _)| e.to_string()).collect();
                now == want
            })
            .await;
        }
    };

    tx.send(Ok(Change::Insert("a", a.url().parse().unwrap())))
        .await
        .unwrap();
    settle(vec![a.url()]).await;
    assert_eq!(send(&svc, Method::GET, "1").await.body, "a");

    tx.send(Ok(Change::Insert("b", b.url().parse().unwrap())))
        .await
        .unwrap();
    tx.send(Ok(Change::Remove("a"))).await.unwrap();
    settle(vec![b.url()]).await;
    assert_eq!(send(&svc, Method::GET, "2").await.body, "b");

    tx.send(Ok(Change::Remove("b"))).await.unwrap();
    settle(vec![]).await;
    let answer = send(&svc, Method::GET, "3").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.headers.get("retry-after").is_none(),
        "no probe is scheduled"
    );

    drop(tx);
    follower.await.unwrap().unwrap();
}

#[test]
fn bad_endpoint_sets_are_clear_errors_at_build_time() {
    let empty: [&str; 0] = [];
    for (urls, message) in [
        (&empty[..], "needs at least one endpoint"),
        (&["http://a:1", "http://a:1"][..], "listed twice"),
        (&["http://a:1", "a:2"][..], "no scheme"),
        (&["gopher://a"][..], "http or https"),
        (&["http:///x"][..], "upstream endpoint"),
    ] {
        let err = EndpointSet::from_urls(urls).unwrap_err().to_string();
        assert!(err.contains(message), "{urls:?}: {err}");
    }
    let set = EndpointSet::from_urls(["http://a:1"]).unwrap();
    assert!(set.replace(Vec::<Endpoint>::new()).is_err());
    assert_eq!(set.len(), 1, "a failed replace changes nothing");
}

/// A log of every attempt the client made to one address: when it started, when
/// it ended, and whether it failed.
#[derive(Clone)]
struct AttemptLog<S> {
    inner: S,
    watched: std::net::SocketAddr,
    log: Arc<Mutex<Vec<Attempt>>>,
}

/// When an attempt started, and when it failed (if it did).
type Attempt = (std::time::Instant, Option<std::time::Instant>);

impl<S> Service<Request<Body>> for AttemptLog<S>
where
    S: Service<Request<Body>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let watched = req.uri().authority().map(|a| a.as_str()) == Some(&self.watched.to_string());
        let future = self.inner.call(req);
        if !watched {
            return Box::pin(future);
        }
        let log = self.log.clone();
        let i = {
            let mut log = log.lock().unwrap();
            log.push((std::time::Instant::now(), None));
            log.len() - 1
        };
        Box::pin(async move {
            let result = future.await;
            if result.is_err() {
                log.lock().unwrap()[i].1 = Some(std::time::Instant::now());
            }
            result
        })
    }
}

/// 3 replicas, one killed and restarted mid-run; 10,000 requests or more (half
/// POSTs) at concurrency 64. Every answer is checked, no POST reaches a replica
/// twice, and while the replica is dead, no more attempts go to it than the
/// threshold (after its first refusal) plus one probe per ejection.
///
/// The replica stays dead until it has been ejected, probed and ejected again (an
/// event, however slow the machine), and the requests go on until it is back.
#[tokio::test]
async fn load_three_replicas_one_killed_and_restarted_mid_run() {
    const TOTAL: usize = 10_000;
    const THRESHOLD: u32 = 5;
    let events = EventLog::install();
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let set = EndpointSet::from_urls([a.url(), b.url(), c.url()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .consecutive_failures(THRESHOLD)
                .base_ejection(Duration::from_millis(50))
                .max_ejection(Duration::from_millis(200)),
        );
    let attempts = AttemptLog {
        inner: hyper_client::<Body>(),
        watched: c.addr,
        log: Arc::default(),
    };
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().backoff(Duration::ZERO, Duration::from_millis(5)))
        .layer(attempts.clone());

    let done = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let window = Arc::new(Mutex::new((None, None)));
    let ejections_of_c = {
        let (lines, c) = (events.lines(), c.addr.to_string());
        move || {
            lines
                .messages()
                .iter()
                .filter(|m| m.contains("upstream endpoint ejected") && m.contains(&c))
                .count()
        }
    };
    let chaos = tokio::spawn({
        let (done, window, c) = (done.clone(), window.clone(), c.clone());
        let (restarted, ejections_of_c) = (restarted.clone(), ejections_of_c.clone());
        async move {
            eventually("a tenth of the requests answered", || {
                done.load(Ordering::SeqCst) >= TOTAL / 10
            })
            .await;
            c.kill();
            let killed = std::time::Instant::now();
            window.lock().unwrap().0 = Some(killed);
            eventually("c ejected, probed and ejected again", || {
                ejections_of_c() >= 2
            })
            .await;
            window.lock().unwrap().1 = Some(std::time::Instant::now());
            c.restart().await;
            restarted.store(true, Ordering::SeqCst);
        }
    });

    let next = Arc::new(AtomicUsize::new(0));
    // (request, status, Proxy-Status, body)
    type Answered = (usize, StatusCode, String, Bytes);
    let answers: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (svc, next, done, answers) = (svc.clone(), next.clone(), done.clone(), answers.clone());
        let restarted = restarted.clone();
        workers.spawn(async move {
            loop {
                if next.load(Ordering::SeqCst) >= TOTAL && restarted.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let method = if i % 2 == 0 {
                    Method::POST
                } else {
                    Method::GET
                };
                let answer = send(&svc, method, &i.to_string()).await;
                let proxy_status = answer
                    .headers
                    .get("proxy-status")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                answers
                    .lock()
                    .unwrap()
                    .push((i, answer.status, proxy_status, answer.body));
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.unwrap();
    }
    chaos.await.unwrap();

    // What each replica received, by id.
    let mut received: std::collections::HashMap<String, Vec<&str>> = Default::default();
    for replica in [&a, &b, &c] {
        for id in replica.seen() {
            received.entry(id).or_default().push(replica.name);
        }
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let total = next.load(Ordering::SeqCst);
    assert!(total >= TOTAL, "{total} requests");
    let mut ids: Vec<usize> = answers.iter().map(|a| a.0).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..total).collect::<Vec<_>>(),
        "every request got exactly one answer"
    );
    let mut failed_posts = 0;
    for (i, status, proxy_status, body) in answers.iter() {
        let post = i % 2 == 0;
        let got = received
            .get(&i.to_string())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if post {
            assert!(got.len() <= 1, "POST {i} reached {got:?}");
        }
        if *status == StatusCode::OK {
            let by = std::str::from_utf8(body).unwrap();
            assert!(
                got.contains(&by),
                "{i} answered by {by} but received by {got:?}"
            );
        } else {
            // Only a POST caught on the replica as it died may fail: it may have
            // reached it, so it is not sent again.
            assert!(post, "GET {i}: {status} {proxy_status}");
            assert_eq!(*status, StatusCode::BAD_GATEWAY, "POST {i}: {proxy_status}");
            assert!(
                proxy_status.contains("connection_terminated")
                    || proxy_status.contains("http_response_incomplete"),
                "POST {i}: {proxy_status}"
            );
            failed_posts += 1;
        }
    }
    assert!(
        failed_posts <= 64,
        "{failed_posts} POSTs failed: more than were in flight"
    );

    // While c was dead: after its first refusal, at most THRESHOLD - 1 more
    // attempts before the first ejection, then one probe per ejection.
    let (killed, restarted) = {
        let w = window.lock().unwrap();
        (w.0.unwrap(), w.1.unwrap())
    };
    let log = attempts.log.lock().unwrap().clone();
    let first_refusal = log
        .iter()
        .filter(|(start, failed)| *start >= killed && failed.is_some())
        .filter_map(|(_, failed)| *failed)
        .min()
        .expect("c refused at least once");
    let after_first = log
        .iter()
        .filter(|(start, _)| *start > first_refusal && *start < restarted)
        .count();
    let messages = events.messages();
    let probes = messages
        .iter()
        .filter(|m| m.contains("upstream endpoint probing") && m.contains(&c.addr.to_string()))
        .count();
    let ejections = ejections_of_c();
    assert!(
        ejections >= 2,
        "c was ejected, then failed a probe: {ejections}"
    );
    assert!(
        after_first <= (THRESHOLD as usize - 1) + probes,
        "{after_first} attempts went to dead c after its first refusal; {probes} probes"
    );
    // c comes back into service (if the run ended before its probe, the next
    // requests probe it).
    within("c back in service", async {
        for i in 0.. {
            if send(&svc, Method::GET, &format!("after-{i}")).await.body == "c" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        health_of(&set, &c.url()),
        Health::Healthy,
        "{:?}",
        set.health()
    );
    assert_eq!(set.in_flight(), 0, "no attempt is left counted");
    eprintln!(
        "load: {failed_posts} POSTs caught by the kill; c: {after_first} attempts after its \
         first refusal, {probes} probes, {ejections} ejections"
    );
}

#[tokio::test]
async fn a_replica_answering_grpc_unavailable_is_ejected_when_asked() {
    use tower_bad_gateway::GrpcCode;
    // A replica that answers every call trailers-only `UNAVAILABLE`, and a good one.
    let shedding = Recorder::start(vec![Script::Respond(
        200,
        vec![("content-type", "application/grpc"), ("grpc-status", "14")],
        "",
    )])
    .await;
    let good = Replica::start("good").await;
    let shedding_url = format!("http://{}", shedding.addr);
    for (policy, ejected) in [
        (HealthPolicy::new().consecutive_failures(2), false),
        (
            HealthPolicy::new()
                .consecutive_failures(2)
                .count_on(GrpcCode::Unavailable),
            true,
        ),
    ] {
        let set = EndpointSet::from_urls([shedding_url.as_str(), good.url().as_str()])
            .unwrap()
            .health_policy(policy);
        let svc = GatewayLayer::new()
            .upstreams(set.clone())
            .max_attempts(1)
            .layer(client());
        let before = shedding.received().len();
        for i in 0..30 {
            let answer = send(&svc, Method::POST, &format!("call-{i}")).await;
            assert_eq!(answer.status, 200);
        }
        let reached = shedding.received().len() - before;
        if ejected {
            assert_eq!(reached, 2, "it took the threshold, then was ejected");
            assert!(matches!(
                health_of(&set, &shedding_url),
                Health::Ejected { .. }
            ));
        } else {
            assert!(reached > 2, "not counted: it keeps its share ({reached})");
            assert_eq!(health_of(&set, &shedding_url), Health::Healthy);
        }
    }
}

/// The layers composed by hand, as the module docs say: `RetryLayer` above
/// `UpstreamsLayer` above the client. A refused attempt goes to the other replica.
#[tokio::test]
async fn composed_by_hand_a_retry_goes_to_the_other_replica() {
    use tower::ServiceBuilder;
    use tower_bad_gateway::BadGatewayLayer;
    use tower_bad_gateway::retry::{ReplayBody, RetryLayer};
    use tower_bad_gateway::upstreams::UpstreamsLayer;
    let good = Replica::start("good").await;
    let dead = Replica::start("dead").await;
    dead.kill();
    let set = EndpointSet::from_urls([dead.url(), good.url()]).unwrap();
    let client = Counting::new(hyper_client::<ReplayBody<TestBody>>());
    let svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(RetryLayer::new(no_backoff()))
        .layer(UpstreamsLayer::new(set))
        .service(client.clone());
    for i in 0..10 {
        let answer = send(&svc, Method::POST, &i.to_string()).await;
        assert_eq!(
            (answer.status, &answer.body[..]),
            (StatusCode::OK, &b"good"[..])
        );
    }
    assert!(
        client.calls_to(dead.addr) <= 5,
        "the dead one is ejected after 5"
    );
    let mut seen = good.seen();
    seen.sort_by_key(|id| id.parse::<u32>().unwrap());
    assert_eq!(
        seen,
        (0..10).map(|i: u32| i.to_string()).collect::<Vec<_>>()
    );
}

/// A retry on an upstream's status (an opted-in `503`) goes to the other replica
/// too: the answer names the endpoint it came from.
#[tokio::test]
async fn a_retry_on_a_503_goes_to_the_other_replica() {
    let busy = Recorder::start(vec![Script::Respond(503, vec![], "busy")]).await;
    let good = Replica::start("good").await;
    let set = EndpointSet::from_urls([format!("http://{}", busy.addr), good.url()]).unwrap();
    let svc = GatewayLayer::new()
        .upstreams(set)
        .retry_policy(no_backoff().retry_on(StatusCode::SERVICE_UNAVAILABLE))
        .layer(client());
    every_retry_leaves_the_busy_replica(&svc, &busy, Method::GET).await;
}

/// A gRPC call retried for the `grpc-status` of an HTTP 200 answer (a trailers-only
/// `UNAVAILABLE`) goes to the other replica too: the answer of a `POST` is looked
/// at for its gRPC status, as a failing HTTP status is.
#[tokio::test]
async fn a_grpc_call_retried_for_its_status_goes_to_the_other_replica() {
    use tower_bad_gateway::GrpcCode;
    let unavailable = vec![("content-type", "application/grpc"), ("grpc-status", "14")];
    let busy = Recorder::start(vec![Script::Respond(200, unavailable, "")]).await;
    let good = Replica::start("good").await;
    let set = EndpointSet::from_urls([format!("http://{}", busy.addr), good.url()]).unwrap();
    let policy = no_backoff()
        .retry_on(GrpcCode::Unavailable)
        .idempotent_if(|_| true);
    let svc = GatewayLayer::new()
        .upstreams(set)
        .retry_policy(policy)
        .layer(client());
    every_retry_leaves_the_busy_replica(&svc, &busy, Method::POST).await;
}

/// Twenty requests through `svc`, each answered by the good replica; those that
/// went to `busy` first (each named by its `x-id`) went there once, never back.
async fn every_retry_leaves_the_busy_replica<S, B>(svc: &S, busy: &Recorder, method: Method)
where
    S: Service<Request<TestBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for i in 0..20 {
        let answer = send(svc, method.clone(), &format!("{method}-{i}")).await;
        assert_eq!(
            (answer.status, &answer.body[..]),
            (StatusCode::OK, &b"good"[..])
        );
    }
    let mut ids: Vec<String> = busy
        .headers()
        .iter()
        .filter_map(|h| h.get("x-id")?.to_str().ok().map(str::to_owned))
        .collect();
    let hits = ids.len();
    ids.dedup();
    assert!(hits > 0, "no request went to the busy replica (odds 2^-20)");
    assert_eq!(ids.len(), hits, "a retry went back to the busy replica");
}

mod checks;
mod dns;
mod fleet;

/// The retry event names the replica that failed (the failure's next hop), not
/// the URI above the set, and the request it belongs to.
#[tokio::test]
async fn the_retry_event_names_the_replica_that_failed_and_the_request() {
    let events = EventLog::install();
    let (good, dead) = (Replica::start("good").await, Replica::start("dead").await);
    dead.kill();
    let set = EndpointSet::from_urls([good.url(), dead.url()]).unwrap();
    // The requests' id is in `x-id`: the renderer says so, and the retry event
    // reads the same header.
    let renderer = tower_bad_gateway::render::Renderer::new()
        .request_id_header(http::HeaderName::from_static("x-id"));
    let svc = GatewayLayer::new()
        .bad_gateway(tower_bad_gateway::BadGatewayLayer::new().renderer(renderer))
        .upstreams(set)
        .retry_policy(no_backoff())
        .layer(client());
    // Until a request's first attempt goes to the dead replica and is retried.
    for i in 0..50 {
        assert_eq!(send(&svc, Method::GET, &format!("r-{i}")).await.status, 200);
        if events.messages().iter().any(|e| e.contains("retrying")) {
            break;
        }
    }
    let messages = events.messages();
    let retry = messages
        .iter()
        .find(|e| e.contains("retrying"))
        .expect("a retry");
    let port = dead.addr.port().to_string();
    assert!(retry.contains(&format!("server.port={port} ")), "{retry}");
    assert!(retry.contains("url.path=/orders"), "{retry}");
    assert!(retry.contains("request_id=r-"), "{retry}");
}
