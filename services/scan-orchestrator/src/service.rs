//! The `phantom.v1.ScanOrchestrator` gRPC service.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use phantom_domain::{ScanId, Tenant};
use phantom_kit::{
    Ready,
    server::tenant_of,
    telemetry,
    time::{now_micros, timestamp_now},
};
use phantom_layers::{Error, auth::audit, status::echo};
use phantom_proto::pb::{self, scan_orchestrator_server::ScanOrchestrator};
use tokio::sync::{broadcast, mpsc};

use crate::repository::{
    InsertScan, ScanRecord,
    assets::{AssetRecord, AssetRepository},
};
use tonic::{Request, Response, Status};

use crate::{
    ports,
    runner::Runner,
    targets::{self, Scope},
};

/// Default and largest page of ListScans.
const SCANS_PAGE: (i32, i32) = (50, 1000);
/// Default and largest page of ListFindings.
const FINDINGS_PAGE: (i32, i32) = (100, 1000);
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 128;
/// How often WatchScan re-reads the store, to see changes made by another replica.
const WATCH_POLL: Duration = Duration::from_secs(2);

/// Engines the API knows; `builtin` is the default.
pub const ENGINES: &[&str] = &["builtin", "nmap", "nuclei"];

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Runs the scans.
    pub runner: Arc<Runner>,
    /// The authorized scope.
    pub scope: Scope,
    /// Ports scanned when a request names none.
    pub default_ports: String,
    /// Most addresses per scan.
    pub max_hosts: u32,
    /// What one tenant may ask for.
    pub quota: crate::settings::QuotaConfig,
    /// Assets and their findings.
    pub assets: Arc<dyn AssetRepository>,
    /// Alert rules.
    pub alerts: Arc<dyn crate::repository::alerts::AlertRepository>,
    /// How schedules fire.
    pub schedules: crate::settings::SchedulesConfig,
}

/// The window of the daily hosts quota.
const QUOTA_DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Core {
    /// A new PENDING scan of `targets` (resolved, each checked against the scope) on
    /// `ports` (empty: the default list) with `scanner` (empty: builtin), within `tenant`'s
    /// quotas; not stored yet. The errors are the caller's to fix: INVALID_ARGUMENT naming the
    /// field, PERMISSION_DENIED out of scope, RESOURCE_EXHAUSTED over quota.
    pub async fn prepare_scan(
        &self,
        tenant: Tenant,
        targets: &[String],
        ports: &str,
        scanner: &str,
        request_id: String,
    ) -> Result<ScanRecord, Error> {
        let (scanner, ports) = self.engine_and_ports(scanner, ports)?;
        let resolved = match targets::resolve(targets, &self.scope, self.max_hosts).await {
            Ok(resolved) => resolved,
            Err(err) => {
                if let Error::SecurityViolation { message, .. } = &err {
                    tracing::warn!(
                        target: telemetry::SECURITY,
                        event = "scope.denied",
                        tenant = %tenant,
                        reason = %message,
                        "Scan refused: a target is out of the authorized scope"
                    );
                }
                return Err(err);
            }
        };
        self.within_quota(&tenant, resolved.len()).await?;
        Ok(ScanRecord {
            id: ScanId::generate(),
            tenant,
            state: pb::ScanState::Pending,
            targets: targets.iter().map(|t| t.trim().to_owned()).collect(),
            resolved,
            ports,
            scanner: scanner.to_owned(),
            progress_percent: 0,
            findings_count: 0,
            probes_total: 0,
            probes_done: 0,
            idempotency_key: None,
            error: String::new(),
            request_id,
            // The scan's span continues this call's trace, on whichever replica runs it.
            trace_context: telemetry::trace_context(),
            checkpoint: String::new(),
            created_at: now_micros(),
            started_at: None,
            finished_at: None,
            owner: String::new(),
            lease_until: 0,
            claims: 0,
            asset_id: None,
            due_at: None,
        })
    }

    /// The engine (checked, and offered here) and the normalized port specification a
    /// request names.
    pub fn engine_and_ports<'a>(
        &self,
        scanner: &'a str,
        ports: &str,
    ) -> Result<(&'a str, String), Error> {
        let scanner = if scanner.is_empty() {
            "builtin"
        } else {
            scanner
        };
        if !ENGINES.contains(&scanner) {
            return Err(Error::invalid(
                "scanner",
                format!(
                    "unknown engine {}; one of {}",
                    echo(scanner),
                    ENGINES.join(", ")
                ),
            ));
        }
        let ports = ports::for_request(ports, &self.default_ports)?;
        if !self.runner.has_scanner(scanner) {
            return Err(Error::FailedPrecondition {
                reason: "ENGINE_UNAVAILABLE",
                message: format!(
                    "engine {scanner:?} is not available on this server; use \"builtin\""
                ),
            });
        }
        Ok((scanner, ports::normalize(&ports)))
    }

    /// A scan of `asset` for due time `due` that could not start (`error`), stored FAILED so
    /// the due time's outcome is in the asset's history.
    pub fn failed_scan(&self, asset: &AssetRecord, due: i64, error: &str) -> ScanRecord {
        let now = now_micros();
        ScanRecord {
            id: ScanId::generate(),
            tenant: asset.tenant.clone(),
            state: pb::ScanState::Failed,
            targets: asset.targets.clone(),
            resolved: Vec::new(),
            ports: asset.ports.clone(),
            scanner: asset.scanner.clone(),
            progress_percent: 0,
            findings_count: 0,
            probes_total: 0,
            probes_done: 0,
            idempotency_key: None,
            error: format!("the scheduled scan could not start: {error}"),
            request_id: String::new(),
            trace_context: String::new(),
            checkpoint: String::new(),
            created_at: now,
            started_at: None,
            finished_at: Some(now),
            owner: String::new(),
            lease_until: 0,
            claims: 0,
            asset_id: Some(asset.id.clone()),
            due_at: Some(due),
        }
    }

    /// Refuses a scan of `hosts` addresses that would take `tenant` past its quotas, with
    /// RESOURCE_EXHAUSTED and when to retry.
    async fn within_quota(&self, tenant: &Tenant, hosts: usize) -> Result<(), Error> {
        let quota = self.quota;
        if quota.max_active_scans == 0 && quota.max_hosts_per_day == 0 {
            return Ok(());
        }
        let now = now_micros();
        let day = i64::try_from(QUOTA_DAY.as_micros()).unwrap_or(i64::MAX);
        let usage = self
            .runner
            .store()
            .tenant_usage(tenant, now - day)
            .await
            .map_err(Error::from)?;
        if quota.max_active_scans > 0 && usage.active_scans >= quota.max_active_scans {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "{} scans are pending or running, the tenant's limit (scan.quota.max_active_scans); retry when one ends",
                    usage.active_scans
                ),
                retry_after: Some(std::time::Duration::from_secs(30)),
            });
        }
        let hosts = hosts as u64;
        if quota.max_hosts_per_day > 0 && usage.hosts + hosts > quota.max_hosts_per_day {
            let frees_at = usage
                .oldest
                .map_or(0, |oldest| oldest + day - now)
                .max(1_000_000);
            return Err(Error::ResourceExhausted {
                message: format!(
                    "{} addresses scanned in the last 24 hours and {hosts} asked: over the tenant's {} a day (scan.quota.max_hosts_per_day)",
                    usage.hosts, quota.max_hosts_per_day
                ),
                retry_after: Some(std::time::Duration::from_micros(frees_at.unsigned_abs())),
            });
        }
        Ok(())
    }
}

mod assets;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct ScanOrchestratorService {
    core: Ready<Core>,
}

impl ScanOrchestratorService {
    /// A service that serves `core` once it is set.
    pub fn new(core: Ready<Core>) -> Self {
        Self { core }
    }
}

/// The scan id in request field `field`.
fn scan_id(field: &str, id: &str) -> Result<ScanId, Error> {
    ScanId::parse(id)
        .ok_or_else(|| Error::invalid(field, format!("{} is not a scan id (a UUID)", echo(id))))
}

fn page_size(field: &str, requested: i32, (default, max): (i32, i32)) -> Result<u32, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid(field, "must not be negative")),
        0 => Ok(default.unsigned_abs()),
        n => Ok(n.min(max).unsigned_abs()),
    }
}

/// A page token: the last id (a scan's or a finding's, UUIDs) of the previous page.
fn page_token(token: &str) -> Result<Option<&str>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::parse_str(token)
        .map(|_| Some(token))
        .map_err(|_| Error::invalid("page_token", "is not a token returned by a previous page"))
}

async fn get_scan(core: &Core, tenant: &Tenant, id: &ScanId) -> Result<ScanRecord, Error> {
    core.runner
        .store()
        .get_scan(tenant, id)
        .await?
        .ok_or_else(|| Error::not_found("scan", id.as_str()))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::ScanEvent, Status>> + Send>>;

fn event(scan: ScanRecord, message: String) -> pb::ScanEvent {
    pb::ScanEvent {
        scan: Some(scan.into()),
        message,
        time: Some(timestamp_now()),
    }
}

#[tonic::async_trait]
impl ScanOrchestrator for ScanOrchestratorService {
    async fn create_scan(
        &self,
        request: Request<pb::CreateScanRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            let r = request.get_ref();
            format!(
                "targets {} ports {}",
                echo(&r.targets.join(",")),
                echo(&r.ports)
            )
        });
        let request_id = request
            .extensions()
            .get::<phantom_layers::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let req = request.into_inner();
        let core = self.core.get()?;

        let key = req.idempotency_key.trim();
        if key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} printable characters"),
            )
            .into());
        }
        let mut scan = core
            .prepare_scan(tenant, &req.targets, &req.ports, &req.scanner, request_id)
            .await?;
        scan.idempotency_key = (!key.is_empty()).then(|| key.to_owned());
        match core
            .runner
            .store()
            .insert_scan(&scan)
            .await
            .map_err(Error::from)?
        {
            InsertScan::Existing(existing) => {
                tracing::info!(scan_id = %existing.id, "Idempotent retry: returning the existing scan");
                Ok(Response::new((*existing).into()))
            }
            InsertScan::Inserted => {
                tracing::info!(
                    target: telemetry::AUDIT,
                    event = "scan.created",
                    scan_id = %scan.id,
                    tenant = %scan.tenant,
                    targets = ?scan.targets,
                    addresses = scan.resolved.len(),
                    ports = %scan.ports,
                    engine = %scan.scanner,
                    "Scan created"
                );
                core.runner.wake();
                Ok(Response::new(scan.into()))
            }
        }
    }

    async fn get_scan(
        &self,
        request: Request<pb::GetScanRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        let id = scan_id("id", &request.get_ref().id)?;
        Ok(Response::new(get_scan(core, &tenant, &id).await?.into()))
    }

    async fn list_scans(
        &self,
        request: Request<pb::ListScansRequest>,
    ) -> Result<Response<pb::ListScansResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page_size("page_size", req.page_size, SCANS_PAGE)?;
        let before = page_token(&req.page_token)?.and_then(ScanId::parse);
        let state = match pb::ScanState::try_from(req.state) {
            Ok(pb::ScanState::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => {
                return Err(Error::invalid("state", format!("unknown state {}", req.state)).into());
            }
        };
        let core = self.core.get()?;
        let scans = core
            .runner
            .store()
            .list_scans(&tenant, state, before.as_ref(), limit)
            .await
            .map_err(Error::from)?;
        let next_page_token = if scans.len() == limit as usize {
            scans.last().map(|s| s.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListScansResponse {
            scans: scans.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn cancel_scan(
        &self,
        request: Request<pb::CancelScanRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || format!("scan {}", echo(&request.get_ref().id)));
        let core = self.core.get()?;
        let id = &scan_id("id", &request.get_ref().id)?;
        let scan = get_scan(core, &tenant, id).await?;
        if scan.is_final() {
            return Ok(Response::new(scan.into()));
        }
        let store = core.runner.store();
        let scan = match store
            .finish_scan(
                &tenant,
                id,
                pb::ScanState::Cancelled,
                "cancelled by request",
                now_micros(),
                None,
            )
            .await
            .map_err(Error::from)?
        {
            Some(cancelled) => {
                core.runner.cancel(id);
                tracing::info!(
                    target: telemetry::AUDIT,
                    event = "scan.cancelled",
                    scan_id = %id,
                    tenant = %tenant,
                    "Scan cancelled"
                );
                cancelled
            }
            // It finished between the read and the update: report how it ended.
            None => get_scan(core, &tenant, id).await?,
        };
        Ok(Response::new(scan.into()))
    }

    type WatchScanStream = WatchStream;

    async fn watch_scan(
        &self,
        request: Request<pb::WatchScanRequest>,
    ) -> Result<Response<Self::WatchScanStream>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        let id = scan_id("id", &request.get_ref().id)?;
        // Subscribe before reading, so no change falls between the read and the stream.
        let mut updates = core.runner.updates();
        let scan = get_scan(core, &tenant, &id).await?;
        let store = core.runner.store().clone();
        let shutdown = core.runner.shutdown().clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut last = scan.clone();
            if tx
                .send(Ok(event(scan, "current state".into())))
                .await
                .is_err()
                || last.is_final()
            {
                return;
            }
            let mut poll = tokio::time::interval(WATCH_POLL);
            poll.tick().await;
            loop {
                let (next, message) = tokio::select! {
                    () = tx.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("server shutting down; watch again"))).await;
                        return;
                    }
                    update = updates.recv() => match update {
                        Ok(u) if u.scan.id == id && u.scan.tenant == tenant => (u.scan, u.message),
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => match store.get_scan(&tenant, &id).await {
                            Ok(Some(s)) => (s, "progress".to_owned()),
                            _ => continue,
                        },
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = poll.tick() => match store.get_scan(&tenant, &id).await {
                        Ok(Some(s)) if s != last => (s, "progress".to_owned()),
                        _ => continue,
                    },
                };
                let is_final = next.is_final();
                last = next.clone();
                if tx.send(Ok(event(next, message))).await.is_err() || is_final {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_findings(
        &self,
        request: Request<pb::ListFindingsRequest>,
    ) -> Result<Response<pb::ListFindingsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let req = request.into_inner();
        let id = scan_id("scan_id", &req.scan_id)?;
        let limit = page_size("page_size", req.page_size, FINDINGS_PAGE)?;
        let after = page_token(&req.page_token)?;
        let changes = assets::changes("changes", &req.changes)?;
        let core = self.core.get()?;
        let store = core.runner.store();
        if store
            .get_scan(&tenant, &id)
            .await
            .map_err(Error::from)?
            .is_none()
        {
            return Err(Error::not_found("scan", req.scan_id).into());
        }
        let findings = store
            .list_findings(&tenant, &id, changes, after, limit)
            .await
            .map_err(Error::from)?;
        let next_page_token = if findings.len() == limit as usize {
            findings.last().map(|f| f.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListFindingsResponse {
            findings: findings.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn create_asset(
        &self,
        request: Request<pb::CreateAssetRequest>,
    ) -> Result<Response<pb::Asset>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            let r = request.get_ref();
            format!(
                "asset {} targets {}",
                echo(&r.name),
                echo(&r.targets.join(","))
            )
        });
        let core = self.core.get()?;
        Ok(Response::new(
            assets::create(core, tenant, request.into_inner()).await?,
        ))
    }

    async fn get_asset(
        &self,
        request: Request<pb::GetAssetRequest>,
    ) -> Result<Response<pb::Asset>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        let found = assets::asset(core, &tenant, &request.get_ref().asset).await?;
        Ok(Response::new(found.into()))
    }

    async fn list_assets(
        &self,
        request: Request<pb::ListAssetsRequest>,
    ) -> Result<Response<pb::ListAssetsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        Ok(Response::new(
            assets::list(core, &tenant, request.get_ref()).await?,
        ))
    }

    async fn set_asset_paused(
        &self,
        request: Request<pb::SetAssetPausedRequest>,
    ) -> Result<Response<pb::Asset>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            format!("asset {}", echo(&request.get_ref().asset))
        });
        let core = self.core.get()?;
        Ok(Response::new(
            assets::set_paused(core, &tenant, request.get_ref()).await?,
        ))
    }

    async fn delete_asset(
        &self,
        request: Request<pb::DeleteAssetRequest>,
    ) -> Result<Response<pb::DeleteAssetResponse>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            format!("asset {}", echo(&request.get_ref().asset))
        });
        let core = self.core.get()?;
        assets::delete(core, &tenant, &request.get_ref().asset).await?;
        Ok(Response::new(pb::DeleteAssetResponse {}))
    }

    async fn list_asset_findings(
        &self,
        request: Request<pb::ListAssetFindingsRequest>,
    ) -> Result<Response<pb::ListAssetFindingsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        Ok(Response::new(
            assets::list_findings(core, &tenant, request.get_ref()).await?,
        ))
    }

    async fn create_alert_rule(
        &self,
        request: Request<pb::CreateAlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            format!(
                "alert rule {}",
                echo(
                    request
                        .get_ref()
                        .rule
                        .as_ref()
                        .map_or("", |r| r.name.as_str())
                )
            )
        });
        let core = self.core.get()?;
        Ok(Response::new(
            assets::create_rule(core, tenant, request.into_inner()).await?,
        ))
    }

    async fn list_alert_rules(
        &self,
        request: Request<pb::ListAlertRulesRequest>,
    ) -> Result<Response<pb::ListAlertRulesResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let core = self.core.get()?;
        let rules = core.alerts.rules(&tenant).await.map_err(Error::from)?;
        Ok(Response::new(pb::ListAlertRulesResponse {
            rules: rules.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_alert_rule(
        &self,
        request: Request<pb::DeleteAlertRuleRequest>,
    ) -> Result<Response<pb::DeleteAlertRuleResponse>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            format!("alert rule {}", echo(&request.get_ref().rule))
        });
        let core = self.core.get()?;
        assets::delete_rule(core, &tenant, &request.get_ref().rule).await?;
        Ok(Response::new(pb::DeleteAlertRuleResponse {}))
    }

    async fn set_triage(
        &self,
        request: Request<pb::SetTriageRequest>,
    ) -> Result<Response<pb::AssetFinding>, Status> {
        let tenant = tenant_of(&request)?;
        audit::target(&request, || {
            let r = request.get_ref();
            format!("asset {} finding {}", echo(&r.asset), echo(&r.fingerprint))
        });
        let principal = request
            .extensions()
            .get::<phantom_layers::auth::Principal>()
            .map_or_else(
                || "anonymous".to_owned(),
                phantom_layers::auth::Principal::id,
            );
        let core = self.core.get()?;
        Ok(Response::new(
            assets::set_triage(core, &tenant, principal, request.get_ref()).await?,
        ))
    }
}
