use super::{BadGateway, Settings};
use crate::classify::{Classifier, ResponsePolicy};
use crate::error::GatewayError;
use crate::render::{Renderer, RequestInfo};
use std::fmt;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`BadGateway`] to a service that calls an upstream.
///
/// Four settings, each independent of the others (the order of the calls never
/// matters): how failures are classified, which upstream answers count as
/// failures, how failures are answered, and a hook called for each. The services
/// a layer makes share one configuration; every kind's plain answer is rendered
/// when the first is made, not per request.
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, ErrorKind, ErrorStatus, ResponsePolicy};
/// use tower_bad_gateway::render::Renderer;
/// use std::time::Duration;
///
/// let layer = BadGatewayLayer::new()
///     .renderer(
///         Renderer::new()
///             .proxy_name("edge-1")
///             .status(ErrorKind::ConnectionRefused, ErrorStatus::SERVICE_UNAVAILABLE)
///             .retry_after(Duration::from_secs(5)),
///     )
///     .response_policy(ResponsePolicy::new().max_body_size(1 << 20))
///     .on_failure(|err| eprintln!("upstream failed: {}", err.kind()));
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
pub struct BadGatewayLayer {
    settings: Arc<Settings>,
}

impl BadGatewayLayer {
    /// A layer with the default classifier, no response policy, and the default
    /// renderer.
    pub fn new() -> Self {
        Self::default()
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// Classifies failures with `classifier` (see [`Classifier`] to extend the
    /// default one).
    ///
    /// It classifies for the whole stack below, not only here: each request carries
    /// it down, so a [`RetryLayer`](crate::retry::RetryLayer) or an
    /// [`UpstreamsLayer`](crate::upstreams::UpstreamsLayer) further in decides
    /// with its rules first (then with its own classifier's, then the defaults),
    /// and no default further in can shadow it.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.settings().classifier = Arc::new(classifier);
        self
    }

    /// Declares which upstream answers are failures (default: none).
    pub fn response_policy(mut self, policy: ResponsePolicy) -> Self {
        self.settings().policy = policy;
        self
    }

    /// The header its renderer echoes request ids from.
    pub(crate) fn request_id_header(&self) -> &http::HeaderName {
        self.settings.renderer.id_header()
    }

    /// Answers failures with `renderer`: statuses, proxy name, details, the HTML
    /// page, `Retry-After`, the request id header, or a renderer of your own (see
    /// [`Renderer`]).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.settings().renderer = renderer;
        self
    }

    /// Calls `f` once for every failure, after it is classified (besides the
    /// `tracing` event). A second call replaces the first hook. To see the
    /// request too, use [`on_failure_with_request`](Self::on_failure_with_request).
    pub fn on_failure<F>(mut self, f: F) -> Self
    where
        F: Fn(&GatewayError) + Send + Sync + 'static,
    {
        self.settings().on_failure = Some(Arc::new(f));
        self
    }

    /// Calls `f` once for every failure with the error and what was captured of
    /// the request: its [method](RequestInfo::method), [path](RequestInfo::path),
    /// [request id](RequestInfo::request_id_for_log) and whether it is a
    /// [gRPC call](RequestInfo::is_grpc). Nothing more is kept of a request (it
    /// went to the upstream), and nothing is copied for requests that succeed
    /// beyond what the answer needs anyway.
    ///
    /// Independent of [`on_failure`](Self::on_failure): with both set, both are
    /// called. A second call replaces the first hook.
    ///
    /// ```
    /// use tower_bad_gateway::BadGatewayLayer;
    /// use tower::{Layer, ServiceExt};
    /// use std::sync::{Arc, Mutex};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let layer = BadGatewayLayer::new().on_failure_with_request(move |err, req| {
    ///     let id = req.request_id_for_log().unwrap_or_default().into_owned();
    ///     log.lock().unwrap().push(format!("{} {} {id} -> {}", req.method(), req.path().unwrap_or("-"), err.kind()));
    /// });
    /// let refused = tower::service_fn(|_req: http::Request<()>| async {
    ///     Err::<http::Response<http_body_util::Empty<bytes::Bytes>>, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    /// });
    /// let req = http::Request::delete("http://10.0.0.1/items/7?force=1").header("x-request-id", "r-42").body(()).unwrap();
    /// let _ = layer.layer(refused).oneshot(req).await;
    /// assert_eq!(seen.lock().unwrap()[0], "DELETE /items/7 r-42 -> connection_refused");
    /// # }
    /// ```
    pub fn on_failure_with_request<F>(mut self, f: F) -> Self
    where
        F: Fn(&GatewayError, &RequestInfo) + Send + Sync + 'static,
    {
        self.settings().on_failure_with_request = Some(Arc::new(f));
        self
    }

    /// Calls `f` with the upstream's status and the request, for every upstream
    /// error answer the [`ResponsePolicy`] intercepts (replaced by the gateway's
    /// page): the upstream failed, and this is where it is recorded, beside the
    /// event (`upstream error answer intercepted`) and the
    /// `tower_bad_gateway.intercepted` counter. A second call replaces the hook.
    ///
    /// ```
    /// use tower_bad_gateway::{BadGatewayLayer, ResponsePolicy};
    /// use tower::{Layer, ServiceExt};
    /// use std::sync::{Arc, Mutex};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let layer = BadGatewayLayer::new()
    ///     .response_policy(ResponsePolicy::new().intercept_statuses([500]))
    ///     .on_intercept(move |status, req| log.lock().unwrap().push(format!("{} {status}", req.method())));
    /// let failing = tower::service_fn(|_req: http::Request<()>| async {
    ///     let res = http::Response::builder().status(500).body(http_body_util::Full::new(bytes::Bytes::from("trace"))).unwrap();
    ///     Ok::<_, std::io::Error>(res)
    /// });
    /// let res = layer.layer(failing).oneshot(http::Request::get("/").body(()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), 500);
    /// assert_eq!(seen.lock().unwrap()[0], "GET 500 Internal Server Error");
    /// # }
    /// ```
    pub fn on_intercept<F>(mut self, f: F) -> Self
    where
        F: Fn(http::StatusCode, &RequestInfo) + Send + Sync + 'static,
    {
        self.settings().on_intercept = Some(Arc::new(f));
        self
    }

    /// The classifier set with [`classifier`](Self::classifier).
    pub(crate) fn classifier_ref(&self) -> &Classifier {
        &self.settings.classifier
    }

    /// The same layer, classifying with `classifier` shared as it is.
    pub(crate) fn with_shared_classifier(mut self, classifier: Arc<Classifier>) -> Self {
        let settings = self.settings();
        settings.classifier = classifier;
        settings.stack_shares_classifier = true;
        self
    }
}

impl fmt::Debug for BadGatewayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BadGatewayLayer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S> Layer<S> for BadGatewayLayer {
    type Service = BadGateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // Every kind's plain answer is rendered once, by the first service made
        // (the renderer keeps them; its clones share them).
        self.settings.renderer.prepare();
        BadGateway::from_settings(inner, self.settings.clone())
    }
}
