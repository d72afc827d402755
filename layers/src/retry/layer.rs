use tower_layer::Layer;

use super::{policy::RetryPolicy, service::Retry};
use crate::classify::{Classify, GrpcClassifier};

/// Retries calls by a [`RetryPolicy`]; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct RetryLayer<C = GrpcClassifier> {
    policy: RetryPolicy,
    classifier: C,
}

impl RetryLayer {
    /// A layer applying `policy`, judging outcomes by the gRPC table.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            classifier: GrpcClassifier,
        }
    }
}

impl<C: Classify> RetryLayer<C> {
    /// A layer applying `policy`, judging outcomes with `classifier`.
    pub fn with_classifier(policy: RetryPolicy, classifier: C) -> Self {
        Self { policy, classifier }
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
        }
    }
}
