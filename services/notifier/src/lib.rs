//! The notifier: durable, resumable notifications to subscribers.
//!
//! # Layout
//! - [`service`]: the `phantom.v1.Notifier` gRPC service (publish, subscribe with replay).

pub mod service;

use std::sync::Arc;

use phantom_proto::pb::notifier_server::NotifierServer;
use phantom_runtime::{
    CancellationToken, Config, Listeners, Ready, ServiceName, connect_with_retry, server,
    storage::SqlStore,
};

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.Notifier";

/// Runs the notifier on `listeners.grpc` until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let core = Ready::new();
    let (router, health) = server::router(ServiceName::Notifier, &config, &[GRPC_SERVICE])?;
    let router = router.add_service(NotifierServer::new(service::NotifierService::new(
        core.clone(),
        shutdown.clone(),
    )));
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
    let (served, ()) = tokio::join!(serve, init);
    served
}
