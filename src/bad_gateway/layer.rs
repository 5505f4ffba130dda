use super::{BadGateway, Config};
use crate::classify::{Classifier, ResponsePolicy};
use crate::error::{ErrorKind, GatewayError};
use crate::render::{Renderer, RequestInfo};
use bytes::Bytes;
use http::{HeaderName, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Applies [`BadGateway`] to a service that calls an upstream.
///
/// All configuration is shared (behind an `Arc`) by every service the layer makes.
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, ErrorKind, ResponsePolicy};
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let layer = BadGatewayLayer::new()
///     .with_proxy_name("edge-1")
///     .with_status(ErrorKind::ConnectionRefused, StatusCode::SERVICE_UNAVAILABLE)
///     .with_retry_after(Duration::from_secs(5))
///     .with_response_policy(ResponsePolicy::new().max_body_size(1 << 20))
///     .on_failure(|err| eprintln!("upstream failed: {}", err.kind()));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct BadGatewayLayer {
    config: Arc<Config>,
}

impl BadGatewayLayer {
    /// A layer with the default classifier, no response policy, and the default
    /// renderer.
    pub fn new() -> Self {
        Self::default()
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn map_renderer(mut self, f: impl FnOnce(Renderer) -> Renderer) -> Self {
        let config = self.config();
        config.renderer = f(std::mem::take(&mut config.renderer));
        self
    }

    /// Replaces the classifier (see [`Classifier`] to extend the default one).
    pub fn with_classifier(mut self, classifier: Classifier) -> Self {
        self.config().classifier = classifier;
        self
    }

    /// Declares which upstream answers are failures (default: none).
    pub fn with_response_policy(mut self, policy: ResponsePolicy) -> Self {
        self.config().policy = policy;
        self
    }

    /// Replaces the whole renderer.
    pub fn with_render(mut self, renderer: Renderer) -> Self {
        self.config().renderer = renderer;
        self
    }

    /// Answers `kind` with `status` instead of its default (4xx and 5xx only; see
    /// [`Renderer::with_status`]).
    pub fn with_status(self, kind: ErrorKind, status: StatusCode) -> Self {
        self.map_renderer(|r| r.with_status(kind, status))
    }

    /// The name this gateway gives itself in `Proxy-Status` (see
    /// [`Renderer::with_proxy_name`]).
    pub fn with_proxy_name(self, name: &str) -> Self {
        self.map_renderer(|r| r.with_proxy_name(name))
    }

    /// Shows the upstream's address and the error's text in answers (off by
    /// default; see [`Renderer::expose_details`]).
    pub fn expose_details(self, expose: bool) -> Self {
        self.map_renderer(|r| r.expose_details(expose))
    }

    /// Replaces the HTML page (see [`Renderer::with_html_template`]).
    pub fn with_html_template(self, template: impl Into<String>) -> Self {
        self.map_renderer(|r| r.with_html_template(template))
    }

    /// Replaces all rendering with `f` (see [`Renderer::with_renderer`]).
    pub fn with_renderer<F>(self, f: F) -> Self
    where
        F: Fn(&GatewayError, &RequestInfo) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.map_renderer(|r| r.with_renderer(f))
    }

    /// Adds `Retry-After` to every 503 answer.
    pub fn with_retry_after(self, after: Duration) -> Self {
        self.map_renderer(|r| r.with_retry_after(after))
    }

    /// Echoes the request id from this header instead of `x-request-id`.
    pub fn with_request_id_header(self, name: HeaderName) -> Self {
        self.map_renderer(|r| r.with_request_id_header(name))
    }

    /// Calls `f` once for every failure, after it is classified (besides the
    /// `tracing` event).
    pub fn on_failure<F>(mut self, f: F) -> Self
    where
        F: Fn(&GatewayError) + Send + Sync + 'static,
    {
        self.config().on_failure = Some(Arc::new(f));
        self
    }
}

impl<S> Layer<S> for BadGatewayLayer {
    type Service = BadGateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BadGateway::from_config(inner, self.config.clone())
    }
}
