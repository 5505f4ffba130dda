//! Every failure case of the core issue, produced by the real hyper-util legacy
//! `Client`, by reqwest (0.12 and 0.13, through `ReqwestService`) and by the
//! proxy's own `UpstreamClient` (a request without a body takes its own HTTP/1.1
//! path, one with a body goes through hyper) against deliberately broken upstreams on loopback, seen
//! through `BadGatewayLayer`: the status and `Proxy-Status` the client gets, and the
//! `GatewayError` (kind, phase, whether the request was sent) the layer made.

use crate::support;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{After, Upstream, blackhole_port, collect, refused_port};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::proxy::ClientBuilder;
use tower_bad_gateway::reqwest::ReqwestService;
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, Phase, RequestSent};

#[derive(Clone, Copy, Debug)]
enum Client {
    HyperUtil,
    Reqwest,
    Reqwest013,
    /// `proxy::UpstreamClient`, a `GET`: its own HTTP/1.1 path.
    Upstream,
    /// `proxy::UpstreamClient`, a `PUT` with a body: through hyper.
    UpstreamWithBody,
}

/// What a client of the gateway saw, and what the gateway reported.
struct Outcome {
    status: StatusCode,
    headers: HeaderMap,
    /// The `GatewayError` of a synthetic answer.
    answer_error: Option<GatewayError>,
    /// The body, or the error that ended it.
    body: Result<Bytes, GatewayError>,
    reported: usize,
    took: Duration,
}

impl Outcome {
    fn proxy_status(&self) -> &str {
        self.headers["proxy-status"].to_str().unwrap()
    }

    /// A failure answered before the head: status, Proxy-Status, kind, phase, sent.
    #[track_caller]
    fn assert_answer(&self, status: u16, kind: ErrorKind, phase: Phase, sent: RequestSent) {
        assert_eq!(self.status, status, "status");
        assert_eq!(
            self.proxy_status(),
            format!("tower-bad-gateway; error={}", kind.as_str()),
            "proxy-status"
        );
        let err = self
            .answer_error
            .as_ref()
            .expect("no GatewayError in the extensions");
        assert_eq!(
            (err.kind(), err.phase(), err.request_sent()),
            (kind, phase, sent),
            "{err:?}"
        );
        assert!(
            std::error::Error::source(err).is_some(),
            "the original error is kept"
        );
        assert_eq!(self.reported, 1, "reported exactly once");
    }

    /// A failure after the head went out: the body ends with the error, never cleanly.
    #[track_caller]
    fn assert_body_error(&self, kind: ErrorKind) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "the upstream's head passed through"
        );
        let err = self
            .body
            .as_ref()
            .expect_err("a failed body must not end cleanly");
        assert_eq!(err.kind(), kind, "{err:?}");
        assert_eq!(err.phase(), Phase::ReadBody);
        assert_eq!(err.request_sent(), RequestSent::Yes);
        assert_eq!(err.received_status(), Some(StatusCode::OK));
        assert_eq!(self.reported, 1, "reported exactly once");
    }
}

/// The timeouts in front of the hyper-based clients: 300 ms to the head, 300 ms
/// body idle.
fn timeouts() -> TimeoutLayer {
    TimeoutLayer::new()
        .attempt_timeout(Duration::from_millis(300))
        .body_idle_timeout(Duration::from_millis(300))
}

/// Calls `url` with `client` behind `BadGatewayLayer`. The hyper-util client sits
/// behind this crate's `TimeoutLayer` (300 ms to the head, 300 ms body idle);
/// reqwest uses its own 300 ms read timeout. Both connect with a 150 ms timeout.
async fn call(client: Client, url: &str) -> Outcome {
    let reported = Arc::new(AtomicUsize::new(0));
    let counter = reported.clone();
    let layer = BadGatewayLayer::new().on_failure(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let req = support::get(url);
    let start = Instant::now();
    let (status, headers, answer_error, body) = match client {
        Client::HyperUtil => {
            let mut svc = ServiceBuilder::new()
                .layer(layer)
                .layer(timeouts())
                .service(support::hyper_client::<Full<Bytes>>());
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            split(res).await
        }
        Client::Upstream | Client::UpstreamWithBody => {
            let mut svc = ServiceBuilder::new()
                .layer(layer)
                .layer(timeouts())
                .service(
                    ClientBuilder::new()
                        .connect_timeout(Duration::from_millis(150))
                        .build::<Full<Bytes>>(),
                );
            let req = match client {
                Client::Upstream => req,
                _ => Request::put(url).body(Full::from("a body")).unwrap(),
            };
            let res = svc.ready().await.unwrap().call(req).await.unwrap();
            split(res).await
        }
        Client::Reqwest013 => {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(150))
                .read_timeout(Duration::from_millis(300))
                .build()
                .unwrap();
            let mut svc = ServiceBuilder::new()
                .layer(layer)
                .service(tower_bad_gateway::reqwest013::ReqwestService::new(client));
            let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                .await
                .unwrap()
                .call(req)
                .await
                .unwrap();
            split(res).await
        }
        Client::Reqwest => {
            let mut svc = ServiceBuilder::new()
                .layer(layer)
                .service(reqwest_service());
            let res = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                .await
                .unwrap()
                .call(req)
                .await
                .unwrap();
            split(res).await
        }
    };
    Outcome {
        status,
        headers,
        answer_error,
        body,
        reported: reported.load(Ordering::SeqCst),
        took: start.elapsed(),
    }
}

async fn split<B>(
    res: Response<B>,
) -> (
    StatusCode,
    HeaderMap,
    Option<GatewayError>,
    Result<Bytes, GatewayError>,
)
where
    B: http_body::Body<Error = GatewayError>,
{
    let (parts, body) = res.into_parts();
    let answer_error = parts.extensions.get::<GatewayError>().cloned();
    (
        parts.status,
        parts.headers,
        answer_error,
        collect(body).await,
    )
}

/// reqwest, through this crate's `ReqwestService` adapter, with its own timeouts.
fn reqwest_service() -> ReqwestService {
    let client = reqwest012::Client::builder()
        .connect_timeout(Duration::from_millis(150))
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    ReqwestService::new(client)
}

const CLIENTS: [Client; 5] = [
    Client::HyperUtil,
    Client::Reqwest,
    Client::Reqwest013,
    Client::Upstream,
    Client::UpstreamWithBody,
];

/// Where a case's request goes.
enum Target {
    /// A port that refuses connections.
    Refused,
    /// A name that does not resolve.
    Unresolvable,
    /// A port where connecting hangs.
    Blackhole,
    /// An upstream that answers each request with these bytes, then does this.
    Raw(String, After),
}

/// What every client must see.
enum Expect {
    /// A failure answered before the head: status, kind, phase, sent.
    Answer(u16, ErrorKind, Phase, RequestSent),
    /// A failure after the head went out: the body ends with this kind.
    BodyError(ErrorKind),
    /// The upstream's answer, untouched: this body.
    Untouched(&'static str),
}

/// One failure case, tried with every client in [`CLIENTS`].
struct Case {
    target: Target,
    expect: Expect,
    /// The answer comes no sooner than this (a timeout's).
    no_sooner_than: Option<Duration>,
    /// Each client's request reached the upstream exactly once.
    reaches_upstream_once: bool,
}

impl Case {
    fn new(target: Target, expect: Expect) -> Self {
        Self {
            target,
            expect,
            no_sooner_than: None,
            reaches_upstream_once: false,
        }
    }

    fn no_sooner_than(self, time: Duration) -> Self {
        Self {
            no_sooner_than: Some(time),
            ..self
        }
    }

    fn reaches_upstream_once(self) -> Self {
        Self {
            reaches_upstream_once: true,
            ..self
        }
    }

    /// Runs the case with every client; a failure names the case and the client.
    async fn run(self, name: &str) {
        match &self.target {
            Target::Refused => {
                let port = refused_port();
                self.run_at(name, &format!("http://{}/", port.addr), None)
                    .await
            }
            Target::Unresolvable => self.run_at(name, "http://nonexistent.invalid/", None).await,
            Target::Blackhole => {
                let port = blackhole_port().await;
                self.run_at(name, &format!("http://{}/", port.addr), None)
                    .await
            }
            Target::Raw(reply, after) => {
                let upstream = Upstream::raw(reply.clone(), *after).await;
                self.run_at(name, &upstream.url("/"), Some(&upstream)).await
            }
        }
    }

    async fn run_at(&self, name: &str, url: &str, upstream: Option<&Upstream>) {
        for client in CLIENTS {
            let case = format!("case {name}, client {client:?}");
            let out = call(client, url).await;
            let outcome = std::panic::AssertUnwindSafe(|| match self.expect {
                Expect::Answer(status, kind, phase, sent) => {
                    out.assert_answer(status, kind, phase, sent)
                }
                Expect::BodyError(kind) => out.assert_body_error(kind),
                Expect::Untouched(body) => {
                    assert_eq!(out.status, StatusCode::OK);
                    assert_eq!(out.body.as_deref().unwrap(), body.as_bytes());
                    assert!(out.headers.get("proxy-status").is_none());
                    assert!(out.answer_error.is_none());
                    assert_eq!(out.reported, 0);
                }
            });
            if let Err(panic) = std::panic::catch_unwind(outcome) {
                eprintln!("{case}: failed");
                std::panic::resume_unwind(panic);
            }
            if let Some(time) = self.no_sooner_than {
                assert!(out.took >= time, "{case}: answered after {:?}", out.took);
            }
        }
        if self.reaches_upstream_once {
            let upstream = upstream.expect("an upstream");
            assert_eq!(
                upstream.requests(),
                CLIENTS.len(),
                "case {name}: each client's request reached upstream once"
            );
        }
    }
}

/// One test per case, named by it, running the case with every client.
macro_rules! cases {
    ($($(#[$doc:meta])* $name:ident: $case:expr;)*) => {
        $(
            $(#[$doc])*
            #[tokio::test]
            async fn $name() {
                $case.run(stringify!($name)).await;
            }
        )*
    };
}

fn raw(reply: impl Into<String>, after: After) -> Target {
    Target::Raw(reply.into(), after)
}

use Expect::{Answer, BodyError, Untouched};
use Phase::{AwaitHead, Connect};
use RequestSent::{Maybe, No, Yes};

cases! {
    connection_refused_is_502_connection_refused_and_never_sent: Case::new(
        Target::Refused,
        Answer(502, ErrorKind::ConnectionRefused, Connect, No),
    );
    unresolvable_name_is_502_dns_error: Case::new(
        Target::Unresolvable,
        Answer(502, ErrorKind::DnsError, Connect, No),
    );
    connect_that_hangs_is_504_connection_timeout: Case::new(
        Target::Blackhole,
        Answer(504, ErrorKind::ConnectionTimeout, Connect, No),
    );
    close_before_any_byte_is_502_connection_terminated: Case::new(
        raw("", After::Close),
        Answer(502, ErrorKind::ConnectionTerminated, AwaitHead, Maybe),
    )
    .reaches_upstream_once();
    reset_before_any_byte_is_502_connection_terminated: Case::new(
        raw("", After::Reset),
        Answer(502, ErrorKind::ConnectionTerminated, AwaitHead, Maybe),
    );
    a_reply_that_is_not_http_is_502_protocol_error: Case::new(
        raw("SSH-2.0-OpenSSH_9.6\r\n", After::Close),
        Answer(502, ErrorKind::ProtocolError, AwaitHead, Yes),
    );
    a_header_line_without_colon_is_502_protocol_error: Case::new(
        raw(
            "HTTP/1.1 200 OK\r\nthis-line-has-no-colon\r\ncontent-length: 0\r\n\r\n",
            After::Hang,
        ),
        Answer(502, ErrorKind::ProtocolError, AwaitHead, Yes),
    );
    /// hyper reports a head cut short exactly like a close before any byte
    /// (`is_incomplete_message`); see the classify module docs.
    a_head_cut_off_halfway_is_502_connection_terminated: Case::new(
        raw("HTTP/1.1 200 OK\r\nContent-Ty", After::Close),
        Answer(502, ErrorKind::ConnectionTerminated, AwaitHead, Maybe),
    );
    a_one_mib_header_is_502_header_section_size: Case::new(
        raw(
            format!(
                "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
                "a".repeat(1 << 20)
            ),
            After::Hang,
        ),
        Answer(502, ErrorKind::HeaderSectionTooLarge, AwaitHead, Yes),
    );
    ten_thousand_headers_is_502_header_section_size: Case::new(
        raw(
            format!(
                "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
                (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
            ),
            After::Hang,
        ),
        Answer(502, ErrorKind::HeaderSectionTooLarge, AwaitHead, Yes),
    );
    no_answer_at_all_is_504_response_timeout: Case::new(
        raw("", After::Hang),
        Answer(504, ErrorKind::ResponseHeaderTimeout, AwaitHead, Yes),
    )
    .no_sooner_than(Duration::from_millis(300));
    a_body_shorter_than_its_content_length_ends_with_response_incomplete: Case::new(
        raw("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", After::Close),
        BodyError(ErrorKind::ResponseIncomplete),
    );
    an_invalid_chunk_size_ends_the_body_with_transfer_coding: Case::new(
        raw(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            After::Hang,
        ),
        BodyError(ErrorKind::TransferCoding),
    );
    a_body_that_stalls_ends_with_read_timeout: Case::new(
        raw("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", After::Hang),
        BodyError(ErrorKind::ReadTimeout),
    )
    .no_sooner_than(Duration::from_millis(300));
    a_healthy_upstream_passes_through_untouched: Case::new(
        raw(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
            After::Hang,
        ),
        Untouched("hello"),
    );
}

/// An error on an established connection names the peer actually connected to
/// (hyper-util's connect info), not just the host asked for.
#[tokio::test]
async fn the_next_hop_is_the_connected_peer() {
    let upstream = Upstream::raw("", After::Close).await;
    let out = call(
        Client::HyperUtil,
        &format!("http://localhost:{}/", upstream.addr.port()),
    )
    .await;
    let err = out.answer_error.unwrap();
    assert_eq!(err.next_hop().unwrap().as_str(), upstream.addr.to_string());
}
