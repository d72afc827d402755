//! The scan-orchestrator's repository: scans, their leases, and their findings.
//!
//! [`ScanRepository`] is what the orchestrator stores; [`SqlScanRepository`] speaks it to the
//! shared database (SQLite or PostgreSQL, see [`phantom_storage::Database`]). The tables
//! (`scans`, `findings`) and their migrations (`services/scan-orchestrator/migrations`) are
//! the orchestrator's alone. One query reads another service's table:
//! [`ScanRepository::list_findings`] joins the vuln-analyzer's `analyses`, to show an enriched
//! verdict in place of a degraded one (the binary has every service apply every service's
//! migrations, so that table exists whichever service starts first).
//!
//! Every method takes the tenant (or works across tenants by design, said so) and every query
//! filters on it: a record of another tenant is indistinguishable from a missing one.

/// The bit of a stored enum value in an [`assets::Values`] mask, in SQL (`CASE <column> WHEN 1 THEN 2
/// ...`): the dialects share `&` on integers but not `<<` on a column.
macro_rules! bit_of {
    ($column:literal) => {
        concat!(
            "(CASE ",
            $column,
            " WHEN 1 THEN 2 WHEN 2 THEN 4 WHEN 3 THEN 8 WHEN 4 THEN 16 WHEN 5 THEN 32 ELSE 1 END)"
        )
    };
}

pub mod alerts;
pub mod assets;
mod sql;
mod sql_alerts;
mod sql_assets;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use async_trait::async_trait;
use phantom_domain::{Analysis, Fingerprint, ScanId, Severity, Tenant};
use phantom_kit::time::timestamp;
use phantom_proto::pb::{self, ScanState};
use phantom_storage::StoreError;
use serde::{Deserialize, Serialize};

pub use sql::SqlScanRepository;

phantom_storage::migrator! {
    /// The orchestrator's migrations (`phantom migrate` applies every service's). Numbered
    /// 202611290100-202611290199 (see [`phantom_storage::Database::migrate`]).
    pub fn migrator
}

/// A target after resolution: what the scanner is handed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTarget {
    /// The hostname the user gave, if the target was a name.
    pub hostname: Option<String>,
    /// The address to scan.
    pub address: std::net::IpAddr,
}

/// A stored scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    /// UUIDv7.
    pub id: ScanId,
    /// Owner.
    pub tenant: Tenant,
    /// Life-cycle state.
    pub state: pb::ScanState,
    /// Targets as given.
    pub targets: Vec<String>,
    /// Targets as resolved and checked against the scope, in scan order.
    pub resolved: Vec<ResolvedTarget>,
    /// Normalized port specification.
    pub ports: String,
    /// Engine name.
    pub scanner: String,
    /// 0-100.
    pub progress_percent: u32,
    /// Findings stored so far.
    pub findings_count: u64,
    /// Probes the scan consists of.
    pub probes_total: u64,
    /// Probes done.
    pub probes_done: u64,
    /// Client-chosen idempotency key.
    pub idempotency_key: Option<String>,
    /// Why it failed.
    pub error: String,
    /// Correlation id of the CreateScan call, carried by the scan's own outgoing calls.
    pub request_id: String,
    /// W3C `traceparent` of the CreateScan call's span (empty when it had none): the scan's
    /// span is its child, so the scan's work is part of that call's trace.
    pub trace_context: String,
    /// Accepted at.
    pub created_at: i64,
    /// Started at.
    pub started_at: Option<i64>,
    /// Finished at.
    pub finished_at: Option<i64>,
    /// The replica running it (empty when none claimed it).
    pub owner: String,
    /// Until when the owner's claim holds (µs); past it, any replica may claim the scan.
    pub lease_until: i64,
    /// How many times a replica claimed it (1 for a scan that ran without interruption).
    pub claims: u64,
    /// Which chunks of its probes are done (see [`crate::scanner::Plan`]); empty when none.
    pub checkpoint: String,
    /// The asset whose schedule started it, if one did.
    pub asset_id: Option<String>,
    /// The schedule's due time it ran for (µs), with `asset_id`.
    pub due_at: Option<i64>,
}

impl ScanRecord {
    /// Whether the scan reached a state it never leaves.
    pub fn is_final(&self) -> bool {
        !matches!(self.state, pb::ScanState::Pending | pb::ScanState::Running)
    }
}

impl From<ScanRecord> for pb::Scan {
    fn from(r: ScanRecord) -> Self {
        pb::Scan {
            id: r.id.into(),
            state: r.state as i32,
            targets: r.targets,
            ports: r.ports,
            scanner: r.scanner,
            progress_percent: r.progress_percent,
            findings_count: r.findings_count,
            created_at: Some(timestamp(r.created_at)),
            finished_at: r.finished_at.map(timestamp),
            error: r.error,
            idempotency_key: r.idempotency_key.unwrap_or_default(),
            started_at: r.started_at.map(timestamp),
            probes_total: r.probes_total,
            probes_done: r.probes_done,
            asset_id: r.asset_id.unwrap_or_default(),
            due_at: r.due_at.map(timestamp),
        }
    }
}

/// Progress of a running scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProgress {
    /// Probes done.
    pub probes_done: u64,
    /// 0-100.
    pub progress_percent: u32,
    /// Which chunks are done (see [`crate::scanner::Plan::checkpoint`]).
    pub checkpoint: String,
}

/// What [`ScanRepository::save_progress`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Findings that were new (not stored before for the scan).
    pub new_findings: u64,
    /// Whether the scan is still running and held by the saver: false when it was cancelled
    /// or taken over meanwhile (its findings were stored, its progress was not), and the
    /// saver must stop.
    pub held: bool,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRecord {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant: Tenant,
    /// The scan that found it.
    pub scan_id: ScanId,
    /// Address scanned.
    pub target: String,
    /// Hostname given by the user, if any.
    pub hostname: String,
    /// Port, 0 for host-level findings.
    pub port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// Service guess.
    pub service: String,
    /// What the service said first.
    pub banner: String,
    /// Engine name.
    pub engine: String,
    /// Engine's check id.
    pub check_id: String,
    /// One line for humans.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// CVSS base score.
    pub cvss_score: f64,
    /// CVSS vector.
    pub cvss_vector: String,
    /// CVE ids.
    pub cve_ids: Vec<String>,
    /// Dedup identity.
    pub fingerprint: Fingerprint,
    /// The analysis, once made.
    pub analysis: Option<Analysis>,
    /// Stored at.
    pub created_at: i64,
    /// How it compares with its asset's previous scan (read back only; unspecified when
    /// stored, and for a scan of no asset).
    pub change: pb::FindingChange,
}

impl FindingRecord {
    /// Its severity as it stands: the analysis', once analyzed, the engine's before.
    pub fn verdict_severity(&self) -> Severity {
        self.analysis.as_ref().map_or(self.severity, |a| a.severity)
    }
}

impl From<FindingRecord> for pb::Finding {
    fn from(r: FindingRecord) -> Self {
        pb::Finding {
            id: r.id,
            scan_id: r.scan_id.into(),
            target: r.target,
            hostname: r.hostname,
            port: u32::from(r.port),
            protocol: r.protocol,
            service: r.service,
            banner: r.banner,
            engine: r.engine,
            check_id: r.check_id,
            title: r.title,
            severity: r.severity.as_i32(),
            cvss_score: r.cvss_score,
            cvss_vector: r.cvss_vector,
            cve_ids: r.cve_ids,
            fingerprint: r.fingerprint.into(),
            created_at: Some(timestamp(r.created_at)),
            analysis: r.analysis.map(Into::into),
            change: r.change.into(),
        }
    }
}

/// What [`ScanRepository::insert_scan`] did.
#[derive(Debug)]
pub enum InsertScan {
    /// The scan was stored.
    Inserted,
    /// A scan with the same idempotency key exists for the tenant; here it is.
    Existing(Box<ScanRecord>),
}

/// A tenant's use of its scan quotas ([`ScanRepository::tenant_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Scans PENDING or RUNNING.
    pub active_scans: u64,
    /// Addresses of the scans created in the window.
    pub hosts: u64,
    /// When the oldest scan of the window was created (microseconds), if there is one: the
    /// window frees its hosts then.
    pub oldest: Option<i64>,
}

/// What the scan-orchestrator stores: scans, their leases, and their findings.
#[async_trait]
pub trait ScanRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Scans per state, all tenants (for metrics).
    async fn scan_counts(&self) -> Result<Vec<(ScanState, u64)>, StoreError>;

    /// What `tenant` uses of its quotas: scans not finished, and addresses of the scans it
    /// created at or after `since` (microseconds).
    async fn tenant_usage(&self, tenant: &Tenant, since: i64) -> Result<TenantUsage, StoreError>;

    /// Stores a new scan, unless its idempotency key was used before by the same tenant.
    async fn insert_scan(&self, scan: &ScanRecord) -> Result<InsertScan, StoreError>;

    /// One scan of `tenant`.
    async fn get_scan(
        &self,
        tenant: &Tenant,
        id: &ScanId,
    ) -> Result<Option<ScanRecord>, StoreError>;

    /// Scans of `tenant`, newest first, with ids below `before_id` when given.
    async fn list_scans(
        &self,
        tenant: &Tenant,
        state: Option<ScanState>,
        before_id: Option<&ScanId>,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError>;

    /// Every PENDING or RUNNING scan of every tenant, oldest first.
    async fn unfinished_scans(&self) -> Result<Vec<ScanRecord>, StoreError>;

    /// Claims up to `limit` PENDING or RUNNING scans whose lease has run out (never claimed,
    /// finished holder, or a holder that died) for `owner` until `lease_until`, oldest first.
    /// Replicas claiming at once never get the same scan.
    async fn claim_scans(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError>;

    /// Extends `owner`'s lease on an unfinished scan. False when the scan is no longer
    /// `owner`'s (taken over after a lapse) or is finished: the holder must stop.
    async fn renew_lease(
        &self,
        id: &ScanId,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError>;

    /// Marks a PENDING (or, on resume, RUNNING) scan held by `owner` RUNNING. Returns false
    /// when the scan is final (cancelled meanwhile) or held by another replica.
    async fn mark_scan_running(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        probes_total: u64,
        now: i64,
        owner: &str,
    ) -> Result<bool, StoreError>;

    /// Stores what a RUNNING scan held by `owner` did since its last save, in one
    /// transaction: `findings` (skipping any whose `(scan_id, fingerprint)` is already
    /// stored: a resumed scan re-finds what it found before), the count of new ones, and
    /// `progress` with its checkpoint. A checkpoint is never stored without the findings of
    /// the chunks it says are done.
    async fn save_progress(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        owner: &str,
        findings: &[FindingRecord],
        progress: &ScanProgress,
    ) -> Result<Saved, StoreError>;

    /// Moves a non-final scan to a final state: any scan when `owner` is `None` (a cancel),
    /// only a scan `owner` holds otherwise. Returns the scan as stored afterwards, or `None`
    /// when it did not exist, was already final (the first final state wins), or was held by
    /// another replica.
    async fn finish_scan(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        state: ScanState,
        error: &str,
        now: i64,
        owner: Option<&str>,
    ) -> Result<Option<ScanRecord>, StoreError>;

    /// Attaches an analysis to a stored finding.
    async fn set_finding_analysis(
        &self,
        tenant: &Tenant,
        finding_id: &str,
        analysis: &Analysis,
    ) -> Result<(), StoreError>;

    /// Findings of one scan, in the order they were stored, with ids above `after_id`, each
    /// with how it compares with its asset's previous scan; only those whose change is in
    /// `changes` when it is not empty. A FIXED finding (asked for in `changes`) is one the
    /// scan did not see, as the asset's earlier scan saw it.
    async fn list_findings(
        &self,
        tenant: &Tenant,
        scan_id: &ScanId,
        changes: assets::Values,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FindingRecord>, StoreError>;

    /// Findings of finished scans (any tenant) that were never analyzed (the analyzer was
    /// down when their scan ended), oldest first.
    async fn unanalyzed_findings(&self, limit: u32) -> Result<Vec<FindingRecord>, StoreError>;
}
