//! The health-aggregator: concurrent health checks of every PHANTOM component, over gRPC
//! (`phantom.v1.HealthAggregator`) and HTTP (`/health`, `/health/metrics`, `/metrics`).
//!
//! # Layout
//! - [`checks`]: the checks and how their results aggregate.
//! - [`service`]: the periodic loop and the gRPC service.
//! - [`http`]: the HTTP endpoints.

pub mod checks;
pub mod http;
pub mod service;

use phantom_proto::pb::health_aggregator_server::HealthAggregatorServer;
use phantom_runtime::{CancellationToken, Config, Listeners, ServiceName, server};

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.HealthAggregator";

/// Why the aggregator could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    /// A component's URL is not a valid endpoint.
    #[error("invalid endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

/// Runs the health-aggregator: gRPC on `listeners.grpc`, HTTP on `listeners.http` (if given),
/// until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let aggregator = service::Aggregator::new(checks::Checker::new(&config)?);
    let (router, health) = server::router(ServiceName::HealthAggregator, &config, &[GRPC_SERVICE])?;
    let router = router.add_service(HealthAggregatorServer::new(
        service::HealthAggregatorService::new(aggregator.clone(), shutdown.clone()),
    ));
    // The aggregator has no dependency of its own to wait for: it reports on the others.
    health.set_serving().await;
    tracing::info!(service = "health-aggregator", "Ready");
    let grpc = server::serve(
        ServiceName::HealthAggregator,
        router,
        listeners.grpc,
        health,
        &config.shutdown,
        shutdown.clone(),
    );
    let http = async {
        let Some(listener) = listeners.http else {
            return Ok(());
        };
        tracing::info!(addr = ?listener.local_addr().ok(), "HTTP server listening (/health, /health/metrics, /metrics)");
        let shutdown = shutdown.clone();
        axum::serve(listener, http::router(aggregator.clone()))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    };
    let checks = aggregator
        .clone()
        .run(config.health.interval, shutdown.clone());
    let (grpc, http, ()) = tokio::join!(grpc, http, checks);
    http.map_err(server::ServeError::from)?;
    Ok(grpc?)
}
