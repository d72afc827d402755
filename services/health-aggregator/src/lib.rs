//! The health-aggregator: concurrent health checks of every PHANTOM component, over gRPC
//! (`phantom.v1.HealthAggregator`) and HTTP (`/health`, `/health/metrics`, `/metrics`).
//!
//! # Layout
//! - [`checks`]: the [`checks::Checker`] (components, statistics, history) and how results
//!   aggregate; the [`checks::Check`] trait and its typed [`checks::CheckError`].
//!   - one file per kind of check: [`checks::service`] (the Watch stream of each service),
//!     [`checks::database`], [`checks::redis`] (the cache), [`checks::llm`],
//!     [`checks::system`] (CPU, memory, disk), [`checks::network`] (TCP targets).
//! - [`service`]: the periodic loop and the gRPC service.
//! - [`http`]: the HTTP endpoints.
//! - [`settings`]: the `[health]` section and what the service runs with ([`Config`]): the
//!   services to watch, as the binary lists them.

pub mod checks;
pub mod http;
pub mod service;
pub mod settings;

use phantom_kit::{CancellationToken, Context, Listeners, server};
use phantom_proto::pb::health_aggregator_server::HealthAggregatorServer;
pub use settings::Config;

/// The service's name: in logs, spans, metrics and health reports.
pub const NAME: &str = "health-aggregator";

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.HealthAggregator";

/// Runs the health-aggregator: gRPC on `listeners.grpc`, HTTP on `listeners.http` (if given),
/// until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    context: Context,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let aggregator = service::Aggregator::new(checks::Checker::new(&config, &context, &shutdown)?);
    let server = server::Server::new(NAME, &config.server, &context, &[GRPC_SERVICE])?
        .with_services(|router| {
            router.add_service(HealthAggregatorServer::new(
                service::HealthAggregatorService::new(aggregator.clone(), shutdown.clone()),
            ))
        });
    // The aggregator has no dependency of its own to wait for: it reports on the others.
    let grpc = server.serve(
        listeners.grpc,
        listeners.health,
        shutdown.clone(),
        std::future::ready(true),
    );
    let http_router = http::router(
        aggregator.clone(),
        http::Collector::new(
            aggregator.checker().channels(),
            config.health.timeout,
            config.bearer.clone(),
        ),
        phantom_kit::http::AllowedHosts::new(&config.health.http_allowed_hosts),
        context.secrets.clone(),
    );
    // Within the `[http]` limits: header and idle timeouts, a connection cap.
    let http = async {
        match listeners.http {
            Some(listener) => phantom_kit::http::serve(
                "health (/health, /health/metrics, /metrics)",
                listener,
                http_router,
                &config.server.http,
                config.server.tls.as_ref(),
                &context.registry,
                shutdown.clone(),
            )
            .await
            .map_err(server::ServeError::Http),
            None => Ok(()),
        }
    };
    let checks = aggregator
        .clone()
        .run(config.health.interval, shutdown.clone());
    let (grpc, http, ()) = tokio::join!(grpc, http, checks);
    grpc.and(http)
}
