use tower_layer::Layer;

use super::service::{PropagateContext, RequestIdService};

/// Server-side layer: assigns or accepts a request id, see the [module docs](super).
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer {
    service_name: &'static str,
}

impl RequestIdLayer {
    /// A layer whose spans name `service_name`.
    pub fn new(service_name: &'static str) -> Self {
        Self { service_name }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService::new(inner, self.service_name)
    }
}

/// Client-side layer: copies the current call context onto outgoing requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateContextLayer;

impl<S> Layer<S> for PropagateContextLayer {
    type Service = PropagateContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateContext { inner }
    }
}
