//! Durable storage of scans, findings, analyses and notifications.
//!
//! One trait, [`Store`], and one implementation, [`SqlStore`], that speaks both SQLite (the
//! embedded default: a file under `PHANTOM_DATA_DIR`) and PostgreSQL (`DATABASE_URL`) through
//! sqlx's `Any` driver, with one set of migrations written in the two databases' common
//! dialect. The shared [`conformance`] suite runs against both so they cannot drift apart.
//!
//! Every method takes the tenant and every query filters on it: a record of another tenant is
//! indistinguishable from a missing one.

mod records;
mod sql;

pub mod conformance;

pub use records::{
    AnalysisRecord, EnrichmentJob, FindingRecord, NotificationRecord, ResolvedTarget, ScanProgress,
    ScanRecord,
};
pub use sql::SqlStore;

/// A connection pool's state, for health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Connections open.
    pub size: u32,
    /// Of which idle.
    pub idle: u32,
    /// In use (`size - idle`).
    pub in_use: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

use async_trait::async_trait;
use phantom_proto::pb::ScanState;

/// Why a storage operation failed. Callers treat every variant as internal; the distinction
/// serves logs and health checks.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (corrupt row, or written by a newer version).
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded database's file could not be created or made private.
    #[error("cannot create or protect database file {path}: {source}")]
    DataFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<StoreError> for phantom_layers::Error {
    fn from(err: StoreError) -> Self {
        let category = match &err {
            StoreError::DataDir { .. } | StoreError::DataFile { .. } => {
                phantom_layers::Category::FileSystem
            }
            _ => phantom_layers::Category::Database,
        };
        phantom_layers::Error::internal_in(category, err)
    }
}

/// What [`Store::insert_scan`] did.
#[derive(Debug)]
pub enum InsertScan {
    /// The scan was stored.
    Inserted,
    /// A scan with the same idempotency key exists for the tenant; here it is.
    Existing(Box<ScanRecord>),
}

/// The storage every service uses.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is ("sqlite" or "postgres"), for health reports.
    fn backend(&self) -> &'static str;

    /// Runs a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Scans per state, all tenants (for metrics).
    async fn scan_counts(&self) -> Result<Vec<(phantom_proto::pb::ScanState, u64)>, StoreError>;

    /// The connection pool's state, where there is one.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Stores a new scan, unless its idempotency key was used before by the same tenant.
    async fn insert_scan(&self, scan: &ScanRecord) -> Result<InsertScan, StoreError>;

    /// One scan of `tenant`.
    async fn get_scan(&self, tenant: &str, id: &str) -> Result<Option<ScanRecord>, StoreError>;

    /// Scans of `tenant`, newest first, with ids below `before_id` when given.
    async fn list_scans(
        &self,
        tenant: &str,
        state: Option<ScanState>,
        before_id: Option<&str>,
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
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError>;

    /// Marks a PENDING (or, on resume, RUNNING) scan held by `owner` RUNNING. Returns false
    /// when the scan is final (cancelled meanwhile) or held by another replica.
    async fn mark_scan_running(
        &self,
        tenant: &str,
        id: &str,
        probes_total: u64,
        now: i64,
        owner: &str,
    ) -> Result<bool, StoreError>;

    /// Records progress of a RUNNING scan held by `owner`. Returns false when the scan is no
    /// longer running, or no longer `owner`'s.
    async fn record_scan_progress(
        &self,
        tenant: &str,
        id: &str,
        progress: ScanProgress,
        owner: &str,
    ) -> Result<bool, StoreError>;

    /// Moves a non-final scan to a final state: any scan when `owner` is `None` (a cancel),
    /// only a scan `owner` holds otherwise. Returns the scan as stored afterwards, or `None`
    /// when it did not exist, was already final (the first final state wins), or was held by
    /// another replica.
    async fn finish_scan(
        &self,
        tenant: &str,
        id: &str,
        state: ScanState,
        error: &str,
        now: i64,
        owner: Option<&str>,
    ) -> Result<Option<ScanRecord>, StoreError>;

    /// Stores findings, skipping any whose `(scan_id, fingerprint)` is already stored (a
    /// resumed scan re-finds what it found before). Returns how many were new.
    async fn insert_findings(&self, findings: &[FindingRecord]) -> Result<u64, StoreError>;

    /// Attaches an analysis to a stored finding.
    async fn set_finding_analysis(
        &self,
        tenant: &str,
        finding_id: &str,
        analysis: &AnalysisRecord,
    ) -> Result<(), StoreError>;

    /// Findings of one scan, in the order they were stored, with ids above `after_id`.
    async fn list_findings(
        &self,
        tenant: &str,
        scan_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FindingRecord>, StoreError>;

    /// Findings of finished scans (any tenant) that were never analyzed (the analyzer was
    /// down when their scan ended), oldest first.
    async fn unanalyzed_findings(&self, limit: u32) -> Result<Vec<FindingRecord>, StoreError>;

    /// The stored analysis of a fingerprint.
    async fn get_analysis(
        &self,
        tenant: &str,
        fingerprint: &str,
    ) -> Result<Option<AnalysisRecord>, StoreError>;

    /// Stores an analysis unless one exists for the fingerprint; returns the stored one.
    async fn put_analysis(&self, analysis: &AnalysisRecord) -> Result<AnalysisRecord, StoreError>;

    /// Replaces a *degraded* stored analysis (rules answering for an unavailable LLM) with a
    /// better one. Returns false when the stored one is not degraded (it is kept).
    async fn upgrade_analysis(&self, analysis: &AnalysisRecord) -> Result<bool, StoreError>;

    /// Queues a finding for LLM enrichment (due at once). False when it is already queued.
    async fn enqueue_enrichment(
        &self,
        tenant: &str,
        fingerprint: &str,
        payload: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` due jobs (oldest due first) until `lease_until`: another replica
    /// cannot claim them before then, and they come back if this one dies.
    async fn claim_enrichments(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<EnrichmentJob>, StoreError>;

    /// Removes a job (enriched, or no longer needed).
    async fn finish_enrichment(&self, tenant: &str, fingerprint: &str) -> Result<(), StoreError>;

    /// Puts a job back, due at `next_attempt_at`; `failed` counts the attempt and records
    /// `error` (false: it was not tried, e.g. the LLM's breaker was open).
    async fn retry_enrichment(
        &self,
        tenant: &str,
        fingerprint: &str,
        next_attempt_at: i64,
        failed: bool,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Jobs queued (due or not).
    async fn enrichment_backlog(&self) -> Result<u64, StoreError>;

    /// Stores a notification, assigning the next sequence number of its room.
    async fn append_notification(
        &self,
        notification: &NotificationRecord,
    ) -> Result<NotificationRecord, StoreError>;

    /// Deletes notifications created before `older_than`, and all but the last
    /// `keep_per_room` of each room. Returns how many were deleted. Sequences are not reused:
    /// a room's counter stays where it is.
    async fn prune_notifications(
        &self,
        older_than: i64,
        keep_per_room: u64,
    ) -> Result<u64, StoreError>;

    /// The last sequence given in a room (0 before its first notification).
    async fn latest_notification_sequence(
        &self,
        tenant: &str,
        room: &str,
    ) -> Result<u64, StoreError>;

    /// Notifications of one room with a sequence above `after`, in order: at most `limit`,
    /// whose [`NotificationRecord::footprint`]s add up to at most `max_bytes` (the first is
    /// always returned, however large).
    async fn notifications_after(
        &self,
        tenant: &str,
        room: &str,
        after: u64,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
}
