//! Assets, their schedules, and their findings across scans: the records and
//! [`AssetRepository`].
//!
//! A finished scan of an asset is compared with the asset's previous one inside the
//! transaction that finishes it ([`super::ScanRepository::finish_scan`]): the scan's diff
//! (`scan_changes`) and the asset's findings (`asset_findings`) can never disagree with the
//! scan's state, whichever replica finished it and whenever it crashed.

use async_trait::async_trait;
use phantom_domain::{ScanId, Tenant};
use phantom_kit::time::timestamp;
use phantom_proto::pb;
use phantom_storage::StoreError;

use super::{FindingRecord, ScanRecord};
use crate::schedule::Schedule;

/// A stored asset.
#[derive(Debug, Clone)]
pub struct AssetRecord {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant: Tenant,
    /// Unique per tenant.
    pub name: String,
    /// Targets as given (resolved and checked at every run).
    pub targets: Vec<String>,
    /// Normalized port specification.
    pub ports: String,
    /// Engine name.
    pub scanner: String,
    /// When it is scanned.
    pub schedule: Schedule,
    /// No run starts while paused.
    pub paused: bool,
    /// The next due time, as the schedule gives it (µs).
    pub next_due: i64,
    /// When that due time's run starts: `next_due` plus the jitter (µs).
    pub next_run: i64,
    /// The latest scan a schedule started.
    pub last_scan_id: Option<ScanId>,
    /// Due times that got a scan (one refused at its start included, stored FAILED).
    pub runs: u64,
    /// Due times skipped (missed, with the skip policy).
    pub skipped: u64,
    /// Created at (µs); intervals count from it.
    pub created_at: i64,
    /// Last changed at (µs).
    pub updated_at: i64,
}

impl From<AssetRecord> for pb::Asset {
    fn from(a: AssetRecord) -> Self {
        pb::Asset {
            id: a.id,
            name: a.name,
            targets: a.targets,
            ports: a.ports,
            scanner: a.scanner,
            schedule: Some(a.schedule.to_wire()),
            paused: a.paused,
            next_run_at: (!a.paused).then(|| timestamp(a.next_run)),
            last_scan_id: a.last_scan_id.map(String::from).unwrap_or_default(),
            runs: a.runs,
            skipped: a.skipped,
            created_at: Some(timestamp(a.created_at)),
        }
    }
}

/// A finding's triage.
#[derive(Debug, Clone, PartialEq)]
pub struct Triage {
    /// The state.
    pub state: pb::TriageState,
    /// Why.
    pub reason: String,
    /// Who: a principal's id, or `phantom` when it changed by itself.
    pub principal: String,
    /// When (µs; 0 when never triaged).
    pub at: i64,
    /// When an accepted risk expires (µs; 0 otherwise).
    pub accepted_until: i64,
}

impl From<Triage> for pb::Triage {
    fn from(t: Triage) -> Self {
        pb::Triage {
            state: t.state.into(),
            reason: t.reason,
            principal: t.principal,
            at: (t.at > 0).then(|| timestamp(t.at)),
            accepted_until: (t.accepted_until > 0).then(|| timestamp(t.accepted_until)),
        }
    }
}

/// One of an asset's findings across its scans.
#[derive(Debug, Clone)]
pub struct AssetFindingRecord {
    /// The asset.
    pub asset_id: String,
    /// The finding as the latest scan that saw it saw it.
    pub finding: FindingRecord,
    /// Whether the asset's latest scan saw it.
    pub present: bool,
    /// What the latest scan that changed it did.
    pub change: pb::FindingChange,
    /// First seen (µs).
    pub first_seen: i64,
    /// Last seen (µs).
    pub last_seen: i64,
    /// Scans that saw it.
    pub times_seen: u64,
    /// The first scan that saw it.
    pub first_scan_id: String,
    /// The latest scan that saw it.
    pub last_scan_id: String,
    /// Times it came back after a fix.
    pub reopened: u64,
    /// What a person said of it.
    pub triage: Triage,
}

impl From<AssetFindingRecord> for pb::AssetFinding {
    fn from(r: AssetFindingRecord) -> Self {
        let fingerprint = r.finding.fingerprint.to_string();
        pb::AssetFinding {
            asset_id: r.asset_id,
            fingerprint,
            finding: Some(r.finding.into()),
            present: r.present,
            change: r.change.into(),
            first_seen: Some(timestamp(r.first_seen)),
            last_seen: Some(timestamp(r.last_seen)),
            times_seen: r.times_seen,
            first_scan_id: r.first_scan_id,
            last_scan_id: r.last_scan_id,
            reopened: r.reopened,
            triage: Some(r.triage.into()),
        }
    }
}

/// A set of [`pb::FindingChange`] values (or [`pb::TriageState`] values), as a bit mask: bit
/// `n` is the value `n`. Empty means "no filter".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Values(pub i64);

impl Values {
    /// The set of `values` (each 0-62).
    pub fn of(values: impl IntoIterator<Item = i32>) -> Self {
        Self(
            values
                .into_iter()
                .filter(|v| (0..63).contains(v))
                .fold(0, |mask, v| mask | (1 << v)),
        )
    }

    /// Whether `value` is in the set.
    pub fn contains(self, value: i32) -> bool {
        (0..63).contains(&value) && self.0 & (1 << value) != 0
    }
}

/// What [`AssetRepository::fire`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The scan was stored for the due time, and the asset moved on.
    Started,
    /// The due time was skipped, and the asset moved on.
    Skipped,
    /// Another replica fired this due time first (or the asset changed): nothing was done.
    Lost,
}

/// What the scan-orchestrator stores about assets.
#[async_trait]
pub trait AssetRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new asset. False when the tenant has one of that name already.
    async fn insert_asset(&self, asset: &AssetRecord) -> Result<bool, StoreError>;

    /// How many assets `tenant` has.
    async fn count_assets(&self, tenant: &Tenant) -> Result<u64, StoreError>;

    /// One asset of `tenant`, by id or name.
    async fn get_asset(
        &self,
        tenant: &Tenant,
        key: &str,
    ) -> Result<Option<AssetRecord>, StoreError>;

    /// Assets of `tenant` by name, with names after `after` when given.
    async fn list_assets(
        &self,
        tenant: &Tenant,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssetRecord>, StoreError>;

    /// Pauses or resumes an asset; a resumed one is next due at `next_due`, run at
    /// `next_run`. `None` when it does not exist.
    async fn set_paused(
        &self,
        tenant: &Tenant,
        id: &str,
        paused: bool,
        next_due: i64,
        next_run: i64,
        now: i64,
    ) -> Result<Option<AssetRecord>, StoreError>;

    /// Deletes an asset with its findings' history and triage (its scans are kept). False
    /// when it did not exist.
    async fn delete_asset(&self, tenant: &Tenant, id: &str) -> Result<bool, StoreError>;

    /// Assets of every tenant, not paused, whose run time is at or before `now`, the most
    /// overdue first.
    async fn due_assets(&self, now: i64, limit: u32) -> Result<Vec<AssetRecord>, StoreError>;

    /// Whether a scan of the asset is PENDING or RUNNING.
    async fn asset_busy(&self, asset_id: &str) -> Result<bool, StoreError>;

    /// Fires `asset`'s due time `asset.next_due` if it is still the asset's (compare and
    /// set: of replicas firing the same due time, one wins), in one transaction: stores
    /// `scan` (for that due time; `None` skips it), and moves the asset on to `next_due`,
    /// run at `next_run`.
    async fn fire(
        &self,
        asset: &AssetRecord,
        scan: Option<&ScanRecord>,
        next_due: i64,
        next_run: i64,
        now: i64,
    ) -> Result<Fired, StoreError>;

    /// An asset's findings by fingerprint, after `after` when given, whose latest change is
    /// in `changes` and triage in `triage` (empty sets: any).
    async fn list_asset_findings(
        &self,
        tenant: &Tenant,
        asset_id: &str,
        changes: Values,
        triage: Values,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssetFindingRecord>, StoreError>;

    /// Sets the triage of one of an asset's findings and records who did it (event
    /// `event_id`). `None` when the asset has no finding of that fingerprint.
    async fn set_triage(
        &self,
        tenant: &Tenant,
        asset_id: &str,
        fingerprint: &str,
        triage: &Triage,
        event_id: &str,
    ) -> Result<Option<AssetFindingRecord>, StoreError>;

    /// Reopens every accepted risk (any tenant) that expired at or before `now`; returns how
    /// many.
    async fn expire_accepted_risks(&self, now: i64) -> Result<u64, StoreError>;
}
