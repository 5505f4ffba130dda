use super::{BadGateway, Config, FailureHook};
use crate::classify::{Classifier, ResponsePolicy};
use crate::error::GatewayError;
use crate::render::Renderer;
use std::fmt;
use std::sync::{Arc, OnceLock};
use tower_layer::Layer;

/// Applies [`BadGateway`] to a service that calls an upstream.
///
/// Four settings, each independent of the others (the order of the calls never
/// matters): how failures are classified, which upstream answers count as
/// failures, how failures are answered, and a hook called for each. The services
/// a layer makes share one configuration, built the first time it makes one: every
/// kind's plain answer is rendered then, not per request.
///
/// ```
/// use tower_bad_gateway::{BadGatewayLayer, ErrorKind, ResponsePolicy};
/// use tower_bad_gateway::render::Renderer;
/// use http::StatusCode;
/// use std::time::Duration;
///
/// let layer = BadGatewayLayer::new()
///     .renderer(
///         Renderer::new()
///             .proxy_name("edge-1")
///             .status(ErrorKind::ConnectionRefused, StatusCode::SERVICE_UNAVAILABLE)
///             .retry_after(Duration::from_secs(5)),
///     )
///     .response_policy(ResponsePolicy::new().max_body_size(1 << 20))
///     .on_failure(|err| eprintln!("upstream failed: {}", err.kind()));
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
pub struct BadGatewayLayer {
    settings: Settings,
    /// Built from `settings` on the first `layer` call, and shared by clones; a
    /// setter makes a new layer, which builds afresh.
    built: Arc<OnceLock<Arc<Config>>>,
}

#[derive(Clone, Default)]
struct Settings {
    classifier: Option<Classifier>,
    policy: ResponsePolicy,
    renderer: Renderer,
    on_failure: Option<Arc<FailureHook>>,
}

impl BadGatewayLayer {
    /// A layer with the default classifier, no response policy, and the default
    /// renderer.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self.built = Arc::default();
        self
    }

    /// Classifies failures with `classifier` (see [`Classifier`] to extend the
    /// default one).
    pub fn classifier(self, classifier: Classifier) -> Self {
        self.set(|s| s.classifier = Some(classifier))
    }

    /// Declares which upstream answers are failures (default: none).
    pub fn response_policy(self, policy: ResponsePolicy) -> Self {
        self.set(|s| s.policy = policy)
    }

    /// Answers failures with `renderer`: statuses, proxy name, details, the HTML
    /// page, `Retry-After`, the request id header, or a renderer of your own (see
    /// [`Renderer`]).
    pub fn renderer(self, renderer: Renderer) -> Self {
        self.set(|s| s.renderer = renderer)
    }

    /// Calls `f` once for every failure, after it is classified (besides the
    /// `tracing` event). A second call replaces the first hook.
    pub fn on_failure<F>(self, f: F) -> Self
    where
        F: Fn(&GatewayError) + Send + Sync + 'static,
    {
        self.set(|s| s.on_failure = Some(Arc::new(f)))
    }

    /// The classifier set with [`classifier`](Self::classifier), if any.
    pub(crate) fn classifier_if_set(&self) -> Option<&Classifier> {
        self.settings.classifier.as_ref()
    }

    fn config(&self) -> Arc<Config> {
        self.built
            .get_or_init(|| {
                let s = &self.settings;
                s.renderer.prepare();
                Arc::new(Config {
                    classifier: s.classifier.clone().unwrap_or_default(),
                    policy: s.policy.clone(),
                    renderer: s.renderer.clone(),
                    on_failure: s.on_failure.clone(),
                })
            })
            .clone()
    }
}

impl fmt::Debug for BadGatewayLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("BadGatewayLayer")
            .field("classifier", &s.classifier)
            .field("policy", &s.policy)
            .field("renderer", &s.renderer)
            .field("on_failure", &s.on_failure.is_some())
            .finish()
    }
}

impl<S> Layer<S> for BadGatewayLayer {
    type Service = BadGateway<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BadGateway::from_config(inner, self.config())
    }
}
