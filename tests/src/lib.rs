//! Helpers for the cross-service scenarios under `tests/tests/`: start a whole PHANTOM
//! system in-process on port-0 loopback addresses, and wait for it to be ready; a fake
//! OpenAI-compatible server ([`llm`]).

pub mod llm;

use std::{net::SocketAddr, path::Path, time::Duration};

use phantom::config::{Config, ServiceName};
use phantom::up::{Addresses, System};
use phantom_kit::{CancellationToken, telemetry::Secrets};
use phantom_layers::registry::Registry;
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long a scenario waits for something that should happen promptly. Generous: the
/// tests must not depend on the machine being fast.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A configuration with every listener on `127.0.0.1:0` and the database in `data_dir`.
pub fn config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    config.listen.scan_orchestrator = any;
    config.listen.vuln_analyzer = any;
    config.listen.notifier = any;
    config.listen.health_aggregator = any;
    config.listen.http = any;
    config.listen.ws = any;
    config.storage.data_dir = data_dir.to_owned();
    config.health.interval = Duration::from_millis(200);
    // The machine's own load (a parallel build) is no test's subject: never DEGRADED for it.
    config.health.cpu_threshold_percent = 101.0;
    config.health.memory_threshold_percent = 101.0;
    config.health.disk_threshold_percent = 101.0;
    // These scenarios are about what happens after a call is let in; who may call is
    // `identity.rs`'s subject, with authentication on.
    config.auth.enabled = false;
    config
}

/// [`config`] on the PostgreSQL and Redis `make test` provisioned, acting for a tenant of its
/// own named after `test` (the database is shared with other tests, and with earlier runs),
/// or `None` (the test skips, saying so) when they are not provisioned.
pub fn config_on_backends(data_dir: &Path, test: &str) -> Option<Config> {
    let (Some(db), Some(redis)) = (
        phantom_kit::testing::postgres_url(),
        phantom_kit::testing::redis_url(),
    ) else {
        return None;
    };
    let mut cfg = config(data_dir);
    cfg.storage.database_url = db;
    cfg.cache.redis_url = redis;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    cfg.tenancy.default_tenant =
        phantom_layers::Tenant::parse(&format!("{test}-{}-{started}", std::process::id()))
            .expect("a tenant id");
    Some(cfg)
}

/// A `CreateScan` of `127.0.0.1:port`, carrying `correlation_id`.
pub fn scan_request(
    port: u16,
    correlation_id: &str,
) -> tonic::Request<phantom_proto::pb::CreateScanRequest> {
    let mut request = tonic::Request::new(phantom_proto::pb::CreateScanRequest {
        targets: vec!["127.0.0.1".into()],
        ports: port.to_string(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-correlation-id",
        correlation_id.parse().expect("an ASCII id"),
    );
    request
}

/// A system running in this process.
#[derive(Debug)]
pub struct Running {
    /// Where its services listen.
    pub addrs: Addresses,
    /// Cancel to shut it down.
    pub shutdown: CancellationToken,
    /// Resolves when it has stopped.
    pub task: tokio::task::JoinHandle<Result<(), String>>,
    /// Each service's registry, by service.
    pub registries: Vec<(ServiceName, Registry)>,
}

impl Running {
    /// Starts the system of `config` and waits until every service reports SERVING.
    pub async fn start(config: Config) -> Self {
        Self::start_in(config, &Registry::default(), &Secrets::new()).await
    }

    /// [`Running::start`], in a process whose registry is `process` (what
    /// `telemetry::init` returned) and whose secrets are `secrets` (what the log writer was
    /// given: the configuration's are registered there).
    pub async fn start_in(config: Config, process: &Registry, secrets: &Secrets) -> Self {
        // With TLS on, readiness is asked over TLS, as the services' own certificate.
        let tls = phantom_kit::tls::Tls::if_enabled(&config.tls).expect("the TLS files load");
        let system = System::bind(config, process, secrets)
            .await
            .expect("listeners bind");
        let addrs = system.addresses();
        let registries = [
            ServiceName::ScanOrchestrator,
            ServiceName::VulnAnalyzer,
            ServiceName::Notifier,
            ServiceName::HealthAggregator,
        ]
        .into_iter()
        .map(|s| (s, system.registry(s)))
        .collect();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { system.run(shutdown).await.map_err(|e| format!("{e:#}")) }
        });
        for addr in [
            addrs.scan_orchestrator,
            addrs.vuln_analyzer,
            addrs.notifier,
            addrs.health_aggregator,
        ] {
            wait_for_status_over(addr, "", ServingStatus::Serving, tls.as_ref()).await;
        }
        Self {
            addrs,
            shutdown,
            task,
            registries,
        }
    }

    /// The registry of `service`.
    pub fn registry(&self, service: ServiceName) -> &Registry {
        &self
            .registries
            .iter()
            .find(|(s, _)| *s == service)
            .expect("every service has a registry")
            .1
    }

    /// Stops the system and waits for it to exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("stops in time");
        result.expect("no panic").expect("clean exit");
    }
}

/// Another scan-orchestrator replica of `config`'s system, on the same database, calling
/// `running`'s analyzer and notifier: stop it with the token, then await the handle.
pub async fn second_orchestrator(
    config: &Config,
    running: &Running,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), phantom_kit::server::ServeError>>,
) {
    let mut cfg = config.clone();
    cfg.endpoints.vuln_analyzer = format!("http://{}", running.addrs.vuln_analyzer);
    cfg.endpoints.notifier = format!("http://{}", running.addrs.notifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(phantom_scan_orchestrator::run(
        cfg.scan_orchestrator(),
        phantom_kit::Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        stop.clone(),
    ));
    (stop, task)
}

/// Waits for the asset's run after `runs` runs to succeed, then pauses the asset (so the
/// listeners can change before the next one); returns the scan.
pub async fn next_asset_run(
    client: &mut ScanOrchestratorClient<Channel>,
    asset: &str,
    runs: u64,
) -> pb::Scan {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let a = client
            .get_asset(pb::GetAssetRequest {
                asset: asset.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        if a.runs > runs {
            let scan = client
                .get_scan(pb::GetScanRequest {
                    id: a.last_scan_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if scan.state() == pb::ScanState::Succeeded {
                client
                    .set_asset_paused(pb::SetAssetPausedRequest {
                        asset: asset.to_owned(),
                        paused: true,
                    })
                    .await
                    .unwrap();
                return scan;
            }
            assert!(
                matches!(
                    scan.state(),
                    pb::ScanState::Pending | pb::ScanState::Running
                ),
                "the scheduled scan ended {:?}: {}",
                scan.state(),
                scan.error
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {} never came",
            runs + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resumes the asset's schedule (its next due time after now).
pub async fn resume_asset(client: &mut ScanOrchestratorClient<Channel>, asset: &str) {
    client
        .set_asset_paused(pb::SetAssetPausedRequest {
            asset: asset.to_owned(),
            paused: false,
        })
        .await
        .unwrap();
}

/// A channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connects")
}

/// A lazily-connected channel to `addr` over `tls` (as the holder of its certificate), or
/// plaintext without.
pub fn channel_over(addr: SocketAddr, tls: Option<&phantom_kit::tls::Tls>) -> Channel {
    let scheme = if tls.is_some() { "https" } else { "http" };
    phantom_kit::client::lazy(&format!("{scheme}://{addr}"), tls, |url| {
        tonic::transport::Endpoint::try_from(url.to_owned())
            .map(|e| e.connect_timeout(Duration::from_secs(5)))
    })
    .expect("url")
}

/// Polls `grpc.health.v1` on `addr` until `service` reports `want`.
pub async fn wait_for_status(addr: SocketAddr, service: &str, want: ServingStatus) {
    wait_for_status_over(addr, service, want, None).await;
}

/// [`wait_for_status`] over `tls` when given.
pub async fn wait_for_status_over(
    addr: SocketAddr,
    service: &str,
    want: ServingStatus,
    tls: Option<&phantom_kit::tls::Tls>,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = HealthClient::new(channel_over(addr, tls))
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status());
        if got.is_ok_and(|s| s == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never reported {want:?} for {service:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on `addr` over plain HTTP/1.0: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("reads");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// Polls `GetScan` until scan `id` has SUCCEEDED, and returns it.
pub async fn wait_for_success(
    scans: &mut phantom_proto::pb::scan_orchestrator_client::ScanOrchestratorClient<Channel>,
    id: &str,
) -> phantom_proto::pb::Scan {
    use phantom_proto::pb;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = scans
            .get_scan(pb::GetScanRequest { id: id.to_owned() })
            .await
            .expect("GetScan answers")
            .into_inner();
        if now.state == pb::ScanState::Succeeded as i32 {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "scan never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
