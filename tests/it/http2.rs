//! HTTP/2 upstreams (the `h2` crate as a real server on loopback) behind the
//! hyper-util client with `http2_only`: a refused stream provably never reached
//! the upstream application; a GOAWAY after the request was read maybe did.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError, RequestSent};

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// `RST_STREAM(REFUSED_STREAM)` on every request.
    RefuseStreams,
    /// Read the request, then `GOAWAY(INTERNAL_ERROR)` and close.
    GoAwayAfterRequest,
}

/// An h2 server; counts the requests it received.
async fn h2_upstream(misbehaviour: Misbehaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match misbehaviour {
                        Misbehaviour::RefuseStreams => {
                            respond.send_reset(h2::Reason::REFUSED_STREAM)
                        }
                        Misbehaviour::GoAwayAfterRequest => {
                            conn.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                std::future::poll_fn(|cx| conn.poll_closed(cx)),
                            )
                            .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

async fn call(addr: SocketAddr) -> GatewayError {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(TimeoutLayer::new().attempt_timeout(Duration::from_secs(5)))
        .service(client);
    let req = http::Request::post(format!("http://{addr}/"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let res: Response<_> = svc.ready().await.unwrap().call(req).await.unwrap();
    res.extensions()
        .get::<GatewayError>()
        .cloned()
        .expect("a synthetic answer")
}

#[tokio::test]
async fn a_refused_stream_is_refused_stream_and_provably_not_sent() {
    let (addr, _) = h2_upstream(Misbehaviour::RefuseStreams).await;
    let err = call(addr).await;
    assert_eq!(err.kind(), ErrorKind::RefusedStream, "{err:?}");
    assert_eq!(err.kind().as_str(), "connection_terminated");
    assert_eq!(err.request_sent(), RequestSent::No);
}

#[tokio::test]
async fn a_goaway_with_an_error_after_the_request_is_connection_terminated_maybe_sent() {
    let (addr, received) = h2_upstream(Misbehaviour::GoAwayAfterRequest).await;
    let err = call(addr).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        1,
        "the upstream saw the request"
    );
    assert_eq!(err.kind(), ErrorKind::ConnectionTerminated, "{err:?}");
    assert_ne!(
        err.request_sent(),
        RequestSent::No,
        "it may have been processed"
    );
}
