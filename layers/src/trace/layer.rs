use std::sync::Arc;

use tower_layer::Layer;

use super::service::{ClientSpan, ServerSpan};
use crate::tally::Tally;

/// Server-side layer: a SERVER span per call, see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ServerSpanLayer {
    service: &'static str,
    rejected: Arc<Tally>,
}

impl ServerSpanLayer {
    /// A layer whose spans belong to `service` (`vuln-analyzer`).
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            rejected: Arc::new(Tally::new(super::REJECTIONS_EVERY)),
        }
    }
}

impl<S> Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerSpan {
            inner,
            service: self.service,
            rejected: self.rejected.clone(),
        }
    }
}

/// Client-side layer: a CLIENT span per outgoing call, injected as `traceparent`.
#[derive(Debug, Clone)]
pub struct ClientSpanLayer {
    service: Arc<str>,
}

impl ClientSpanLayer {
    /// A layer for the calls `service` (the caller, `scan-orchestrator`) makes.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.into(),
        }
    }
}

impl<S> Layer<S> for ClientSpanLayer {
    type Service = ClientSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientSpan {
            inner,
            service: self.service.clone(),
        }
    }
}
