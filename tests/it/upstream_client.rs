//! `proxy::UpstreamClient`'s own HTTP/1.1 path (requests without a body) over
//! real sockets, against an upstream that keeps its connections and answers each
//! request with the bytes a test gives: framing, interim answers, trailers,
//! which connections are kept and which are not, and requests with a body
//! (through hyper) sharing the same connections.

use crate::support::{self, within};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_bad_gateway::proxy::{self, UpstreamClientBody};

/// What the upstream answers: its bytes, written in these parts, and whether it
/// closes the connection after them.
struct Answer {
    parts: Vec<Vec<u8>>,
    close: bool,
}

fn answer(bytes: impl Into<Vec<u8>>) -> Answer {
    Answer {
        parts: vec![bytes.into()],
        close: false,
    }
}

/// A request's head (lowercased) and body.
type Seen = (String, Vec<u8>);

/// An upstream that keeps its connections: it reads each request head (and its
/// body, by `content-length`), records them, and sends `reply(head)`.
struct KeepAlive {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Each request's head (lowercased) and body, in order.
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl KeepAlive {
    async fn start(reply: fn(&str) -> Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, closes, log) = (accepted.clone(), closed.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (closes, log) = (closes.clone(), log.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    'conn: loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end + 2]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                            if buf.len() < end + 4 + length {
                                break;
                            }
                            let body = buf[end + 4..end + 4 + length].to_vec();
                            buf.drain(..end + 4 + length);
                            let answer = reply(&head);
                            log.lock().unwrap().push((head, body));
                            for part in &answer.parts {
                                if stream.write_all(part).await.is_err() {
                                    break 'conn;
                                }
                                tokio::task::yield_now().await;
                            }
                            if answer.close {
                                break 'conn;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                            _ => break,
                        }
                    }
                    closes.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            closed,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Client = proxy::UpstreamClient<Full<Bytes>>;

fn client() -> Client {
    proxy::ClientBuilder::new().build()
}

async fn send(client: &Client, req: Request<Full<Bytes>>) -> Response<UpstreamClientBody> {
    client.clone().oneshot(req).await.expect("an answer")
}

async fn get(client: &Client, url: &str) -> Response<UpstreamClientBody> {
    send(client, Request::get(url).body(Full::default()).unwrap()).await
}

/// The whole body and its trailers.
async fn read(res: Response<UpstreamClientBody>) -> (Bytes, Option<HeaderMap>) {
    let collected = res.into_body().collect().await.expect("a whole body");
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn a_request_without_a_body_is_written_as_it_was_given() {
    within("the request", async {
        let upstream = KeepAlive::start(|_| answer("HTTP/1.1 204 No Content\r\n\r\n")).await;
        let client = client();
        let req = Request::delete(upstream.url("/a/b?c=d"))
            .header("x-one", "1")
            .header("x-two", "2")
            .body(Full::default())
            .unwrap();
        assert_eq!(send(&client, req).await.status(), StatusCode::NO_CONTENT);
        let (head, body) = upstream.seen().remove(0);
        // The authority's `Host` goes first (RFC 9110 §7.2), the fields after it
        // as they were given.
        let host = format!("host: {}", upstream.addr);
        assert_eq!(
            head,
            format!("delete /a/b?c=d http/1.1\r\n{host}\r\nx-one: 1\r\nx-two: 2\r\n")
        );
        assert!(body.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_chunked_answer_comes_whole_with_its_trailers_and_its_connection_is_kept() {
    within("the requests", async {
        let upstream = KeepAlive::start(|_| Answer {
            parts: vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
                b"lo\r\n7;x=y\r\n, world\r\n".to_vec(),
                b"0\r\nx-checksum: 42\r\n\r\n".to_vec(),
            ],
            close: false,
        })
        .await;
        let client = client();
        for _ in 0..3 {
            let res = get(&client, &upstream.url("/")).await;
            assert!(res.headers().get("transfer-encoding").is_some());
            let (body, trailers) = read(res).await;
            assert_eq!(body, "hello, world");
            assert_eq!(trailers.expect("trailers")["x-checksum"], "42");
        }
        assert_eq!(upstream.accepted(), 1, "one connection for the three");
    })
    .await;
}

#[tokio::test]
async fn interim_answers_are_skipped_for_the_final_one() {
    within("the request", async {
        let upstream = KeepAlive::start(|_| Answer {
            parts: vec![
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone".to_vec(),
            ],
            close: false,
        })
        .await;
        let client = client();
        let res = get(&client, &upstream.url("/")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("link").is_none(), "{:?}", res.headers());
        assert_eq!(read(res).await.0, "done");
        assert_eq!(read(get(&client, &upstream.url("/")).await).await.0, "done");
        assert_eq!(upstream.accepted(), 1);
    })
    .await;
}

/// `Connection: close` (the request's or the answer's), an HTTP/1.0 answer without `keep-alive`, a body that
/// ends with the connection, and a stray byte after an answer each end their
/// connection: the next request gets a new one, and succeeds.
#[tokio::test]
async fn an_answer_that_ends_its_connection_is_not_reused() {
    within("the requests", async {
        let upstream = KeepAlive::start(|head| {
            let path = head.split(' ').nth(1).unwrap_or_default();
            match path {
                "/close" => {
                    answer("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
                }
                "/old" => answer("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"),
                "/until-close" => Answer {
                    parts: vec![b"HTTP/1.1 200 OK\r\n\r\nall of ".to_vec(), b"it".to_vec()],
                    close: true,
                },
                "/stray" => answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokX"),
                _ => answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            }
        })
        .await;
        let client = client();
        // A request that says `Connection: close` ends its connection too.
        let close = Request::get(upstream.url("/"))
            .header("connection", "close")
            .body(Full::default())
            .unwrap();
        assert_eq!(read(send(&client, close).await).await.0, "ok");
        assert_eq!(read(get(&client, &upstream.url("/")).await).await.0, "ok");
        assert_eq!(
            upstream.accepted(),
            2,
            "after a request's close: a new connection"
        );
        for (i, (path, body)) in [
            ("/close", "ok"),
            ("/old", "ok"),
            ("/until-close", "all of it"),
            ("/stray", "ok"),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(read(get(&client, &upstream.url(path)).await).await.0, body);
            assert_eq!(read(get(&client, &upstream.url("/")).await).await.0, "ok");
            assert_eq!(upstream.accepted(), i + 3, "after {path}: a new connection");
        }
    })
    .await;
}

/// The connection's own options in an answer (`Connection: keep-alive`) are
/// acted on and not handed on; a `Connection` that names a field is handed on
/// whole, for a proxy to strip what it names. Both keep the connection.
#[tokio::test]
async fn an_answers_connection_options_are_acted_on_and_not_handed_on() {
    within("the requests", async {
        let upstream = KeepAlive::start(|head| match head.split(' ').nth(1) {
            Some("/named") => answer(
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-trace\r\nx-trace: 1\r\ncontent-length: 2\r\n\r\nok",
            ),
            _ => answer("HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 2\r\n\r\nok"),
        })
        .await;
        let client = client();
        let res = get(&client, &upstream.url("/")).await;
        assert!(res.headers().get("connection").is_none(), "{res:?}");
        assert_eq!(res.headers()["content-length"], "2");
        assert_eq!(read(res).await.0, "ok");
        let res = get(&client, &upstream.url("/named")).await;
        assert_eq!(res.headers()["connection"], "keep-alive, x-trace");
        assert_eq!(res.headers()["x-trace"], "1");
        assert_eq!(read(res).await.0, "ok");
        assert_eq!(upstream.accepted(), 1, "one connection kept for both");
    })
    .await;
}

/// The answer to `HEAD` has no body whatever its `Content-Length`, nor do `204`
/// and `304`: the next answer on the connection is read from the right byte.
#[tokio::test]
async fn answers_without_a_body_leave_the_connection_in_step() {
    within("the requests", async {
        let upstream = KeepAlive::start(|head| match head.split(' ').nth(1) {
            Some("/not-modified") => {
                answer("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n")
            }
            _ if head.starts_with("head ") => {
                answer("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n")
            }
            _ => answer("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nthe body!"),
        })
        .await;
        let client = client();
        let head = Request::head(upstream.url("/"))
            .body(Full::default())
            .unwrap();
        let res = send(&client, head).await;
        assert_eq!(res.headers()["content-length"], "9");
        assert_eq!(read(res).await.0, "");
        let res = get(&client, &upstream.url("/not-modified")).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(read(res).await.0, "");
        assert_eq!(
            read(get(&client, &upstream.url("/")).await).await.0,
            "the body!"
        );
        assert_eq!(upstream.accepted(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_large_body_arrives_byte_for_byte() {
    within("the request", async {
        let upstream = KeepAlive::start(|_| {
            let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            Answer {
                parts: vec![head.into_bytes(), body],
                close: false,
            }
        })
        .await;
        let client = client();
        for _ in 0..2 {
            let body = read(get(&client, &upstream.url("/")).await).await.0;
            assert_eq!(body.len(), 1 << 20);
            assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        }
        assert_eq!(upstream.accepted(), 1);
    })
    .await;
}

/// A body dropped before its end takes its connection with it (the rest of it
/// would be read as the next answer): the upstream sees it closed.
#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    within("the requests", async {
        let upstream = KeepAlive::start(|_| Answer {
            // Half the body: the rest never comes.
            parts: vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst".to_vec()],
            close: false,
        })
        .await;
        let client = client();
        let mut body = get(&client, &upstream.url("/")).await.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "first");
        drop(body);
        support::eventually("the connection closed", || {
            upstream.closed.load(Ordering::SeqCst) == 1
        })
        .await;
    })
    .await;
}

/// Requests with a body go through hyper and those without take the own path,
/// over the same idle connections: one connection carries them all, and every
/// body reaches the upstream whole.
#[tokio::test]
async fn requests_with_and_without_a_body_share_the_connections() {
    within("the requests", async {
        let upstream =
            KeepAlive::start(|_| answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
        let client = client();
        for i in 0..3 {
            assert_eq!(read(get(&client, &upstream.url("/")).await).await.0, "ok");
            let put = Request::put(upstream.url("/"))
                .body(Full::from(format!("body {i}")))
                .unwrap();
            assert_eq!(read(send(&client, put).await).await.0, "ok");
        }
        assert_eq!(upstream.accepted(), 1, "one connection for the six");
        let bodies: Vec<_> = upstream.seen().into_iter().map(|(_, body)| body).collect();
        let put = |i: usize| format!("body {i}").into_bytes();
        assert_eq!(bodies, [vec![], put(0), vec![], put(1), vec![], put(2)]);
    })
    .await;
}

/// An answer with both framings is read by `Transfer-Encoding` (RFC 9112 §6.3),
/// loses its `Content-Length`, and ends its connection.
#[tokio::test]
async fn an_answer_with_both_framings_is_read_chunked_and_ends_its_connection() {
    within("the requests", async {
        let upstream = KeepAlive::start(|_| {
            answer(
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
        })
        .await;
        let client = client();
        let res = get(&client, &upstream.url("/")).await;
        assert!(res.headers().get("content-length").is_none());
        assert_eq!(read(res).await.0, "hello");
        assert_eq!(read(get(&client, &upstream.url("/")).await).await.0, "hello");
        assert_eq!(upstream.accepted(), 2);
    })
    .await;
}

/// Through the whole gateway, served by `proxy::serve`: an answer whose body is
/// cut short reaches the client with its head and what of its body came, then
/// the connection ends (never an empty reply). The upstream sends the head, ten
/// of a hundred bytes and its FIN at once, so the body's error is there to be
/// read in the same turn as its data; twenty tries, since it is a race when
/// the error is not held back.
#[tokio::test]
async fn a_body_cut_short_reaches_the_client_with_its_head_and_what_came() {
    use tower::{Layer, ServiceBuilder};
    use tower_bad_gateway::GatewayLayer;
    use tower_bad_gateway::proxy::{ProxyLayer, TakeUpgradeLayer};
    use tower_bad_gateway::upstreams::EndpointSet;
    within("the answers", async {
        let upstream = support::Upstream::raw(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
            support::After::Close,
        )
        .await;
        let set = EndpointSet::from_urls([upstream.url("")]).unwrap();
        let client = proxy::ClientBuilder::new().build();
        let stack = ServiceBuilder::new()
            .layer(ProxyLayer::new())
            .layer(GatewayLayer::new().upstreams(set))
            .service(TakeUpgradeLayer::new().layer(client));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = listener.local_addr().unwrap();
        tokio::spawn(proxy::serve(listener, stack, std::future::pending()));
        for i in 0..20 {
            let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
            let request = "GET / HTTP/1.1\r\nhost: gateway.example\r\n\r\n";
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n"),
                "try {i}: {answer:?}"
            );
            assert!(
                answer.ends_with("\r\n\r\nonly ten b"),
                "try {i}: {answer:?}"
            );
        }
    })
    .await;
}
