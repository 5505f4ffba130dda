//! Fleet failures: a blip that hits every replica must not outlast its cause, a
//! set that is all dead still fails fast, and endpoints ejected together do not
//! probe together. Real replicas on loopback, tokio's clock held still.

use super::{client, health_of, send};
use crate::support::{Frozen, Replica};
use http::{Method, StatusCode};
use std::time::Duration;
use tower::Layer;
use tower_bad_gateway::GatewayLayer;
use tower_bad_gateway::retry::RetryPolicy;
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthPolicy};

/// Before: all three replicas down for a moment were each ejected for the 10 s
/// base ejection, and clients got `503` for 10 s after the replicas were back.
/// Now one of the three (the 10% share, at least one) is out for 10 s, the others
/// for about a second: clients are served again within about a second.
#[tokio::test(start_paused = true)]
async fn a_blip_that_hits_every_replica_ends_within_about_a_second_of_its_cause() {
    let clock = Frozen::hold();
    let replicas = [
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    // The defaults, but for a threshold that the test reaches in few requests.
    let set = EndpointSet::from_urls(&urls)
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(2));
    let client = client();
    // No backoff: on a frozen clock a retry's wait would never end.
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client.clone());
    assert_eq!(send(&svc, Method::GET, "before").await.status, 200);

    for replica in &replicas {
        replica.kill();
    }
    // Until every replica is out: each refusal is retried on another, so each
    // request costs up to three of them.
    for i in 0..10 {
        let status = send(&svc, Method::GET, &format!("down-{i}")).await.status;
        assert!(status == 502 || status == 503, "{status}");
        if status == 503 {
            break;
        }
    }
    let health: Vec<Health> = urls.iter().map(|u| health_of(&set, u)).collect();
    let long = health
        .iter()
        .filter(
            |h| matches!(h, Health::Ejected { probe_in } if *probe_in >= Duration::from_secs(9)),
        )
        .count();
    let short = health
        .iter()
        .filter(|h| matches!(h, Health::Ejected { probe_in } if *probe_in <= Duration::from_millis(1100)))
        .count();
    assert_eq!(
        (long, short),
        (1, 2),
        "one full ejection, two short: {health:?}"
    );

    // All out: fails fast, without a call, and says when to come back.
    let calls = client.calls();
    let fast = send(&svc, Method::GET, "all-out").await;
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after = fast.headers["retry-after"].to_str().unwrap();
    assert!(
        retry_after == "1" || retry_after == "2",
        "a probe within about a second (rounded up): {retry_after}"
    );
    assert_eq!(client.calls(), calls, "no attempt while everything is out");

    // The cause ends; about a second later clients are served again.
    for replica in &replicas {
        replica.restart().await;
    }
    clock.advance(Duration::from_millis(1100)).await;
    for i in 0..6 {
        let answer = send(&svc, Method::GET, &format!("after-{i}")).await;
        assert_eq!(
            answer.status, 200,
            "served again 1.1 s after the cause ended"
        );
    }
}

/// A set whose replicas are all plainly dead keeps failing fast: the short
/// ejections come back round, each probe fails, and between probes nothing is sent.
#[tokio::test(start_paused = true)]
async fn a_set_that_stays_dead_fails_fast_and_probes_about_once_a_second_per_replica() {
    let clock = Frozen::hold();
    let replicas = [Replica::start("a").await, Replica::start("b").await];
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    for replica in &replicas {
        replica.kill();
    }
    let set = EndpointSet::from_urls(&urls)
        .unwrap()
        .health_policy(HealthPolicy::new().consecutive_failures(1));
    let client = client();
    // No backoff: on a frozen clock a retry's wait would never end.
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client.clone());
    // Both ejected by the first request's two refusals (its third attempt finds
    // nothing left to try: 503).
    let first = send(&svc, Method::GET, "first").await.status;
    assert!(first == 502 || first == 503, "{first}");
    assert!(
        urls.iter()
            .all(|u| matches!(health_of(&set, u), Health::Ejected { .. }))
    );

    // Ten seconds of requests, ten a second: each replica is probed about once a
    // second (the short ejection), and everything else fails fast.
    let mut fast = 0;
    for i in 0..100 {
        clock.advance(Duration::from_millis(100)).await;
        let answer = send(&svc, Method::GET, &format!("r{i}")).await;
        assert!(
            answer.status == 502 || answer.status == 503,
            "{}",
            answer.status
        );
        if answer.status == 503 {
            fast += 1;
        }
    }
    let calls = client.calls();
    // 2 at first; then the replica beyond the share (two replicas: one may be out
    // for long) is probed about once a second, the other once, at about 10 s.
    assert!(
        (8..=16).contains(&calls),
        "{calls} attempts in 10 s: about one probe a second"
    );
    assert!(fast >= 80, "{fast} of 100 answered at once");
}

/// Endpoints ejected at the same instant are probed at different instants: each
/// ejection is jittered by up to 10%.
#[tokio::test(start_paused = true)]
async fn endpoints_ejected_together_do_not_probe_at_the_same_instant() {
    let _clock = Frozen::hold();
    let replicas = [
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
        Replica::start("d").await,
    ];
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    for replica in &replicas {
        replica.kill();
    }
    // Every endpoint may be ejected fully, so all four get the 10 s base ejection.
    let set = EndpointSet::from_urls(&urls).unwrap().health_policy(
        HealthPolicy::new()
            .consecutive_failures(1)
            .max_ejection_percent(100),
    );
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .max_attempts(4)
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client());
    assert_eq!(send(&svc, Method::GET, "all-refused").await.status, 502);
    let mut probes: Vec<Duration> = urls
        .iter()
        .map(|u| match health_of(&set, u) {
            Health::Ejected { probe_in } => probe_in,
            other => panic!("{u}: {other:?}"),
        })
        .collect();
    for probe_in in &probes {
        assert!(
            (Duration::from_secs(9)..=Duration::from_secs(11)).contains(probe_in),
            "{probe_in:?} is 10 s ± 10%"
        );
    }
    probes.sort();
    probes.dedup();
    assert!(probes.len() >= 3, "spread: {probes:?}");
}

/// A replica that closes the connection without answering on 3 of every 10
/// requests it reads (never more than 3 in a row): a gray failure, which 5
/// failures in a row never catch. Returns its URL; it serves until the test ends.
async fn gray_replica() -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = req.into_body().collect().await;
                        if n % 10 < 3 {
                            // An error closes the connection before any answer.
                            return Err("gray");
                        }
                        Ok(http::Response::new(Full::new(bytes::Bytes::from_static(
                            b"gray",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// POSTs, 8 at a time, through a `GatewayLayer` with the default health policy;
/// returns how many failed.
async fn failed_posts<S, B>(svc: &S, total: usize) -> usize
where
    S: tower::Service<
            http::Request<crate::support::TestBody>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let mut failed = 0;
    for batch in 0..total / 8 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..8 {
            let svc = svc.clone();
            set.spawn(async move {
                send(&svc, Method::POST, &format!("{batch}-{i}"))
                    .await
                    .status
            });
        }
        while let Some(status) = set.join_next().await {
            failed += usize::from(status.unwrap() != 200);
        }
    }
    failed
}

/// Before: one replica of three failing 30% of its requests, never five in a row,
/// was never ejected, and 5.5% of POSTs failed. Now its failure rate over a window
/// of 50 of its requests, well above its peers', ejects it: at most 1% fail.
///
/// On a frozen clock: however long a loaded machine takes over the 3,000, the
/// ejection cannot end within them (which would let the gray replica back for
/// another window: a count that depends on the machine's speed).
#[tokio::test(start_paused = true)]
async fn a_gray_replica_failing_a_third_of_its_requests_is_ejected_and_few_posts_fail() {
    let events = crate::support::EventLog::install();
    let _clock = Frozen::hold();
    let good = [Replica::start("a").await, Replica::start("b").await];
    let gray = gray_replica().await;
    let mut urls: Vec<String> = good.iter().map(|r| r.url()).collect();
    urls.push(gray.clone());
    let set = EndpointSet::from_urls(&urls).unwrap();
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client());
    let failed = failed_posts(&svc, 3000).await;
    eprintln!("{failed} of 3000 POSTs failed");
    assert!(failed <= 30, "{failed} of 3000 POSTs failed");
    assert!(
        matches!(health_of(&set, &gray), Health::Ejected { .. }),
        "the gray replica is out: {:?}",
        health_of(&set, &gray)
    );
    // Its ejection is one event, which names the rule and its figures.
    let ejected: Vec<String> = events
        .messages()
        .into_iter()
        .filter(|m| {
            m.contains("upstream endpoint ejected")
                && m.contains(gray.trim_start_matches("http://"))
        })
        .collect();
    assert!(!ejected.is_empty());
    assert!(
        ejected.iter().all(|m| m.contains("reason=failure_rate ")
            && m.contains(" failure_rate_permille=")
            && m.contains(" peers_failure_rate_permille=")
            && !m.contains(" failures=")),
        "{ejected:?}"
    );
}

/// When every replica fails alike, the fleet is the problem: no replica's rate
/// stands above its peers', and none is ejected for it.
#[tokio::test(start_paused = true)]
async fn a_fleet_failing_evenly_ejects_nothing_by_failure_rate() {
    let _clock = Frozen::hold();
    let urls = [
        gray_replica().await,
        gray_replica().await,
        gray_replica().await,
    ];
    let set = EndpointSet::from_urls(&urls).unwrap();
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client());
    let failed = failed_posts(&svc, 800).await;
    assert!(failed > 100, "the fleet does fail: {failed} of 800");
    for url in &urls {
        assert_eq!(health_of(&set, url), Health::Healthy, "{url}");
    }
}

/// Slow start: a replica restored after an ejection ramps its share up over the
/// window instead of taking a full share at once.
#[tokio::test(start_paused = true)]
async fn a_restored_replica_ramps_its_share_up_over_the_slow_start_window() {
    let clock = Frozen::hold();
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    b.kill();
    let set = EndpointSet::from_urls([a.url(), b.url()])
        .unwrap()
        .health_policy(
            HealthPolicy::new()
                .no_jitter()
                .consecutive_failures(1)
                .slow_start(Duration::from_secs(10)),
        );
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(RetryPolicy::new().no_backoff())
        .layer(client());
    // A request that picks b is refused there and retried on a.
    for i in 0..50 {
        assert_eq!(
            send(&svc, Method::GET, &format!("eject-{i}")).await.status,
            200
        );
        if health_of(&set, &b.url()) != Health::Healthy {
            break;
        }
    }
    assert!(matches!(health_of(&set, &b.url()), Health::Ejected { .. }));
    b.restart().await;
    clock.advance(Duration::from_secs(10)).await;
    for i in 0..50 {
        assert_eq!(
            send(&svc, Method::GET, &format!("probe-{i}")).await.status,
            200
        );
        if health_of(&set, &b.url()) == Health::Healthy {
            break;
        }
    }
    assert_eq!(
        health_of(&set, &b.url()),
        Health::Healthy,
        "its probe restored it"
    );

    let share_of_b = |n: usize, tag: &'static str| {
        let svc = svc.clone();
        let b = b.clone();
        async move {
            let before = b.seen().len();
            for i in 0..n {
                assert_eq!(
                    send(&svc, Method::GET, &format!("{tag}-{i}")).await.status,
                    200
                );
            }
            b.seen().len() - before
        }
    };
    // A tenth of the window in: about a tenth of its full share (half, of two).
    clock.advance(Duration::from_secs(1)).await;
    let early = share_of_b(400, "early").await;
    // The window over: its full share.
    clock.advance(Duration::from_secs(9)).await;
    let late = share_of_b(400, "late").await;
    assert!(
        (1..=60).contains(&early),
        "{early} of 400 a second into the ramp"
    );
    assert!(late >= 140, "{late} of 400 once ramped up");
}
