//! The whole stack in front of an upstream that, per request at random (seeded),
//! answers, resets, stalls, cuts its body or answers garbage. Thousands of
//! requests, GET and POST with bodies, over HTTP/1.1 and HTTP/2 at high
//! concurrency; for every single one: exactly one answer, either the upstream's
//! (byte-identical) or a well-formed 502/503/504 with a valid `Proxy-Status`; never
//! later than the deadline plus a margin; and no POST reaches the upstream twice.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_bad_gateway::GatewayLayer;

const DEADLINE: Duration = Duration::from_millis(800);
/// A shared 2-core machine under load: generous, but far below [`STALL`], so a
/// request that waited for a stalled upstream to give up still fails.
const MARGIN: Duration = Duration::from_secs(10);
/// The longest a stalling upstream holds its connection (it lets go as soon as
/// the gateway closes its side).
const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Answer,
    Reset,
    Stall,
    CutBody,
    Garbage,
}

/// The fault for an attempt: seeded by the request id and the attempt number, so a
/// retry may meet another fault.
fn fault(id: u64, attempt: u64) -> Fault {
    let mut z =
        id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ attempt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    match (z ^ (z >> 29)) % 20 {
        0..=11 => Fault::Answer,
        12..=13 => Fault::Reset,
        14 => Fault::Stall,
        15..=17 => Fault::CutBody,
        _ => Fault::Garbage,
    }
}

/// What the upstream saw: how many times each request id reached it, by method.
type Seen = Arc<Mutex<HashMap<u64, (Method, u64)>>>;

async fn upstream(seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, seen.clone()));
        }
    });
    addr
}

/// One connection: reads requests (head and `content-length` body) and misbehaves.
async fn serve(mut stream: TcpStream, seen: Seen) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until_head_end(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let method = head.split(' ').next().unwrap_or("").to_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let id: u64 = header("x-test-id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[end..end + length].to_vec();
        buf.drain(..end + length);
        let attempt = {
            let mut seen = seen.lock().unwrap();
            let entry = seen
                .entry(id)
                .or_insert((Method::from_bytes(method.as_bytes()).unwrap(), 0));
            entry.1 += 1;
            entry.1
        };
        let answer = expected_body(id, &body);
        match fault(id, attempt) {
            Fault::Answer => {
                // Head and body in one write: a loaded machine cannot put a
                // pause between them that the body idle timeout would cut.
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    answer.len()
                )
                .into_bytes();
                reply.extend_from_slice(&answer);
                if stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
            Fault::Reset => {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                return;
            }
            Fault::Stall => {
                // Far past the attempt timeout and the deadline: until the gateway
                // gives up and closes (so stalled connections do not pile up), at
                // most STALL.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(STALL, async {
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
                return;
            }
            Fault::CutBody => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    answer.len() + 100
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
                return;
            }
            Fault::Garbage => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                return;
            }
        }
    }
}

async fn read_until_head_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(pos + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The upstream's answer to request `id` with `body`: the id, then the body echoed.
fn expected_body(id: u64, body: &[u8]) -> Vec<u8> {
    let mut answer = format!("answer {id}\n").into_bytes();
    answer.extend_from_slice(body);
    answer
}

/// A request body for `id`: a few hundred bytes to a few KiB.
fn body_for(id: u64) -> Bytes {
    let len = 100 + (id as usize * 7919) % 4000;
    Bytes::from(
        (0..len)
            .map(|i| b'a' + ((i as u64 + id) % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

async fn gateway(upstream: SocketAddr) -> SocketAddr {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let proxy = ServiceBuilder::new()
        .map_request(move |mut req: axum::extract::Request| {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            *req.uri_mut() = format!("http://{upstream}{path}").parse().unwrap();
            // The upstream speaks HTTP/1.1 whatever the caller spoke.
            *req.version_mut() = http::Version::HTTP_11;
            req
        })
        .layer(
            GatewayLayer::new()
                .max_attempts(3)
                .attempt_timeout(Duration::from_millis(250))
                .retry_timeouts(true)
                .body_idle_timeout(Duration::from_millis(250))
                .deadline(DEADLINE),
        )
        .service(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: axum::Router = axum::Router::new().fallback_service(proxy);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Debug)]
enum Outcome {
    /// The upstream's answer, complete.
    Upstream,
    /// A synthetic 5xx.
    Synthetic(StatusCode, String),
    /// The head went out, then the body was cut (never ended cleanly).
    CutAfterHead,
    /// No head reached the client: only after a body failure, when the stream's
    /// reset (HTTP/2) or the connection's abort arrives with the head it follows.
    Aborted,
}

/// One upstream, one gateway and a client per protocol, shared by every run (so
/// a soak measures the gateway, not servers piling up).
struct Rig {
    seen: Seen,
    gateway: SocketAddr,
    http1: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    http2: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Rig {
    async fn start() -> Self {
        let seen: Seen = Arc::default();
        let gateway = gateway(upstream(seen.clone()).await).await;
        let client = |http2| {
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build_http::<Full<Bytes>>()
        };
        Self {
            seen,
            gateway,
            http1: client(false),
            http2: client(true),
        }
    }
}

async fn run(rig: &Rig, requests: u64, concurrency: usize, http2: bool) {
    rig.seen.lock().unwrap().clear();
    let (seen, gateway) = (rig.seen.clone(), rig.gateway);
    let client = if http2 {
        rig.http2.clone()
    } else {
        rig.http1.clone()
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let offset = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * 10_000_000;
    for n in 0..requests {
        let id = offset + n;
        let (client, permit) = (
            client.clone(),
            semaphore.clone().acquire_owned().await.unwrap(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let method = if id % 2 == 0 {
                Method::GET
            } else {
                Method::POST
            };
            let body = if method == Method::POST {
                body_for(id)
            } else {
                Bytes::new()
            };
            let req = Request::builder()
                .method(method.clone())
                .uri(format!("http://{gateway}/item/{id}"))
                .header("x-test-id", id.to_string())
                .body(Full::new(body.clone()))
                .unwrap();
            let start = Instant::now();
            let outcome = match client.request(req).await {
                Err(_) => Outcome::Aborted,
                Ok(res) => {
                    let status = res.status();
                    let proxy_status = res
                        .headers()
                        .get("proxy-status")
                        .map(|v| v.to_str().unwrap().to_owned());
                    match (res.into_body().collect().await, proxy_status) {
                        (Ok(collected), None) => {
                            let got = collected.to_bytes();
                            assert_eq!(status, StatusCode::OK, "request {id}");
                            assert_eq!(
                                got,
                                expected_body(id, &body),
                                "request {id}: not the upstream's body"
                            );
                            Outcome::Upstream
                        }
                        (Ok(_), Some(proxy_status)) => Outcome::Synthetic(status, proxy_status),
                        (Err(_), _) => Outcome::CutAfterHead,
                    }
                }
            };
            (id, method, outcome, start.elapsed())
        }));
    }
    let mut tally: HashMap<&'static str, usize> = HashMap::new();
    for task in tasks {
        let (id, method, outcome, took) = task.await.expect("a request task panicked");
        assert!(
            took <= DEADLINE + MARGIN,
            "request {id} answered after {took:?}"
        );
        let name = match &outcome {
            Outcome::Upstream => "upstream",
            Outcome::Synthetic(status, proxy_status) => {
                assert!(
                    matches!(status.as_u16(), 502..=504),
                    "request {id}: {status}"
                );
                let list = sfv::Parser::new(proxy_status.as_str()).parse::<sfv::List>();
                assert!(
                    list.is_ok(),
                    "request {id}: bad Proxy-Status {proxy_status:?}"
                );
                "synthetic"
            }
            Outcome::CutAfterHead => "cut after head",
            Outcome::Aborted => "aborted",
        };
        *tally.entry(name).or_default() += 1;
        if matches!(outcome, Outcome::CutAfterHead | Outcome::Aborted) {
            // Only a body that failed after its head (a cut or stalled body) may
            // end like this, and only if that was the last attempt's fault.
            let last = seen.lock().unwrap().get(&id).map_or(0, |(_, n)| *n);
            assert!(
                matches!(fault(id, last), Fault::CutBody | Fault::Stall),
                "request {id} ({method}) ended {outcome:?} after {:?}",
                fault(id, last)
            );
        }
    }
    for (id, (method, count)) in seen.lock().unwrap().iter() {
        if *method == Method::POST {
            assert_eq!(*count, 1, "POST {id} reached the upstream {count} times");
        }
    }
    assert_eq!(
        tally.values().sum::<usize>() as u64,
        requests,
        "exactly one answer each"
    );
    assert!(
        tally.get("upstream").copied().unwrap_or(0) > 0
            && tally.get("synthetic").copied().unwrap_or(0) > 0,
        "{tally:?}"
    );
    eprintln!(
        "{} over HTTP/{}: {tally:?}",
        requests,
        if http2 { 2 } else { 1 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_well_formed_answer_over_http1() {
    run(&Rig::start().await, 10_000, 64, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_well_formed_answer_over_http2() {
    run(&Rig::start().await, 10_000, 64, true).await;
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// The soak: ten times the load, and memory must stay flat once warm.
/// `cargo test --release --test it load_under_faults -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak: minutes of load; run with --ignored"]
async fn soak_keeps_memory_flat() {
    let rig = Rig::start().await;
    run(&rig, 20_000, 128, false).await;
    run(&rig, 20_000, 128, true).await;
    // Let the stalled upstream connections (the test's own) end before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let warm = rss();
    for round in 0..3 {
        run(&rig, 20_000, 128, false).await;
        run(&rig, 20_000, 128, true).await;
        eprintln!("after round {round}: RSS {} MiB", rss() >> 20);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss();
    eprintln!(
        "RSS warm {} MiB, after 120 000 more requests {} MiB",
        warm >> 20,
        after >> 20
    );
    assert!(
        after < warm + (64 << 20),
        "RSS grew from {warm} to {after} bytes"
    );
}
