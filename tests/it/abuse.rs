//! Hostile upstreams (real sockets on loopback): each gets a clear typed error or
//! a correct answer, in bounded memory and time.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use support::{After, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, ResponsePolicy};

/// An upstream that answers every request by writing `head`, then `chunk` forever.
async fn endless(head: &'static [u8], chunk: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                if stream.write_all(head).await.is_err() {
                    return;
                }
                while stream.write_all(chunk).await.is_ok() {}
            });
        }
    });
    addr
}

fn gateway(
    layer: BadGatewayLayer,
    timeouts: TimeoutLayer,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = http::Response<impl http_body::Body<Data = Bytes, Error = GatewayError>>,
    Error = std::convert::Infallible,
> {
    ServiceBuilder::new()
        .layer(layer)
        .layer(timeouts)
        .service(support::hyper_client::<Full<Bytes>>())
}

#[tokio::test]
async fn a_never_ending_chunked_body_is_cut_at_the_size_limit() {
    let chunk: &'static [u8] = Box::leak(
        format!("4000\r\n{}\r\n", "x".repeat(0x4000))
            .into_bytes()
            .into_boxed_slice(),
    );
    let addr = endless(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        chunk,
    )
    .await;
    let svc = gateway(
        BadGatewayLayer::new().response_policy(ResponsePolicy::new().max_body_size(1 << 20)),
        TimeoutLayer::new(),
    );
    let res = svc
        .oneshot(support::get(&format!("http://{addr}/")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = Box::pin(res.into_body());
    let mut received = 0usize;
    let err = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => received += frame.into_data().map_or(0, |d| d.len()),
                Some(Err(err)) => break err,
                None => panic!("an endless body ended"),
            }
        }
    })
    .await
    .expect("cut within 10 s");
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    assert!(received <= 1 << 20, "{received} bytes passed a 1 MiB limit");
}

#[tokio::test]
async fn a_never_ending_body_is_cut_by_the_total_body_timeout() {
    let addr = endless(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
    )
    .await;
    let svc = gateway(
        BadGatewayLayer::new(),
        TimeoutLayer::new().body_total_timeout(Duration::from_millis(300)),
    );
    let res = svc
        .oneshot(support::get(&format!("http://{addr}/")))
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .expect("cut within 10 s")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTimeout);
}

/// An endless stream of `100 Continue` is never a final answer: the attempt
/// timeout ends it with a 504.
#[tokio::test]
async fn a_flood_of_1xx_answers_ends_at_the_attempt_timeout() {
    let addr = endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n").await;
    let svc = gateway(
        BadGatewayLayer::new(),
        TimeoutLayer::new().attempt_timeout(Duration::from_millis(300)),
    );
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        svc.oneshot(support::get(&format!("http://{addr}/"))),
    )
    .await
    .expect("answered within 10 s")
    .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // hyper skips informational answers in bounded memory; the wait for a final
    // one is what times out.
    let err = res.extensions().get::<GatewayError>().unwrap();
    assert_eq!(err.kind(), ErrorKind::ResponseHeaderTimeout, "{err:?}");
}

/// A response to HEAD that carries a body anyway: the answer has no body, and the
/// stray bytes do not corrupt the next exchange.
#[tokio::test]
async fn a_head_answered_with_a_body_gives_headers_only() {
    let upstream = Upstream::raw(
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        After::Close,
    )
    .await;
    let svc = gateway(
        BadGatewayLayer::new(),
        TimeoutLayer::new().attempt_timeout(Duration::from_secs(2)),
    );
    let req = Request::head(upstream.url("/"))
        .body(Full::default())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], "5");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "a HEAD answer has no body");
}
