//! axum integration (feature `axum`): a [`GatewayError`] is an answer.

use crate::error::GatewayError;
use crate::render::{Renderer, RequestInfo};

/// A handler can return `Result<_, GatewayError>` and use `?` on the
/// [`RetryLayer`](crate::retry::RetryLayer)'s error: the failure is answered as
/// [`BadGatewayLayer`](crate::BadGatewayLayer) would with its defaults (plain
/// text; the request is not seen here, so there is no negotiation).
///
/// ```
/// use axum_core::response::IntoResponse;
/// use tower_bad_gateway::{ErrorKind, GatewayError};
///
/// let res = GatewayError::new(ErrorKind::ConnectionRefused).into_response();
/// assert_eq!(res.status(), 502);
/// assert_eq!(res.headers()["proxy-status"], "tower-bad-gateway; error=connection_refused");
/// ```
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum_core::response::IntoResponse for GatewayError {
    fn into_response(self) -> axum_core::response::Response {
        Renderer::shared_default()
            .render(&self, &RequestInfo::default())
            .map(axum_core::body::Body::new)
    }
}
