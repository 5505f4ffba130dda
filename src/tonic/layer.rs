use super::IntoStatus;
use crate::classify::Classifier;
use std::sync::Arc;
use tower_layer::Layer;

/// Applies [`IntoStatus`]: every failure of the wrapped client becomes a
/// [`tonic::Status`] whose source is the [`GatewayError`](crate::GatewayError).
///
/// See the [module docs](crate::tonic) for the recipe around a tonic `Channel`.
///
/// ```
/// use tower_bad_gateway::tonic::IntoStatusLayer;
/// use tower_bad_gateway::{Classifier, ErrorKind};
///
/// let layer = IntoStatusLayer::new().classifier(Classifier::new().rule(|err, _| {
///     err.to_string().contains("circuit open").then_some(ErrorKind::DestinationUnavailable)
/// }));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, Default)]
pub struct IntoStatusLayer {
    classifier: Arc<Classifier>,
}

impl IntoStatusLayer {
    /// A layer with the default classifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies failures with `classifier`, here and in the layers below: each
    /// request carries it down, so a [`RetryLayer`](crate::retry::RetryLayer)
    /// below decides with its rules first too.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }
}

impl<S> Layer<S> for IntoStatusLayer {
    type Service = IntoStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IntoStatus::from_classifier(inner, self.classifier.clone())
    }
}
