//! The vuln-analyzer: scores, deduplicates and triages findings.
//!
//! # Layout
//! - [`cvss`]: CVSS scores of a whole vector: v3.1/v3.0 base, temporal and environmental by
//!   the specification's equations, v4.0 (base, and CVSS-BT/BE/BTE of the vector as given)
//!   through the RustSec `cvss` crate after a strict check of the vector.
//! - [`enrich`]: the queue that upgrades degraded analyses once the LLM answers again.
//! - [`payload`]: how a finding waits in the enrichment queue.
//! - [`llm`]: LLM triage through an OpenAI-compatible API, behind a circuit breaker.
//! - [`repository`]: analyses and the enrichment queue in the shared database, and their
//!   migrations.
//! - [`rules`]: the rule-based analysis (what answers when no LLM does).
//! - [`service`]: the `phantom.v1.VulnAnalyzer` gRPC service.
//! - [`settings`]: the `[analyzer]` section and what the service runs with ([`Config`]).

pub mod cvss;
pub mod enrich;
pub mod llm;
pub mod payload;
pub mod repository;
pub mod rules;
pub mod service;
pub mod settings;

use phantom_kit::{CancellationToken, Context, Listeners, Ready, server};
use phantom_proto::pb::vuln_analyzer_server::VulnAnalyzerServer;
use phantom_storage::cache;
pub use settings::Config;

/// The service's name: in logs, spans, metrics and health reports.
pub const NAME: &str = "vuln-analyzer";

/// Fully-qualified name of the gRPC service, as health checks and reflection know it.
pub const GRPC_SERVICE: &str = "phantom.v1.VulnAnalyzer";

/// Runs the vuln-analyzer on `listeners.grpc` until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    context: Context,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let core = Ready::new();
    let server = server::Server::new(NAME, &config.server, &context, &[GRPC_SERVICE])?
        .with_services(|router| {
            router.add_service(VulnAnalyzerServer::new(service::VulnAnalyzerService::new(
                core.clone(),
            )))
        });
    let database = server.database(&config.storage, &config.migrations, &shutdown);
    let init = async {
        let Some(db) = database.await else {
            return false;
        };
        // A Redis that is down does not hold the service back: the cache passes through until
        // it answers. Only a malformed URL fails here, which validation refuses.
        let cache = match cache::connect_registered(NAME, &config.cache, &context.registry).await {
            Ok(cache) => cache,
            Err(err) => {
                tracing::error!(error = %err, "The cache cannot be opened");
                return false;
            }
        };
        let ready = std::sync::Arc::new(service::Core {
            store: std::sync::Arc::new(repository::SqlAnalysisRepository::new(db)),
            cache,
            cache_ttl: config.cache.default_ttl,
            llm: llm::Llm::new(&config.analyzer.llm, &context.registry, &context.secrets),
            enrich_wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(enrich::run(
            ready.clone(),
            config.analyzer.enrichment.clone(),
            shutdown.clone(),
        ));
        core.set(ready);
        true
    };
    server
        .serve(listeners.grpc, listeners.health, shutdown.clone(), init)
        .await
}
