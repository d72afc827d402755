//! The kit PHANTOM's services are built with: no service's code, settings or tables, only
//! what every server and client has.
//!
//! A service crate builds its server with [`server::Server`] (the shared layer stack, health,
//! reflection, `phantom.v1.Metrics`; its database, followed by readiness; serving, draining
//! and the probe port), calls its peers through [`client::to_peer`] (the client layer stack),
//! and registers its components in the [`Context`] it is handed, which also carries the
//! process's [`telemetry::Secrets`] for whatever the service shows of a dependency's error.
//! The binary composes the services; no crate but the binary knows the list of them.
//!
//! # Layout
//! - [`config`]: the settings every server shares (tenancy, server limits, shutdown, client
//!   policies, telemetry) and [`config::Invalid`], what validation refuses.
//! - [`server`]: the server stack (layers, health, reflection, graceful shutdown).
//! - [`client`]: channels to other services with the client-side layers; [`client::Peer`].
//! - [`http`]: the HTTP ports (`/health`, the WebSocket gateway) served with hard limits.
//! - [`metrics`]: `phantom.v1.Metrics` over a service's registry, and the Prometheus text of
//!   collected samples.
//! - [`ready`]: state that handlers reach once dependencies are up.
//! - [`telemetry`]: logs (text or JSON lines, scrubbed of secrets) and OpenTelemetry traces.
//! - [`time`](mod@time): timestamps.
//! - [`tls`]: TLS of the listeners and of the calls to peers, service identities from
//!   client certificates, certificates reloaded as they rotate.
//! - [`connect_store_for`]: a service's database (`phantom_storage`), opened with its
//!   migrations, its pool's gauge and the server's readiness following it.
//! - `testing` (feature `testing`): access to the backends `make test` provisions.

pub mod client;
pub mod config;
pub mod http;
pub mod metrics;
pub mod ready;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod tls;

pub use ready::Ready;
pub use tokio_util::sync::CancellationToken;

/// What the process hands each service it runs, besides its configuration and listeners.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The service's own registry: its breakers, limiters, retries, bulkheads, caches and
    /// gauges are registered here, and its `phantom.v1.Metrics` reports them. Two services
    /// of one process (`phantom up`) have two registries.
    pub registry: phantom_layers::registry::Registry,
    /// The process's registry (trace export): shared by the services of one process, and
    /// reported once per process by the collector.
    pub process: phantom_layers::registry::Registry,
    /// The process's secrets (those of its configuration): what the service shows of an
    /// error or a report is scrubbed of them ([`telemetry::Secrets::scrub`]). The log writer
    /// has the same list.
    pub secrets: telemetry::Secrets,
}

impl Context {
    /// A context with a registry of its own, in a process whose registry is `process` and
    /// whose secrets are `secrets`.
    pub fn new(process: phantom_layers::registry::Registry, secrets: telemetry::Secrets) -> Self {
        Self {
            registry: phantom_layers::registry::Registry::default(),
            process,
            secrets,
        }
    }
}

/// Service listeners handed to a service's `run`: bound by the caller, so that `phantom up`
/// can bind port 0 and tell each service where the others really are.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: tokio::net::TcpListener,
    /// The HTTP listener, for services that have one (health-aggregator: `/health`;
    /// notifier: WebSocket gateway).
    pub http: Option<tokio::net::TcpListener>,
    /// The plaintext health port (`grpc.health.v1` and `phantom.v1.Metrics` only), if any.
    pub health: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// The gRPC listener alone: no HTTP port, no separate probe port.
    pub fn grpc_only(grpc: tokio::net::TcpListener) -> Self {
        Self {
            grpc,
            http: None,
            health: None,
        }
    }
}

/// Opens the configured database and applies `migrators` (a service's: see
/// [`phantom_storage::Database::migrate`]), retrying until both succeed or `shutdown` fires.
/// Errors are logged scrubbed of `secrets`.
pub async fn connect_store(
    config: &config::StorageConfig,
    migrators: &[&'static phantom_storage::Migrator],
    secrets: &telemetry::Secrets,
    shutdown: &CancellationToken,
) -> Option<phantom_storage::Database> {
    connect_with_retry("database", secrets, shutdown, || async {
        let db = phantom_storage::Database::open(config).await?;
        for migrator in migrators {
            db.migrate(migrator).await?;
        }
        Ok::<_, phantom_storage::StoreError>(db)
    })
    .await
}

/// Retries `connect` with capped exponential backoff until it succeeds or `shutdown` fires,
/// logging each failure: a dependency that is down at start-up delays readiness, it does not
/// crash the process (which would only make Kubernetes restart it into the same situation).
/// Each error is logged scrubbed of `secrets`.
pub async fn connect_with_retry<T, E, F, Fut>(
    what: &str,
    secrets: &telemetry::Secrets,
    shutdown: &CancellationToken,
    mut connect: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        match connect().await {
            Ok(v) => return Some(v),
            Err(err) => {
                // Drivers quote the URL they dialled; the password must not reach the log.
                let error = secrets.scrub(&err.to_string()).into_owned();
                tracing::warn!(dependency = what, error, retry_in = ?delay, "Dependency not ready");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
}

/// How often readiness probes the database: with [`DATABASE_PROBE_TIMEOUT`], a database that
/// stops answering (or, embedded, stops taking writes) is NOT_SERVING within 1.5 s.
pub const DATABASE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest one readiness probe of the database may take (less if `probe_timeout` says so).
pub const DATABASE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the database of `service` with `migrators` applied (retrying until it answers or
/// `shutdown` fires, logging errors scrubbed of the context's secrets), keeps its pool's
/// gauge up to date in the context's registry, and makes the server's
/// readiness follow it from then on ([`phantom_storage::Database::probe`], every
/// [`DATABASE_PROBE_EVERY`], each bounded by `probe_timeout` and at most
/// [`DATABASE_PROBE_TIMEOUT`]), and its gate close while the database is down (calls then
/// answer UNAVAILABLE at once instead of each waiting for a connection): what a service that
/// cannot work without its database does first.
#[allow(clippy::too_many_arguments)]
pub async fn connect_store_for(
    service: &'static str,
    storage: &config::StorageConfig,
    probe_timeout: std::time::Duration,
    context: &Context,
    migrators: &[&'static phantom_storage::Migrator],
    readiness: &server::HealthHandle,
    shutdown: &CancellationToken,
) -> Option<phantom_storage::Database> {
    let store = connect_store(storage, migrators, &context.secrets, shutdown).await?;
    spawn_store_gauges(
        service,
        store.clone(),
        context.registry.clone(),
        shutdown.clone(),
    );
    let (probed, gate) = (store.clone(), readiness.gate().clone());
    let timeout = probe_timeout.min(DATABASE_PROBE_TIMEOUT);
    readiness.follow(
        "database",
        DATABASE_PROBE_EVERY,
        // The check bounds its own steps: this only backs them up.
        timeout * 3,
        shutdown.clone(),
        move || {
            let (store, gate) = (probed.clone(), gate.clone());
            async move {
                let (ready, down) = database_state(&store, timeout).await;
                match down {
                    Some(reason) => gate.close(&reason),
                    None => gate.open(),
                }
                ready
            }
        },
    );
    Some(store)
}

/// Whether `store` is ready (its probe, [`phantom_storage::Database::probe`], answered within
/// `timeout`) and, when it is not, whether it is down: a PostgreSQL server that cannot be
/// reached by a new connection either, not a pool that is only busy nor an embedded
/// database that refuses writes (a full disk: reads go on). Down is what the server's gate
/// closes for, with the reason it gives.
async fn database_state(
    store: &phantom_storage::Database,
    timeout: std::time::Duration,
) -> (bool, Option<String>) {
    let failure = match tokio::time::timeout(timeout, store.probe()).await {
        Ok(Ok(())) => return (true, None),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    if store.dialect() != phantom_storage::Dialect::Postgres {
        return (false, None);
    }
    match tokio::time::timeout(timeout, store.reachable()).await {
        Ok(Ok(())) => (false, None),
        Ok(Err(_)) | Err(_) => {
            // Callers are told that it is down, not the driver's words (a user name, a host).
            tracing::debug!(error = %failure, "The database is down");
            (false, Some("the database is not answering".to_owned()))
        }
    }
}

/// Keeps the gauge of `service`'s connection pool (`phantom_db_pool_connections{state}`) up
/// to date until `shutdown`. What a service stores has gauges of its own (the orchestrator's
/// `phantom_scans{state}`).
pub fn spawn_store_gauges(
    name: &'static str,
    store: phantom_storage::Database,
    r: phantom_layers::registry::Registry,
    shutdown: CancellationToken,
) {
    spawn_gauge_refresh(shutdown, move || {
        let (store, r) = (store.clone(), r.clone());
        async move {
            let pool = store.pool_stats();
            let help = "Database connections of a service's pool, by state.";
            for (state, v) in [
                ("in_use", pool.in_use),
                ("idle", pool.idle),
                ("max", pool.max),
            ] {
                r.gauge(
                    "phantom_db_pool_connections",
                    help,
                    &[("service", name), ("state", state)],
                )
                .set(f64::from(v));
            }
        }
    });
}

/// How often gauges read from a dependency (a pool, a table) are refreshed.
pub const GAUGE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `refresh` every [`GAUGE_REFRESH`] until `shutdown`: what keeps a gauge that is read
/// from a dependency (a pool's connections, scans by state) up to date.
pub fn spawn_gauge_refresh<F, Fut>(shutdown: CancellationToken, mut refresh: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_REFRESH);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            refresh().await;
        }
    });
}
