//! The notifier: durable, resumable notifications to subscribers.
//!
//! # Layout
//! - [`service`]: the `phantom.v1.Notifier` gRPC service (publish, subscribe with replay).
//! - [`ws`]: the WebSocket gateway over the same feeds.

pub mod service;
pub mod ws;

use std::sync::Arc;

use phantom_proto::pb::notifier_server::NotifierServer;
use phantom_runtime::{
    CancellationToken, Config, Listeners, Ready, ServiceName, connect_with_retry, server,
    storage::SqlStore,
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
    let serve = server::serve(
        ServiceName::Notifier,
        router,
        listeners.grpc,
        health.clone(),
        &config.shutdown,
        shutdown.clone(),
    );
    let init = async {
        let Some(store) =
            connect_with_retry("database", &shutdown, || SqlStore::connect(&config.storage)).await
        else {
            return;
        };
        core.set(service::Core {
            store: Arc::new(store),
        });
        health.set_serving().await;
        tracing::info!(service = "notifier", "Ready");
    };
    let ws = async {
        let Some(listener) = listeners.http else {
            return Ok(());
        };
        tracing::info!(addr = ?listener.local_addr().ok(), "WebSocket gateway listening (/ws)");
        let shutdown = shutdown.clone();
        axum::serve(
            listener,
            ws::router(notifier, config.tenancy.default_tenant.clone()),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    };
    let (served, (), ws) = tokio::join!(serve, init, ws);
    ws.map_err(server::ServeError::from)?;
    served
}
