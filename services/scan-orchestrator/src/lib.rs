//! The scan-orchestrator: authorized scans that survive restarts.
//!
//! # Layout
//! - [`targets`]: target parsing and resolution, bounded per request.
//! - [`schedule`]: when an asset is due: cron in a time zone or an interval, jitter, missed
//!   runs.
//! - [`scope`]: the authorized scope every address is checked against.
//! - [`ports`]: port specifications.
//! - [`scanner`]: the engines, behind the [`scanner::Scanner`] trait.
//! - [`repository`]: scans, leases and findings in the shared database, and their
//!   migrations.
//! - [`runner`]: runs stored scans to a final state, resuming unfinished ones at start-up.
//! - [`assets`]: continuous scanning: assets scanned on schedules, fired once per due time
//!   across replicas; the diff of each scan and the findings' triage live in the repository.
//! - [`events`]: what the runner tells the notifier ([`events::ScanEvent`]), typed, and the
//!   notifications (type, priority, severity, JSON payload) made of them.
//! - [`service`]: the `phantom.v1.ScanOrchestrator` gRPC service.
//! - [`settings`]: the `[scan]` section and what the service runs with ([`Config`]).

pub mod assets;
pub mod events;
pub mod ports;
pub mod repository;
pub mod runner;
pub mod scanner;
pub mod schedule;
pub mod scope;
pub mod service;
pub mod settings;
pub mod targets;

use std::sync::Arc;

use phantom_kit::{CancellationToken, Context, Listeners, Ready, client, server};
use phantom_proto::pb::{
    notifier_client::NotifierClient, scan_orchestrator_server::ScanOrchestratorServer,
    vuln_analyzer_client::VulnAnalyzerClient,
};
pub use settings::Config;

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.ScanOrchestrator";

/// The service's name: in logs, spans, metrics and health reports.
pub const NAME: &str = "scan-orchestrator";

/// Runs the scan-orchestrator on `listeners.grpc` until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    context: Context,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let r = &context.registry;
    let analyzer = VulnAnalyzerClient::new(client::to_peer(NAME, &config.analyzer, r)?);
    let notifier = NotifierClient::new(client::to_peer(NAME, &config.notifier, r)?);
    let core = Ready::new();
    let server = server::Server::new(NAME, &config.server, &context, &[GRPC_SERVICE])?
        .with_services(|router| {
            router.add_service(ScanOrchestratorServer::new(
                service::ScanOrchestratorService::new(core.clone()),
            ))
        });
    let database = server.database(&config.storage, &config.migrations, &shutdown);
    let init = async {
        let Some(db) = database.await else {
            return false;
        };
        let sql = Arc::new(repository::SqlScanRepository::new(db));
        let store: Arc<dyn repository::ScanRepository> = sql.clone();
        let assets: Arc<dyn repository::assets::AssetRepository> = sql.clone();
        let alerts: Arc<dyn repository::alerts::AlertRepository> = sql;
        spawn_scan_gauge(store.clone(), context.registry.clone(), shutdown.clone());
        let mut scanners: Vec<Arc<dyn scanner::Scanner>> = vec![Arc::new(
            scanner::BuiltinScanner::with_caps(&config.scan, per_host_caps(&config)),
        )];
        match scanner::NmapScanner::find(&config.scan.nmap) {
            Some(nmap) => scanners.push(Arc::new(nmap)),
            None => {
                tracing::warn!(path = %config.scan.nmap.path, "nmap not found: the nmap engine is not offered")
            }
        }
        match scanner::NucleiScanner::find(&config.scan.nuclei) {
            Some(nuclei) => scanners.push(Arc::new(nuclei)),
            None => {
                tracing::info!(path = %config.scan.nuclei.path, "nuclei not found: the nuclei engine is not offered")
            }
        }
        let alerter = assets::alerts::Alerter::new(alerts.clone(), notifier.clone());
        let runner = runner::Runner::new(
            store,
            scanners,
            analyzer,
            notifier,
            runner::RunnerConfig {
                max_concurrent: config.scan.max_concurrent_scans,
                lease: config.scan.lease,
                claim_every: config.scan.claim_every,
                reanalyze_every: config.scan.reanalyze_every,
                checkpoint_probes: config.scan.checkpoint_probes,
            },
            shutdown.clone(),
        );
        // Claims start with the unfinished scans of a previous run (or of a dead replica).
        runner.start();
        core.set(service::Core {
            runner,
            scope: targets::Scope::new(&config.scan),
            default_ports: config.scan.default_ports.clone(),
            max_hosts: config.scan.max_hosts_per_scan,
            quota: config.scan.quota,
            assets: assets.clone(),
            alerts,
            schedules: config.scan.schedules,
        });
        let scheduler = assets::Scheduler::new(
            assets,
            core.clone(),
            alerter,
            config.scan.schedules.check_every,
            config.scan.schedules.grace,
        );
        tokio::spawn(scheduler.run(shutdown.clone()));
        true
    };
    server
        .serve(listeners.grpc, listeners.health, shutdown.clone(), init)
        .await
}

/// The builtin engine's per-host caps: shared through Redis when there is one (see
/// [`scanner::politeness`]), per replica otherwise.
fn per_host_caps(config: &Config) -> scanner::politeness::HostCaps {
    let per_replica = || scanner::politeness::HostCaps::local(&config.scan);
    if config.redis_url.is_empty() {
        if config.scan.per_host_rate > 0 || config.scan.per_host_in_flight > 0 {
            tracing::info!("No Redis: the per-host caps hold per replica");
        }
        return per_replica();
    }
    match scanner::politeness::HostCaps::shared(&config.scan, &config.redis_url) {
        Ok(caps) => caps,
        Err(error) => {
            // The URL was checked at load; a client that cannot be made at all is an
            // operator's to fix, and scanning goes on within each replica's caps meanwhile.
            tracing::error!(%error, "The per-host caps cannot use Redis: they hold per replica");
            per_replica()
        }
    }
}

/// Keeps `phantom_scans{state}` (scans by state, all tenants) up to date until `shutdown`.
fn spawn_scan_gauge(
    store: Arc<dyn repository::ScanRepository>,
    r: phantom_layers::registry::Registry,
    shutdown: CancellationToken,
) {
    phantom_kit::spawn_gauge_refresh(shutdown, move || {
        let (store, r) = (store.clone(), r.clone());
        async move {
            let Ok(counts) = store.scan_counts().await else {
                return;
            };
            for state in [
                phantom_proto::pb::ScanState::Pending,
                phantom_proto::pb::ScanState::Running,
                phantom_proto::pb::ScanState::Succeeded,
                phantom_proto::pb::ScanState::Failed,
                phantom_proto::pb::ScanState::Cancelled,
            ] {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                let label = state
                    .as_str_name()
                    .trim_start_matches("SCAN_STATE_")
                    .to_ascii_lowercase();
                r.gauge(
                    "phantom_scans",
                    "Scans by state (all tenants).",
                    &[("state", &label)],
                )
                .set(n as f64);
            }
        }
    });
}
