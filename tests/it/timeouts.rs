//! `TimeoutLayer` in front of a real hyper-util client: what each timeout cuts, when,
//! and what it leaves alone.

use crate::support;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};
use support::{After, Frozen, Upstream, within};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::error::{BodyTimeout, BodyTimeoutKind, HeadTimeout};
use tower_bad_gateway::timeout::TimeoutLayer;
use tower_bad_gateway::{BadGatewayLayer, ErrorKind, GatewayError};

const MS: Duration = Duration::from_millis(1);

/// An upstream that sends a 10-frame chunked body, one frame every `gap`.
async fn trickle(gap: Duration) -> Upstream {
    let mut parts = vec![Bytes::from(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    )];
    parts.extend((0..10).map(|_| Bytes::from("5\r\nhello\r\n")));
    parts.push(Bytes::from("0\r\n\r\n"));
    Upstream::raw_parts(parts, gap, After::Hang).await
}

async fn call(
    timeouts: TimeoutLayer,
    url: &str,
) -> (StatusCode, Result<Bytes, GatewayError>, Duration) {
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(timeouts)
        .service(support::hyper_client::<Full<Bytes>>());
    let start = Instant::now();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(support::get(url))
        .await
        .unwrap();
    let status = res.status();
    let synthetic = res.extensions().get::<GatewayError>().cloned();
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect())
        .await
        .unwrap()
        .map(|c| c.to_bytes());
    let body = match synthetic {
        Some(err) => Err(err),
        None => body,
    };
    (status, body, start.elapsed())
}

/// Reads `body` on a frozen clock, a frame at a time: the clock moves on by `gap`
/// (the trickle's) before each, so the trickle sends its next part, and every
/// timer falls due exactly when the test's clock says, however slow the machine.
async fn read_frozen<B>(clock: &Frozen, body: B, gap: Duration) -> Result<Bytes, B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut data = bytes::BytesMut::new();
    loop {
        clock.advance(gap).await;
        match within("the next frame (or the end)", body.as_mut().frame()).await {
            None => return Ok(data.freeze()),
            Some(Err(err)) => return Err(err),
            Some(Ok(frame)) => {
                if let Ok(chunk) = frame.into_data() {
                    data.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// `call` on a frozen clock (see [`read_frozen`]), timed on tokio's clock.
async fn call_frozen(
    clock: &Frozen,
    timeouts: TimeoutLayer,
    url: &str,
    gap: Duration,
) -> (StatusCode, Result<Bytes, GatewayError>, Duration) {
    let mut svc = ServiceBuilder::new()
        .layer(BadGatewayLayer::new())
        .layer(timeouts)
        .service(support::hyper_client::<Full<Bytes>>());
    let start = tokio::time::Instant::now();
    let res = within(
        "the answer's head",
        svc.ready().await.unwrap().call(support::get(url)),
    )
    .await
    .unwrap();
    let status = res.status();
    let synthetic = res.extensions().get::<GatewayError>().cloned();
    let body = read_frozen(clock, res.into_body(), gap).await;
    let body = match synthetic {
        Some(err) => Err(err),
        None => body,
    };
    (status, body, start.elapsed())
}

#[tokio::test]
async fn the_attempt_timeout_answers_504_no_sooner_than_it_expires() {
    let upstream = Upstream::raw("", After::Hang).await;
    let (status, body, took) = call(
        TimeoutLayer::new().attempt_timeout(200 * MS),
        &upstream.url("/"),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let err = body.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseHeaderTimeout);
    let cause = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<HeadTimeout>()
        .unwrap();
    assert_eq!(cause.after(), 200 * MS);
    assert!(took >= 200 * MS, "answered after {took:?}");
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_does_not_apply_to_a_long_but_steady_body() {
    let clock = Frozen::hold();
    let upstream = trickle(60 * MS).await;
    let timeouts = TimeoutLayer::new()
        .attempt_timeout(150 * MS)
        .body_idle_timeout(300 * MS);
    let (status, body, took) = call_frozen(&clock, timeouts, &upstream.url("/"), 60 * MS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), "hello".repeat(10));
    assert!(
        took >= 600 * MS,
        "the body took {took:?}, longer than the attempt timeout"
    );
}

#[tokio::test]
async fn the_idle_timeout_cuts_a_body_that_stops_and_reports_read_timeout() {
    let parts = vec![
        Bytes::from("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"),
        Bytes::from("0123456789"),
    ];
    let upstream = Upstream::raw_parts(parts, 50 * MS, After::Hang).await;
    let (status, body, took) = call(
        TimeoutLayer::new().body_idle_timeout(250 * MS),
        &upstream.url("/"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let err = body.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadTimeout);
    let cause = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<BodyTimeout>()
        .unwrap();
    assert_eq!(cause.kind(), BodyTimeoutKind::Idle);
    // Reset by the frame at ~50 ms, so it fires at ~300 ms, not ~250 ms.
    assert!(took >= 300 * MS, "cut after {took:?}");
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_cuts_a_steady_body_that_takes_too_long() {
    let clock = Frozen::hold();
    let upstream = trickle(60 * MS).await;
    let timeouts = TimeoutLayer::new()
        .body_idle_timeout(300 * MS)
        .body_total_timeout(250 * MS);
    let (_, body, took) = call_frozen(&clock, timeouts, &upstream.url("/"), 60 * MS).await;
    let err = body.unwrap_err();
    // The whole answer took too long: `http_response_timeout`, not
    // `connection_read_timeout` (data kept coming).
    assert_eq!(err.kind(), ErrorKind::ResponseTimeout);
    assert_eq!(err.kind().as_str(), "http_response_timeout");
    let cause = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<BodyTimeout>()
        .unwrap();
    assert_eq!(cause.kind(), BodyTimeoutKind::Total);
    assert!(took >= 250 * MS, "cut after {took:?}");
}

/// One timer serves both: armed for the idle timeout first, pushed back by every
/// frame, it must still fire at the total timeout.
#[tokio::test(start_paused = true)]
async fn frames_that_keep_pushing_the_idle_timer_back_still_meet_the_total_timeout() {
    let clock = Frozen::hold();
    let upstream = trickle(40 * MS).await;
    let timeouts = TimeoutLayer::new()
        .body_idle_timeout(100 * MS)
        .body_total_timeout(250 * MS);
    let (_, body, took) = call_frozen(&clock, timeouts, &upstream.url("/"), 40 * MS).await;
    let err = body.unwrap_err();
    let cause = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<BodyTimeout>()
        .unwrap();
    assert_eq!(cause.kind(), BodyTimeoutKind::Total);
    assert_eq!(cause.after(), 250 * MS);
    assert!(took >= 250 * MS, "cut after {took:?}");
}

/// The idle timeout counts the time the body waits for the upstream, not the time
/// its reader takes between two frames (as nginx's `proxy_read_timeout`): a reader
/// busy for longer than the timeout, then an upstream a little late, is not cut.
#[tokio::test(start_paused = true)]
async fn the_readers_own_pauses_do_not_count_against_the_idle_timeout() {
    use tower_bad_gateway::timeout::TimeoutBody;
    let (send, frames) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let upstream =
        http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames));
    let mut body = TimeoutBody::new(upstream, Some(100 * MS), None);
    let start = tokio::time::Instant::now();
    send.send(Ok(http_body::Frame::data(Bytes::from("one"))))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "one");
    // The reader is busy for 150 ms; the upstream's next frame comes 10 ms after
    // the reader asks for it.
    tokio::time::sleep(150 * MS).await;
    let _open = send.clone(); // the body does not end: it stays silent
    tokio::spawn(async move {
        tokio::time::sleep(10 * MS).await;
        send.send(Ok(http_body::Frame::data(Bytes::from("two"))))
            .await
            .unwrap();
    });
    let second = body
        .frame()
        .await
        .unwrap()
        .expect("not cut: the upstream was idle 10 ms");
    assert_eq!(second.into_data().unwrap(), "two");
    assert_eq!(start.elapsed(), 160 * MS);
    // And it still cuts a body whose upstream then stays silent.
    let err = body.frame().await.unwrap().unwrap_err();
    let timeout = err.downcast_ref::<BodyTimeout>().unwrap();
    assert_eq!(timeout.kind(), BodyTimeoutKind::Idle);
    assert_eq!(start.elapsed(), 260 * MS);
}

#[tokio::test]
async fn with_no_timeouts_set_nothing_is_cut() {
    let upstream = trickle(20 * MS).await;
    let (status, body, _) = call(TimeoutLayer::new(), &upstream.url("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), "hello".repeat(10));
}

mod write_timeout {
    use super::*;
    use http::{Method, Request};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use support::{Recorder, Script, Upload};
    use tower_bad_gateway::write_timeout::{UploadBody, WriteTimeoutLayer};

    type Client<B> = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        UploadBody<B>,
    >;

    async fn upload<B>(
        url: &str,
        body: B,
        timeout: Duration,
    ) -> (StatusCode, Option<GatewayError>, Duration)
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<tower_bad_gateway::BoxError>,
    {
        let client: Client<B> = support::hyper_client();
        let mut svc = ServiceBuilder::new()
            .layer(BadGatewayLayer::new())
            .layer(WriteTimeoutLayer::new(timeout))
            .service(client);
        let start = Instant::now();
        let req = Request::builder()
            .method(Method::PUT)
            .uri(url)
            .body(body)
            .unwrap();
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            svc.ready().await.unwrap().call(req),
        )
        .await
        .expect("the upload neither finished nor timed out within 10 s")
        .unwrap();
        (
            res.status(),
            res.extensions().get::<GatewayError>().cloned(),
            start.elapsed(),
        )
    }

    /// The upstream reads the request head and then nothing: once the socket
    /// buffers are full the upload stalls on the upstream's side.
    #[tokio::test]
    async fn an_upstream_that_stops_reading_the_body_is_504_write_timeout() {
        let upstream = Upstream::raw("", After::Hang).await;
        let body = Upload::repeat(Bytes::from(vec![b'x'; 64 * 1024]), 1024);
        let (status, err, took) = upload(&upstream.url("/"), body, 300 * MS).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        let err = err.unwrap();
        assert_eq!(err.kind(), ErrorKind::WriteTimeout);
        assert_eq!(err.kind().as_str(), "connection_write_timeout");
        assert!(took >= 300 * MS);
    }

    /// A body that yields one chunk every 150 ms.
    struct SlowUploader {
        sleep: Pin<Box<tokio::time::Sleep>>,
        left: usize,
    }

    impl http_body::Body for SlowUploader {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            self.left -= 1;
            let next = tokio::time::Instant::now() + 150 * MS;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"chunk",
            )))))
        }
    }

    /// A slow *downstream* uploader is not the upstream's stall: with a 100 ms write
    /// timeout, a body that takes 750 ms to arrive still goes through.
    #[tokio::test]
    async fn a_slow_uploader_is_not_an_upstream_write_timeout() {
        let upstream = Recorder::start(vec![Script::Respond(200, vec![], "stored")]).await;
        let body = SlowUploader {
            sleep: Box::pin(tokio::time::sleep(150 * MS)),
            left: 5,
        };
        let (status, err, took) = upload(&upstream.url("/"), body, 100 * MS).await;
        assert_eq!(status, StatusCode::OK, "{err:?}");
        assert_eq!(upstream.received()[0].1, "chunk".repeat(5));
        assert!(took >= 750 * MS);
    }
}

/// A deadline that passes while a steady body is still arriving ends the whole
/// answer: `http_response_timeout`, not `connection_read_timeout` (data kept coming).
#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_mid_body_is_a_response_timeout() {
    let clock = Frozen::hold();
    let upstream = trickle(60 * MS).await;
    let mut svc = tower_bad_gateway::GatewayLayer::new()
        .deadline(250 * MS)
        .layer(support::hyper_client::<
            tower_bad_gateway::UpstreamBody<Full<Bytes>>,
        >());
    let res = within(
        "the answer's head",
        svc.ready()
            .await
            .unwrap()
            .call(support::get(&upstream.url("/"))),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the head came in time");
    let err = read_frozen(&clock, res.into_body(), 60 * MS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTimeout);
    assert_eq!(err.kind().as_str(), "http_response_timeout");
}
