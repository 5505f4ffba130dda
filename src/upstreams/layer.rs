use super::{EndpointSet, Upstreams};
use crate::classify::Classifier;
use std::sync::Arc;
use tower_layer::Layer;

/// What every [`Upstreams`] one layer makes shares.
#[derive(Debug)]
pub(super) struct Steering {
    pub(super) set: Option<EndpointSet>,
    pub(super) classifier: Arc<Classifier>,
    /// Built right above a [`Timeout`](crate::timeout::Timeout) (by
    /// [`GatewayLayer`](crate::GatewayLayer)), whose timeouts it sees as errors:
    /// no [`HeadDeadline`](crate::timeout::HeadDeadline) to look for.
    pub(super) timeout_below: bool,
}

/// Applies [`Upstreams`]: every attempt goes to an endpoint of an
/// [`EndpointSet`]. See the [module docs](super).
///
/// ```
/// use tower_bad_gateway::upstreams::{EndpointSet, UpstreamsLayer};
/// let set = EndpointSet::from_urls(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
/// let layer = UpstreamsLayer::new(set);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct UpstreamsLayer {
    steering: Arc<Steering>,
}

impl UpstreamsLayer {
    /// Sends every attempt to an endpoint of `set`.
    pub fn new(set: EndpointSet) -> Self {
        Self::from_parts(Some(set), Arc::default())
    }

    /// Classifies the attempts' failures with `classifier` to judge the endpoints'
    /// health (the default classifier otherwise). A classifier set further out (on
    /// a [`BadGatewayLayer`](crate::BadGatewayLayer) or a
    /// [`RetryPolicy`](crate::retry::RetryPolicy)) reaches this layer with each
    /// request, and its rules come first: there is no need to set it here too.
    pub fn classifier(self, classifier: Classifier) -> Self {
        Self::from_parts(self.steering.set.clone(), Arc::new(classifier))
    }

    /// A layer that passes requests through untouched (a
    /// [`GatewayLayer`](crate::GatewayLayer) without an endpoint set).
    pub(crate) fn from_parts(set: Option<EndpointSet>, classifier: Arc<Classifier>) -> Self {
        Self {
            steering: Arc::new(Steering {
                set,
                classifier,
                timeout_below: false,
            }),
        }
    }

    /// For a layer placed right above a [`Timeout`](crate::timeout::Timeout), as
    /// [`GatewayLayer`](crate::GatewayLayer) places it: the timeouts come up as
    /// errors, so it looks for no [`HeadDeadline`](crate::timeout::HeadDeadline).
    pub(crate) fn above_timeout(self) -> Self {
        Self {
            steering: Arc::new(Steering {
                set: self.steering.set.clone(),
                classifier: self.steering.classifier.clone(),
                timeout_below: true,
            }),
        }
    }
}

impl<S> Layer<S> for UpstreamsLayer {
    type Service = Upstreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Upstreams::from_shared(inner, self.steering.clone())
    }
}
