//! The gateway's metrics for Prometheus (feature `prometheus`): the recorder in
//! the OpenTelemetry conventions' buckets and names, and `GET /metrics` served.

use crate::metrics::DURATION_BUCKETS;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use tokio::net::TcpListener;

/// The exposition format's content type.
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus recorder for the crate's [metrics](crate::metrics): every
/// `*.duration` histogram in the OpenTelemetry conventions' buckets
/// ([`DURATION_BUCKETS`]), not the exporter's own, and the recommended naming
/// (`_seconds`, `_total`). Install it with `metrics::set_global_recorder` (or
/// use [`install`]); [`PrometheusRecorder::handle`] renders what it holds.
pub fn recorder() -> PrometheusRecorder {
    let durations = Matcher::Suffix("duration".into());
    PrometheusBuilder::new()
        .set_buckets_for_metric(durations, &DURATION_BUCKETS)
        .expect("the buckets are not empty")
        .with_recommended_naming(true)
        .build_recorder()
}

/// Installs [`recorder`] as the process's global recorder, gives each of the
/// crate's metrics its unit and description ([`describe`](crate::metrics::describe)),
/// and returns the handle that renders them. Fails if a global recorder is
/// already installed.
pub fn install() -> Result<PrometheusHandle, metrics::SetRecorderError<PrometheusRecorder>> {
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    crate::metrics::describe();
    Ok(handle)
}

/// Serves `GET /metrics` (and `HEAD`) on `listener` with what `handle` renders,
/// through [`serve`](super::serve) until `shutdown` completes; any other path is
/// a `404`, any other method a `405` with `Allow`.
///
/// ```no_run
/// use tower_bad_gateway::proxy::prometheus;
///
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let handle = prometheus::install().expect("no other recorder");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// tokio::spawn(prometheus::serve(listener, handle, std::future::pending()));
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        std::future::ready(Ok::<_, Infallible>(answer(
            &handle,
            req.method(),
            req.uri().path(),
        )))
    });
    super::serve(listener, service, shutdown).await
}

/// The answer to `method` on `path`.
fn answer(handle: &PrometheusHandle, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match (path, method) {
        // hyper sends no content in answer to a HEAD, and the length GET's has.
        ("/metrics", &Method::GET | &Method::HEAD) => (StatusCode::OK, handle.render().into()),
        ("/metrics", _) => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found: try /metrics\n"),
        ),
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    let text = header::HeaderValue::from_static(TEXT);
    headers.insert(header::CONTENT_TYPE, text);
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_answered_with_the_text() {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("tower_bad_gateway.failures").increment(1);
        });
        let get = answer(&handle, &Method::GET, "/metrics");
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.headers()[header::CONTENT_TYPE], TEXT);
        let body = get.into_body();
        let text = text_of(body);
        assert!(
            text.contains("tower_bad_gateway_failures_total 1"),
            "{text}"
        );
        let post = answer(&handle, &Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            answer(&handle, &Method::GET, "/").status(),
            StatusCode::NOT_FOUND
        );
    }

    /// The bytes of a `Full` body, which is ready at once.
    fn text_of(body: Full<Bytes>) -> String {
        use http_body::Body;
        let mut body = std::pin::pin!(body);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match body.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
            }
            _ => String::new(),
        }
    }
}
