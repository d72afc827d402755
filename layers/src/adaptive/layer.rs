use tower_layer::Layer;

use super::{limiter::ConcurrencyLimiter, service::AdaptiveConcurrency};
use crate::{
    classify::{Classify, GrpcClassifier},
    methods::Exempt,
};

/// Applies a [`ConcurrencyLimiter`] to a service. Clones of the layer (and of the services it
/// makes) share the limiter: one limit per server, or per dependency however many channels
/// reach it.
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrencyLayer<C = GrpcClassifier> {
    limiter: ConcurrencyLimiter,
    classifier: C,
    exempt: Exempt,
}

impl AdaptiveConcurrencyLayer {
    /// A layer over `limiter`, reading outcomes with the gRPC table.
    pub fn new(limiter: ConcurrencyLimiter) -> Self {
        Self::with_classifier(limiter, GrpcClassifier)
    }
}

impl<C: Classify> AdaptiveConcurrencyLayer<C> {
    /// A layer over `limiter`, reading outcomes with `classifier`.
    pub fn with_classifier(limiter: ConcurrencyLimiter, classifier: C) -> Self {
        Self {
            limiter,
            classifier,
            exempt: Exempt::default(),
        }
    }

    /// Lets the `exempt` paths through without a slot, even at the limit (a server's
    /// health probes and reflection: a probe refused for load would restart a busy server).
    #[must_use]
    pub fn with_exempt(mut self, exempt: Exempt) -> Self {
        self.exempt = exempt;
        self
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveConcurrencyLayer<C> {
    type Service = AdaptiveConcurrency<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveConcurrency {
            inner,
            limiter: self.limiter.clone(),
            classifier: self.classifier.clone(),
            exempt: self.exempt.clone(),
        }
    }
}
