//! Active health checks over real loopback replicas: a replica that fails its
//! checks is taken out before a request fails on it, one that comes back is
//! restored by the checker with no user request failing, gRPC `NOT_SERVING`
//! takes a replica out, a refused TCP connect does, and no endpoint is checked
//! more than once an interval. Tokio's clock held still; checks on real sockets.

use super::{client, health_of, no_backoff, send};
use crate::support::{Frozen, Replica, eventually, hyper_client};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Layer;
use tower_bad_gateway::GatewayLayer;
use tower_bad_gateway::upstreams::{EndpointSet, Health, HealthCheck, HealthPolicy};

/// A replica whose `/healthz` answers the status the test sets; every other path
/// answers `200` with its name. Counts its checks and records its user requests'
/// `x-id`s. Killable (connecting is refused) and restartable on its port.
struct HealthServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    /// While `true`, `/healthz` answers nothing.
    hang: tokio::sync::watch::Sender<bool>,
    checks: Arc<AtomicUsize>,
    users: Arc<Mutex<Vec<String>>>,
    task: Mutex<Option<tokio::task::JoinSet<()>>>,
}

impl HealthServer {
    async fn start(name: &'static str) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(200)),
            hang: tokio::sync::watch::Sender::new(false),
            checks: Arc::default(),
            users: Arc::default(),
            task: Mutex::new(None),
        });
        server.serve(listener, name);
        server
    }

    fn serve(&self, listener: TcpListener, name: &'static str) {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let (status, checks, users) =
            (self.status.clone(), self.checks.clone(), self.users.clone());
        let hang = self.hang.subscribe();
        let mut set = tokio::task::JoinSet::new();
        set.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (status, checks, users) = (status.clone(), checks.clone(), users.clone());
                let hang = hang.clone();
                conns.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let health = req.uri().path() == "/healthz";
                        let answer = if health {
                            checks.fetch_add(1, Ordering::SeqCst);
                            let status =
                                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                            let mut res = Response::new(Full::new(Bytes::from_static(b"health")));
                            *res.status_mut() = status;
                            res
                        } else {
                            let id = req.headers().get("x-id").and_then(|v| v.to_str().ok());
                            users.lock().unwrap().push(id.unwrap_or("").to_owned());
                            Response::new(Full::new(Bytes::from_static(name.as_bytes())))
                        };
                        let mut hang = hang.clone();
                        async move {
                            if health {
                                let _ = hang.wait_for(|h| !*h).await;
                            }
                            Ok::<_, Infallible>(answer)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.task.lock().unwrap() = Some(set);
    }

    /// Closes the listener and every connection: connecting is refused.
    fn kill(&self) {
        drop(self.task.lock().unwrap().take());
    }

    async fn restart(&self, name: &'static str) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        self.serve(socket.listen(1024).unwrap(), name);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    fn users(&self) -> Vec<String> {
        self.users.lock().unwrap().clone()
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks every second, exactly, from the moment they start.
fn every_second(check: HealthCheck) -> HealthCheck {
    check.interval(Duration::from_secs(1)).no_jitter()
}

/// The checker's client: hyper-util's, reading each answer whole before handing
/// it over and counting the checks answered so far. On the test's one thread, a
/// check counted is a check whose outcome the checker has applied, so the test
/// moves time on only once each check is over.
#[derive(Clone)]
struct Answered<C> {
    inner: C,
    answered: Arc<AtomicUsize>,
}

type Collected = http_body_util::Collected<Bytes>;

impl<C> tower::Service<Request<Full<Bytes>>> for Answered<C>
where
    C: tower::Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    C::Future: Send,
    C::Error: Into<tower_bad_gateway::BoxError>,
{
    type Response = Response<Collected>;
    type Error = tower_bad_gateway::BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let (inner, answered) = (self.inner.clone(), self.answered.clone());
        Box::pin(async move {
            let answer = inner.oneshot(req).await.map_err(Into::into);
            let answer = match answer {
                Ok(res) => {
                    let (parts, body) = res.into_parts();
                    body.collect()
                        .await
                        .map(|b| Response::from_parts(parts, b))
                        .map_err(Into::into)
                }
                Err(e) => Err(e),
            };
            answered.fetch_add(1, Ordering::SeqCst);
            answer
        })
    }
}

impl<C> Answered<C> {
    fn new(inner: C) -> Self {
        Self {
            inner,
            answered: Arc::default(),
        }
    }

    /// Waits (real time) until `n` checks have been answered and applied.
    async fn until(&self, n: usize) {
        let answered = self.answered.clone();
        eventually(&format!("{n} checks answered"), || {
            answered.load(Ordering::SeqCst) >= n
        })
        .await;
    }
}

fn checker_client() -> Answered<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
> {
    Answered::new(hyper_client())
}

/// A tonic server with only the standard health service, on loopback: its
/// reporter, and its URL.
async fn grpc_replica() -> (tonic_health::server::HealthReporter, String) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (reporter, url)
}

/// The checker's client for gRPC checks: HTTP/2 with prior knowledge.
fn h2_checker_client() -> Answered<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
> {
    Answered::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http(),
    )
}

/// A set of two replicas that one failure ejects, checked so rarely (hourly) that
/// only the probe at an ejection's end is a check in the test's time; both first
/// checks answered.
async fn rarely_checked(
    urls: [String; 2],
) -> (
    EndpointSet,
    Answered<
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Full<Bytes>,
        >,
    >,
) {
    let set = EndpointSet::from_urls(urls)
        .unwrap()
        .health_policy(HealthPolicy::new().no_jitter().consecutive_failures(1));
    let check = HealthCheck::http("/healthz")
        .unwrap()
        .interval(Duration::from_secs(3600))
        .no_jitter();
    let checks = checker_client();
    tokio::spawn(set.health_checks(check, checks.clone()));
    checks.until(2).await;
    (set, checks)
}

/// Sends GETs until the replica at `url` is ejected (each refusal retried on the
/// other): how many failed.
async fn until_ejected<S, B>(svc: &S, set: &EndpointSet, url: &str) -> usize
where
    S: tower::Service<
            Request<crate::support::TestBody>,
            Response = Response<B>,
            Error = Infallible,
        > + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut failed = 0;
    for i in 0..40 {
        let answer = send(svc, Method::GET, &format!("dead-{i}")).await;
        failed += usize::from(answer.status != 200);
        if matches!(health_of(set, url), Health::Ejected { .. }) {
            break;
        }
    }
    assert!(matches!(health_of(set, url), Health::Ejected { .. }));
    failed
}

#[tokio::test(start_paused = true)]
async fn a_replica_failing_its_checks_is_taken_out_and_passing_again_brings_it_back() {
    let clock = Frozen::hold();
    let (a, b) = (
        HealthServer::start("a").await,
        HealthServer::start("b").await,
    );
    let set = EndpointSet::from_urls([a.url(), b.url()]).unwrap();
    let check = every_second(HealthCheck::http("/healthz").unwrap());
    let checks = checker_client();
    // b says it is unhealthy: checks at 0 s, 1 s and 2 s fail; the third takes it down.
    b.status.store(503, Ordering::SeqCst);
    tokio::spawn(set.health_checks(check, checks.clone()));
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(client());

    // Two checks each second (one per replica).
    checks.until(2).await;
    for n in 2..=3 {
        assert_eq!(
            health_of(&set, &b.url()),
            Health::Healthy,
            "{} failures are not three",
            n - 1
        );
        clock.advance(Duration::from_secs(1)).await;
        checks.until(2 * n).await;
    }
    assert!(matches!(health_of(&set, &b.url()), Health::Down { .. }));
    assert_eq!(health_of(&set, &a.url()), Health::Healthy);

    // No request goes to b while it is down.
    let before = b.users().len();
    for i in 0..20 {
        let answer = send(&svc, Method::POST, &format!("down-{i}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "a");
    }
    assert_eq!(
        b.users().len(),
        before,
        "a request went to a replica that is down"
    );

    // b is healthy again: one passing check is not enough, two are.
    b.status.store(200, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1)).await;
    checks.until(8).await;
    assert!(matches!(health_of(&set, &b.url()), Health::Down { .. }));
    clock.advance(Duration::from_secs(1)).await;
    checks.until(10).await;
    assert_eq!(health_of(&set, &b.url()), Health::Healthy);
    let mut served_by_b = 0;
    for i in 0..20 {
        let answer = send(&svc, Method::POST, &format!("up-{i}")).await;
        assert_eq!(answer.status, 200);
        served_by_b += usize::from(answer.body == "b");
    }
    assert!(served_by_b > 0, "b takes requests again");
}

/// A replica ejected by requests (passive health) that comes back is restored by
/// the checker's probe when its ejection ends: no user request is its probe, so
/// none fails on it.
#[tokio::test(start_paused = true)]
async fn an_ejected_replica_that_comes_back_is_restored_by_the_checker_with_no_user_request_failing()
 {
    let clock = Frozen::hold();
    let (a, b) = (
        HealthServer::start("a").await,
        HealthServer::start("b").await,
    );
    let (set, checks) = rarely_checked([a.url(), b.url()]).await;
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(client());

    b.kill();
    let mut failed = until_ejected(&svc, &set, &b.url()).await;

    // b comes back during its ejection, its health answer slow; the ejection
    // (10 s) ends.
    b.restart("b").await;
    b.hang.send_replace(true);
    clock.advance(Duration::from_secs(10)).await;
    // Its probe is the checker's: while that check is under way, no user request
    // goes to b, though its ejection is over.
    eventually("b's probe check", || b.checks() == 2).await;
    for i in 0..20 {
        let answer = send(&svc, Method::POST, &format!("probing-{i}")).await;
        failed += usize::from(answer.status != 200);
    }
    assert!(
        b.users().is_empty(),
        "a user request was b's probe: {:?}",
        b.users()
    );
    // The check passes and restores b.
    b.hang.send_replace(false);
    checks.until(3).await;
    assert_eq!(health_of(&set, &b.url()), Health::Healthy);
    for i in 0..20 {
        let answer = send(&svc, Method::POST, &format!("after-{i}")).await;
        failed += usize::from(answer.status != 200);
    }
    assert_eq!(failed, 0, "no user request failed");
    assert!(!b.users().is_empty(), "b takes requests again");
}

/// A probe check that fails ejects the replica again, for twice as long, still
/// without a user request going to it.
#[tokio::test(start_paused = true)]
async fn a_failed_probe_check_ejects_again_for_twice_as_long() {
    let clock = Frozen::hold();
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let (set, checks) = rarely_checked([a.url(), b.url()]).await;
    let svc = GatewayLayer::new()
        .upstreams(set.clone())
        .retry_policy(no_backoff())
        .layer(client());
    b.kill();
    assert_eq!(until_ejected(&svc, &set, &b.url()).await, 0);
    clock.advance(Duration::from_secs(10)).await;
    checks.until(3).await;
    assert_eq!(
        health_of(&set, &b.url()),
        Health::Ejected {
            probe_in: Duration::from_secs(20)
        },
        "the probe check failed: ejected again, for twice as long"
    );
    let users: Vec<String> = b.seen().into_iter().filter(|id| !id.is_empty()).collect();
    assert!(
        users.is_empty() || users.len() == 1,
        "at most the first request, before the ejection: {users:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_replica_answering_not_serving_is_taken_out_and_serving_brings_it_back() {
    use tonic_health::ServingStatus;
    let clock = Frozen::hold();
    let (reporter, url) = grpc_replica().await;
    let set = EndpointSet::from_urls([&url]).unwrap();
    let checks = h2_checker_client();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let check = every_second(HealthCheck::grpc()).unhealthy_threshold(2);
    tokio::spawn(set.health_checks(check, checks.clone()));

    // Two NOT_SERVING answers in a row (0 s, 1 s) take it down.
    checks.until(1).await;
    assert_eq!(health_of(&set, &url), Health::Healthy, "one is not two");
    clock.advance(Duration::from_secs(1)).await;
    checks.until(2).await;
    assert!(
        matches!(health_of(&set, &url), Health::Down { .. }),
        "{:?}",
        health_of(&set, &url)
    );

    // SERVING twice in a row brings it back.
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    for n in 3..=4 {
        clock.advance(Duration::from_secs(1)).await;
        checks.until(n).await;
    }
    assert_eq!(health_of(&set, &url), Health::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_check_of_a_named_service_the_server_does_not_know_fails() {
    let clock = Frozen::hold();
    let (_reporter, url) = grpc_replica().await;
    let set = EndpointSet::from_urls([&url]).unwrap();
    let checks = h2_checker_client();
    let check =
        every_second(HealthCheck::grpc().service("orders.v1.Orders")).unhealthy_threshold(1);
    tokio::spawn(set.health_checks(check, checks.clone()));
    checks.until(1).await;
    let _ = &clock;
    assert!(
        matches!(health_of(&set, &url), Health::Down { .. }),
        "NOT_FOUND is down"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tcp_check_takes_a_refusing_replica_down_and_restores_it_when_it_listens_again() {
    let clock = Frozen::hold();
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let set = EndpointSet::from_urls([a.url(), b.url()]).unwrap();
    b.kill();
    let check = every_second(HealthCheck::tcp())
        .unhealthy_threshold(1)
        .healthy_threshold(1);
    tokio::spawn(set.health_checks(check, checker_client()));
    eventually("b down", || {
        matches!(health_of(&set, &b.url()), Health::Down { .. })
    })
    .await;
    assert_eq!(health_of(&set, &a.url()), Health::Healthy);
    b.restart().await;
    clock.advance(Duration::from_secs(1)).await;
    eventually("b restored", || {
        health_of(&set, &b.url()) == Health::Healthy
    })
    .await;
    assert!(b.seen().is_empty(), "a TCP check sends no request");
}

/// Over 10 intervals, jittered, each endpoint gets its first check and then one
/// per interval at most: 10 or 11, never two within one interval.
#[tokio::test(start_paused = true)]
async fn each_endpoint_is_checked_at_most_once_an_interval_and_the_checks_spread() {
    let clock = Frozen::hold();
    let servers = [
        HealthServer::start("a").await,
        HealthServer::start("b").await,
        HealthServer::start("c").await,
    ];
    let set = EndpointSet::from_urls(servers.iter().map(|s| s.url())).unwrap();
    let checks = checker_client();
    let check = HealthCheck::http("/healthz")
        .unwrap()
        .interval(Duration::from_secs(1));
    tokio::spawn(set.health_checks(check, checks.clone()));
    // In steps of 10 ms, each step's checks answered before the next.
    let mut answered = 0;
    let mut at_step = Vec::new();
    for step in 0..1000 {
        let now = checks.answered.load(Ordering::SeqCst);
        if now > answered {
            at_step.push((step, now - answered));
            answered = now;
        }
        clock.advance(Duration::from_millis(10)).await;
        // Let a check that started run to its end (real time) before moving on.
        let busy = servers.iter().map(|s| s.checks()).sum::<usize>();
        checks.until(busy).await;
    }
    for server in &servers {
        let n = server.checks();
        assert!((9..=11).contains(&n), "{n} checks in 10 s of 1 s intervals");
    }
    // Checks of the three endpoints did not all fall at the same instants.
    let together = at_step.iter().filter(|(_, n)| *n == 3).count();
    assert!(
        together < at_step.len() / 2,
        "checks not spread: {at_step:?}"
    );
}
