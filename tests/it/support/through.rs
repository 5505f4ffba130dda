//! A request through a `BadGatewayLayer` in front of a real hyper-util client.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bad_gateway::BadGatewayLayer;
use tower_bad_gateway::bad_gateway::ResponseBody;

/// The answer to `req` through `layer` in front of a real hyper-util client,
/// behind a tower timeout of 10 s on the head: long enough that no answering
/// upstream meets it on a loaded machine, short enough that a bug cannot hang
/// the suite.
pub async fn through(
    layer: BadGatewayLayer,
    req: Request<Full<Bytes>>,
) -> Response<ResponseBody<hyper::body::Incoming>> {
    through_with_timeout(layer, Duration::from_secs(10), req).await
}

/// [`through`], with the tower timeout on the head at `timeout`: for a test of
/// what a timeout answers.
pub async fn through_with_timeout(
    layer: BadGatewayLayer,
    timeout: Duration,
    req: Request<Full<Bytes>>,
) -> Response<ResponseBody<hyper::body::Incoming>> {
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(timeout)
        .service(crate::support::hyper_client::<Full<Bytes>>());
    svc.ready().await.unwrap().call(req).await.unwrap()
}
