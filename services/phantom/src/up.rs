//! Running services: all four in one process (`phantom up`) or one (`phantom serve`).

use std::net::SocketAddr;

use anyhow::Context as _;
use phantom_kit::{
    CancellationToken, Context, Listeners, config::ServerAuth, server::bind, telemetry::Secrets,
};
use phantom_layers::registry::Registry;

use crate::config::{Config, Runtime, ServiceName};

/// Where each service of a `phantom up` listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// scan-orchestrator gRPC.
    pub scan_orchestrator: SocketAddr,
    /// vuln-analyzer gRPC.
    pub vuln_analyzer: SocketAddr,
    /// notifier gRPC.
    pub notifier: SocketAddr,
    /// health-aggregator gRPC.
    pub health_aggregator: SocketAddr,
    /// health-aggregator HTTP.
    pub http: SocketAddr,
    /// notifier WebSocket gateway.
    pub ws: SocketAddr,
}

/// Listeners of a whole system, bound and not yet served.
#[derive(Debug)]
pub struct System {
    config: Config,
    addresses: Addresses,
    listeners: Vec<(ServiceName, Listeners, Context)>,
}

impl System {
    /// Binds every listener of `config` (port 0 picks a free port) and points each service's
    /// clients at the addresses actually bound. Each service gets a registry of its own, in
    /// a process whose registry is `process` (what telemetry counts in), and `secrets`, where
    /// the secrets of `config` are registered (hand the same to the log writer).
    pub async fn bind(
        mut config: Config,
        process: &Registry,
        secrets: &Secrets,
    ) -> anyhow::Result<Self> {
        // What `phantom up` sets up by itself: the API keys' server key (kept in the data
        // directory) and this process's services' token.
        crate::auth::prepare_local(
            &mut config.auth,
            &config.storage.data_dir,
            config.tls.enabled,
        )?;
        // Whatever shows a secret of this configuration from now on (a log line written with
        // `secrets`, a report), it shows `***`.
        config.register_secrets(secrets);
        let l = &config.listen;
        let so = bind("scan-orchestrator", l.scan_orchestrator).await?;
        let va = bind("vuln-analyzer", l.vuln_analyzer).await?;
        let no = bind("notifier", l.notifier).await?;
        let ha = bind("health-aggregator", l.health_aggregator).await?;
        let http = bind("http", l.http).await?;
        let ws = bind("ws", l.ws).await?;
        let addresses = Addresses {
            scan_orchestrator: so.local_addr()?,
            vuln_analyzer: va.local_addr()?,
            notifier: no.local_addr()?,
            health_aggregator: ha.local_addr()?,
            http: http.local_addr()?,
            ws: ws.local_addr()?,
        };
        config.listen.scan_orchestrator = addresses.scan_orchestrator;
        config.listen.vuln_analyzer = addresses.vuln_analyzer;
        config.listen.notifier = addresses.notifier;
        config.listen.health_aggregator = addresses.health_aggregator;
        config.listen.http = addresses.http;
        config.listen.ws = addresses.ws;
        // In one process the services always reach each other where they were just bound.
        config.endpoints = Default::default();
        let grpc_only = |grpc| Listeners {
            grpc,
            http: None,
            health: None,
        };
        let context = || Context::new(process.clone(), secrets.clone());
        Ok(Self {
            listeners: vec![
                (ServiceName::VulnAnalyzer, grpc_only(va), context()),
                (
                    ServiceName::Notifier,
                    Listeners {
                        grpc: no,
                        http: Some(ws),
                        health: None,
                    },
                    context(),
                ),
                (ServiceName::ScanOrchestrator, grpc_only(so), context()),
                (
                    ServiceName::HealthAggregator,
                    Listeners {
                        grpc: ha,
                        http: Some(http),
                        health: None,
                    },
                    context(),
                ),
            ],
            config,
            addresses,
        })
    }

    /// What `phantom up` tells its user about credentials.
    fn auth_summary(&self) -> String {
        if !self.config.auth.enabled {
            return "Authentication is OFF (auth.enabled = false): anyone who reaches a port acts for the default tenant.\n".to_owned();
        }
        let key = crate::auth::admin_key_path(&self.config.storage.data_dir);
        format!(
            "Calls need credentials. On this machine the CLI uses the local admin key {key}\n  \
             (created on first start); elsewhere pass --token or PHANTOM_TOKEN. With grpcurl:\n  \
             grpcurl -plaintext -H \"authorization: Bearer $(cat {key})\" {} list\n",
            self.addresses.scan_orchestrator,
            key = key.display(),
        )
    }

    /// Where the services listen.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The registry of `service`: its breakers, limiters, caches and counters.
    pub fn registry(&self, service: ServiceName) -> Registry {
        self.listeners
            .iter()
            .find(|(s, _, _)| *s == service)
            .map(|(_, _, c)| c.registry.clone())
            .expect("every service has a context")
    }

    /// Runs every service until `shutdown` fires or one of them fails (which stops the rest).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Apply migrations once, before four services race to: the services then open the
        // database without migrating it again.
        crate::commands::migrate::migrate_all(&self.config.storage)
            .await
            .context("cannot open the database")?;
        let mut config = self.config;
        config.runtime = Runtime {
            auth: local_auth(&config).await?,
            tls: phantom_kit::tls::Tls::if_enabled(&config.tls)?,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (service, listeners, context) in self.listeners {
            let config = config.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                (
                    service,
                    run_service(service, config, Vec::new(), listeners, context, shutdown).await,
                )
            });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let (service, result) = joined.context("a service task panicked")?;
            if let Err(err) = result {
                tracing::error!(service = %service, error = %format!("{err:#}"), "Service failed; stopping the others");
                shutdown.cancel();
                first_error.get_or_insert(err.context(format!("{service} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The authentication the services of this process share, with a working local admin key
/// in the data directory (created on first start, or again if it no longer works).
async fn local_auth(config: &Config) -> anyhow::Result<Option<ServerAuth>> {
    let auth = &config.auth;
    if !auth.enabled {
        tracing::warn!(
            "Authentication is off (auth.enabled = false): anyone who reaches a port acts for the default tenant"
        );
        return Ok(None);
    }
    let db = phantom_storage::Database::open(&config.storage)
        .await
        .context("cannot open the database for the key store")?;
    let authenticator = phantom_identity::Authenticator::from_config(auth, db).await?;
    crate::auth::ensure_local_admin(
        &authenticator,
        &config.tenancy.default_tenant,
        &config.storage.data_dir,
    )
    .await?;
    let shared = std::sync::Arc::new(crate::auth::Deferred::ready(authenticator));
    Ok(crate::auth::server_auth(auth, shared))
}

/// Runs `service` of `config`, applying `migrations` when it opens the database (none when
/// they were applied already).
async fn run_service(
    service: ServiceName,
    config: Config,
    migrations: Vec<&'static phantom_storage::Migrator>,
    listeners: Listeners,
    context: Context,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match service {
        ServiceName::ScanOrchestrator => {
            let config = phantom_scan_orchestrator::Config {
                migrations,
                ..config.scan_orchestrator()
            };
            phantom_scan_orchestrator::run(config, listeners, context, shutdown).await?
        }
        ServiceName::VulnAnalyzer => {
            let config = phantom_vuln_analyzer::Config {
                migrations,
                ..config.vuln_analyzer()
            };
            phantom_vuln_analyzer::run(config, listeners, context, shutdown).await?
        }
        ServiceName::Notifier => {
            let config = phantom_notifier::Config {
                migrations,
                ..config.notifier()
            };
            phantom_notifier::run(config, listeners, context, shutdown).await?
        }
        ServiceName::HealthAggregator => {
            let config = config.health_aggregator();
            phantom_health_aggregator::run(config, listeners, context, shutdown).await?
        }
    }
    Ok(())
}

/// `phantom up`.
pub async fn up(
    config: Config,
    process: &Registry,
    secrets: &Secrets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let system = System::bind(config, process, secrets).await?;
    let a = system.addresses();
    // Printed, not logged: this is what the person who typed `phantom up` reads first. A
    // closed stdout (`phantom up | head -1`) must not stop the system, so write errors are
    // ignored.
    let summary = format!(
        "PHANTOM is up:\n  \
         scan-orchestrator   {}\n  \
         vuln-analyzer       {}\n  \
         notifier            {}\n  \
         health-aggregator   {}\n  \
         health (HTTP)       http://{}/health\n  \
         notifier (WS)       ws://{}/ws?rooms=system\n\
         Try: phantom scan 127.0.0.1 --ports 1-1024   (Ctrl-C stops)\n{}",
        a.scan_orchestrator,
        a.vuln_analyzer,
        a.notifier,
        a.health_aggregator,
        a.http,
        a.ws,
        system.auth_summary(),
    );
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, summary.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out));
    drop(out);
    system.run(shutdown).await
}

/// `phantom serve <service>`.
pub async fn serve(
    service: ServiceName,
    mut config: Config,
    process: &Registry,
    secrets: &Secrets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.register_secrets(secrets);
    let grpc_addr = match service {
        ServiceName::ScanOrchestrator => config.listen.scan_orchestrator,
        ServiceName::VulnAnalyzer => config.listen.vuln_analyzer,
        ServiceName::Notifier => config.listen.notifier,
        ServiceName::HealthAggregator => config.listen.health_aggregator,
    };
    let grpc = bind(service.as_str(), grpc_addr).await?;
    let bound = grpc.local_addr()?;
    tracing::info!(service = %service, addr = %bound, "Listening");
    // With port 0, the service's own endpoint (its self-check) is where it was just bound.
    match service {
        ServiceName::ScanOrchestrator => config.listen.scan_orchestrator = bound,
        ServiceName::VulnAnalyzer => config.listen.vuln_analyzer = bound,
        ServiceName::Notifier => config.listen.notifier = bound,
        ServiceName::HealthAggregator => config.listen.health_aggregator = bound,
    }
    let http = match service {
        ServiceName::HealthAggregator => Some(bind("http", config.listen.http).await?),
        ServiceName::Notifier => Some(bind("ws", config.listen.ws).await?),
        _ => None,
    };
    // In a pod: the probes' own plaintext port (`phantom up` has none: it is not probed).
    let health = match config.listen.health.parse::<std::net::SocketAddr>() {
        Ok(addr) => Some(bind("health", addr).await?),
        Err(_) => None,
    };
    let listeners = Listeners { grpc, http, health };
    let context = Context::new(process.clone(), secrets.clone());
    config.runtime.tls = phantom_kit::tls::Tls::if_enabled(&config.tls)?;
    config.runtime.auth = if config.auth.enabled {
        if config.auth.key_secret.is_empty() {
            anyhow::bail!(
                "auth.key_secret (PHANTOM_AUTH_KEY_SECRET) must be set to serve with authentication \
                 (at least 32 bytes, the same for every service); or set auth.enabled = false"
            );
        }
        // The key store opens when the database answers; until then only the services'
        // token is checked.
        let authenticator = crate::auth::Deferred::open(
            config.auth.clone(),
            config.storage.clone(),
            shutdown.clone(),
        )?;
        crate::auth::server_auth(&config.auth, std::sync::Arc::new(authenticator))
    } else {
        tracing::warn!(
            "Authentication is off (auth.enabled = false): anyone who reaches a port acts for the default tenant"
        );
        None
    };
    run_service(
        service,
        config,
        Config::migrations(),
        listeners,
        context,
        shutdown,
    )
    .await
}
