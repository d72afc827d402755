use tower_layer::Layer;

use super::{core::Breaker, service::CircuitBreaker};
use crate::classify::{Classify, GrpcClassifier};

/// Applies a [`Breaker`] to a service. Clones of the layer (and of the services it makes)
/// share the breaker: one breaker per dependency, however many channels reach it.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = GrpcClassifier> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer over `breaker`, judging outcomes by the gRPC table.
    pub fn new(breaker: Breaker) -> Self {
        Self {
            breaker,
            classifier: GrpcClassifier,
        }
    }
}

impl<C: Classify> CircuitBreakerLayer<C> {
    /// A layer over `breaker`, judging outcomes with `classifier`.
    pub fn with_classifier(breaker: Breaker, classifier: C) -> Self {
        Self {
            breaker,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}
