//! The notifier: durable, resumable notifications to subscribers.
//!
//! # Layout
//! - [`service`]: the `phantom.v1.Notifier` gRPC service (publish, subscribe with replay).
//! - [`ws`]: the WebSocket gateway over the same feeds.

pub mod service;
pub mod ws;

use phantom_proto::pb::notifier_server::NotifierServer;
use phantom_runtime::{
    CancellationToken, Config, Listeners, Ready, ServiceName, connect_store, server,
};

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.Notifier";

/// Runs the notifier, gRPC on `listeners.grpc` and the WebSocket gateway on `listeners.http`
/// (if given), until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let core = Ready::new();
    let (router, health) = server::router(ServiceName::Notifier, &config, &[GRPC_SERVICE])?;
    let notifier = service::NotifierService::new(core.clone(), shutdown.clone());
    let router = router.add_service(NotifierServer::new(notifier.clone()));
    let init = async {
        let Some(store) = connect_store(&config.storage, &shutdown).await else {
            return false;
        };
        core.set(service::Core { store });
        true
    };
    let grpc = server::serve_when_ready(
        ServiceName::Notifier,
        router,
        listeners.grpc,
        health,
        &config.shutdown,
        shutdown.clone(),
        init,
    );
    let ws = server::serve_http(
        "notifier websocket (/ws)",
        listeners.http,
        ws::router(notifier, config.tenancy.default_tenant.clone()),
        shutdown.clone(),
    );
    let (grpc, ws) = tokio::join!(grpc, ws);
    grpc.and(ws)
}
