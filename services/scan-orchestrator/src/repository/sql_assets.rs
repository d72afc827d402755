//! [`AssetRepository`] in SQL, and the comparison of a finished scan of an asset with the
//! asset's previous one ([`reconcile`]), one text for SQLite and PostgreSQL.

use async_trait::async_trait;
use phantom_domain::{ScanId, Tenant};
use phantom_proto::pb::{self, FindingChange, ScanState, TriageState};
use phantom_storage::{
    StoreError,
    row::{is_unique_violation, json_of, u64_of},
};
use sqlx::{Row, any::AnyRow};

use super::{
    ScanRecord, SqlScanRepository,
    assets::{AssetFindingRecord, AssetRecord, AssetRepository, Fired, Triage, Values},
    sql::{finding_of, insert_scan_row, tenant_in},
};
use crate::schedule::Schedule;

/// Every asset column, for `SELECT`.
macro_rules! asset_columns {
    () => {
        "id, tenant, name, targets, ports, scanner, cron, time_zone, every_micros, \
         jitter_micros, missed, paused, next_due, next_run, last_scan_id, runs, skipped, \
         created_at, updated_at"
    };
}

/// `SELECT <asset columns> FROM assets <rest>`.
macro_rules! select_assets {
    ($rest:literal) => {
        concat!("SELECT ", asset_columns!(), " FROM assets ", $rest)
    };
}

/// `SELECT <an asset finding's columns and its finding's> FROM asset_findings af JOIN findings
/// f <rest>`.
macro_rules! select_asset_findings {
    ($rest:literal) => {
        concat!(
            "SELECT af.asset_id AS af_asset_id, af.present AS af_present, \
             af.change AS af_change, af.first_seen AS af_first_seen, \
             af.last_seen AS af_last_seen, af.times_seen AS af_times_seen, \
             af.first_scan_id AS af_first_scan_id, af.last_scan_id AS af_last_scan_id, \
             af.reopened AS af_reopened, af.triage AS af_triage, \
             af.triage_reason AS af_triage_reason, af.triage_by AS af_triage_by, \
             af.triage_at AS af_triage_at, af.accepted_until AS af_accepted_until, \
             f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, f.service, \
             f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, f.cvss_vector, \
             f.cve_ids, f.fingerprint, f.analysis, f.created_at \
             FROM asset_findings af JOIN findings f ON f.id = af.finding_id ",
            $rest
        )
    };
}

fn asset_of(row: &AnyRow) -> Result<AssetRecord, StoreError> {
    let schedule = Schedule::from_stored(
        &row.try_get::<String, _>("cron")?,
        &row.try_get::<String, _>("time_zone")?,
        row.try_get("every_micros")?,
        row.try_get("jitter_micros")?,
        &row.try_get::<String, _>("missed")?,
    )
    .map_err(|message| StoreError::Corrupt {
        column: "assets.cron",
        message,
    })?;
    let paused: i64 = row.try_get("paused")?;
    let last: Option<String> = row.try_get("last_scan_id")?;
    Ok(AssetRecord {
        id: row.try_get("id")?,
        tenant: tenant_in(row, "tenant", "assets.tenant")?,
        name: row.try_get("name")?,
        targets: json_of(row, "targets")?,
        ports: row.try_get("ports")?,
        scanner: row.try_get("scanner")?,
        schedule,
        paused: paused != 0,
        next_due: row.try_get("next_due")?,
        next_run: row.try_get("next_run")?,
        last_scan_id: last.map(ScanId::from_stored),
        runs: u64_of(row, "runs")?,
        skipped: u64_of(row, "skipped")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn enum_of<T: TryFrom<i32>>(
    row: &AnyRow,
    col: &str,
    column: &'static str,
) -> Result<T, StoreError> {
    let v: i64 = row.try_get(col)?;
    i32::try_from(v)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or(StoreError::Corrupt {
            column,
            message: format!("unknown value {v}"),
        })
}

fn asset_finding_of(row: &AnyRow) -> Result<AssetFindingRecord, StoreError> {
    let present: i64 = row.try_get("af_present")?;
    Ok(AssetFindingRecord {
        asset_id: row.try_get("af_asset_id")?,
        finding: finding_of(row)?,
        present: present != 0,
        change: enum_of::<FindingChange>(row, "af_change", "asset_findings.change")?,
        first_seen: row.try_get("af_first_seen")?,
        last_seen: row.try_get("af_last_seen")?,
        times_seen: u64_of(row, "af_times_seen")?,
        first_scan_id: row.try_get("af_first_scan_id")?,
        last_scan_id: row.try_get("af_last_scan_id")?,
        reopened: u64_of(row, "af_reopened")?,
        triage: Triage {
            state: enum_of::<TriageState>(row, "af_triage", "asset_findings.triage")?,
            reason: row.try_get("af_triage_reason")?,
            principal: row.try_get("af_triage_by")?,
            at: row.try_get("af_triage_at")?,
            accepted_until: row.try_get("af_accepted_until")?,
        },
    })
}

/// The reason a finding's triage gets when an accepted risk expires.
const EXPIRED: &str = "the accepted risk expired";
/// Who changes a triage by itself.
const SYSTEM: &str = "phantom";

/// Compares the finished scan `scan_id` with its asset's previous scan, in `tx` (the
/// transaction that finishes it): stores the scan's diff (`scan_changes`: every finding of the
/// scan NEW, STILL_OPEN or REOPENED, and every finding the asset had open that the scan did not
/// see FIXED), and brings the asset's findings up to date. A finding triaged FIXED that is
/// seen again reopens; the other triage states stick. A scan of no asset is left alone.
pub(super) async fn reconcile(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scan_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT asset_id FROM scans WHERE id = $1")
        .bind(scan_id.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(asset) = row
        .map(|r| r.try_get::<Option<String>, _>("asset_id"))
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    // Locks the asset (PostgreSQL): two scans of one asset never reconcile at once.
    let held = sqlx::query("UPDATE assets SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(asset.clone())
        .execute(&mut **tx)
        .await?;
    if held.rows_affected() == 0 {
        return Ok(()); // the asset was deleted meanwhile: its history went with it
    }
    expire(tx, Some(&asset), now).await?;
    // The scan's own findings: new, still open, or back.
    sqlx::query(
        "INSERT INTO scan_changes (tenant, scan_id, fingerprint, change, finding_id) \
         SELECT f.tenant, f.scan_id, f.fingerprint, \
         CASE WHEN af.fingerprint IS NULL THEN $1 WHEN af.present = 1 THEN $2 ELSE $3 END, f.id \
         FROM findings f LEFT JOIN asset_findings af \
         ON af.asset_id = $4 AND af.fingerprint = f.fingerprint \
         WHERE f.scan_id = $5",
    )
    .bind(i64::from(FindingChange::New as i32))
    .bind(i64::from(FindingChange::StillOpen as i32))
    .bind(i64::from(FindingChange::Reopened as i32))
    .bind(asset.clone())
    .bind(scan_id.to_owned())
    .execute(&mut **tx)
    .await?;
    // What the asset had open that the scan did not see: fixed.
    sqlx::query(
        "INSERT INTO scan_changes (tenant, scan_id, fingerprint, change, finding_id) \
         SELECT af.tenant, $1, af.fingerprint, $2, af.finding_id FROM asset_findings af \
         WHERE af.asset_id = $3 AND af.present = 1 AND NOT EXISTS \
         (SELECT 1 FROM findings f WHERE f.scan_id = $4 AND f.fingerprint = af.fingerprint)",
    )
    .bind(scan_id.to_owned())
    .bind(i64::from(FindingChange::Fixed as i32))
    .bind(asset.clone())
    .bind(scan_id.to_owned())
    .execute(&mut **tx)
    .await?;
    // Seen again (still open, or back): the record follows the latest sighting. A finding
    // said FIXED that is back reopens, and its history says so.
    sqlx::query(
        "INSERT INTO triage_events (id, tenant, asset_id, fingerprint, triage, reason, \
         principal, accepted_until, at) \
         SELECT 'reopened:' || c.scan_id || ':' || c.fingerprint, af.tenant, af.asset_id, \
         af.fingerprint, $1, $2, $3, 0, $4 FROM scan_changes c JOIN asset_findings af \
         ON af.asset_id = $5 AND af.fingerprint = c.fingerprint \
         WHERE c.scan_id = $6 AND c.change = $7 AND af.triage = $8 \
         ON CONFLICT DO NOTHING",
    )
    .bind(i64::from(TriageState::Open as i32))
    .bind(format!("seen again by scan {scan_id}"))
    .bind(SYSTEM.to_owned())
    .bind(now)
    .bind(asset.clone())
    .bind(scan_id.to_owned())
    .bind(i64::from(FindingChange::Reopened as i32))
    .bind(i64::from(TriageState::Fixed as i32))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE asset_findings SET \
         change = (SELECT c.change FROM scan_changes c \
                   WHERE c.scan_id = $1 AND c.fingerprint = asset_findings.fingerprint), \
         finding_id = (SELECT c.finding_id FROM scan_changes c \
                       WHERE c.scan_id = $2 AND c.fingerprint = asset_findings.fingerprint), \
         severity = (SELECT f.severity FROM findings f \
                     WHERE f.scan_id = $3 AND f.fingerprint = asset_findings.fingerprint), \
         reopened = reopened + CASE WHEN present = 0 THEN 1 ELSE 0 END, \
         triage_reason = CASE WHEN present = 0 AND triage = $4 THEN $5 ELSE triage_reason END, \
         triage_by = CASE WHEN present = 0 AND triage = $6 THEN $7 ELSE triage_by END, \
         triage_at = CASE WHEN present = 0 AND triage = $8 THEN $9 ELSE triage_at END, \
         triage = CASE WHEN present = 0 AND triage = $10 THEN $11 ELSE triage END, \
         present = 1, last_seen = $12, times_seen = times_seen + 1, last_scan_id = $13 \
         WHERE asset_id = $14 AND fingerprint IN (SELECT c.fingerprint FROM scan_changes c \
         WHERE c.scan_id = $15 AND (c.change = $16 OR c.change = $17))",
    )
    .bind(scan_id.to_owned())
    .bind(scan_id.to_owned())
    .bind(scan_id.to_owned())
    .bind(i64::from(TriageState::Fixed as i32))
    .bind(format!("seen again by scan {scan_id}"))
    .bind(i64::from(TriageState::Fixed as i32))
    .bind(SYSTEM.to_owned())
    .bind(i64::from(TriageState::Fixed as i32))
    .bind(now)
    .bind(i64::from(TriageState::Fixed as i32))
    .bind(i64::from(TriageState::Open as i32))
    .bind(now)
    .bind(scan_id.to_owned())
    .bind(asset.clone())
    .bind(scan_id.to_owned())
    .bind(i64::from(FindingChange::StillOpen as i32))
    .bind(i64::from(FindingChange::Reopened as i32))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE asset_findings SET present = 0, change = $1 \
         WHERE asset_id = $2 AND fingerprint IN (SELECT c.fingerprint FROM scan_changes c \
         WHERE c.scan_id = $3 AND c.change = $4)",
    )
    .bind(i64::from(FindingChange::Fixed as i32))
    .bind(asset.clone())
    .bind(scan_id.to_owned())
    .bind(i64::from(FindingChange::Fixed as i32))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO asset_findings (tenant, asset_id, fingerprint, finding_id, present, change, \
         first_seen, last_seen, times_seen, first_scan_id, last_scan_id, reopened, severity, \
         triage) \
         SELECT f.tenant, $1, f.fingerprint, f.id, 1, $2, $3, $4, 1, f.scan_id, f.scan_id, 0, \
         f.severity, $5 \
         FROM findings f JOIN scan_changes c ON c.scan_id = f.scan_id AND c.fingerprint = f.fingerprint \
         WHERE f.scan_id = $6 AND c.change = $7",
    )
    .bind(asset)
    .bind(i64::from(FindingChange::New as i32))
    .bind(now)
    .bind(now)
    .bind(i64::from(TriageState::Open as i32))
    .bind(scan_id.to_owned())
    .bind(i64::from(FindingChange::New as i32))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reopens the accepted risks (of `asset`, or of every asset) that expired at `now`.
async fn expire(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    asset: Option<&str>,
    now: i64,
) -> Result<u64, StoreError> {
    // The history says who changed it: the system, and why.
    sqlx::query(
        "INSERT INTO triage_events (id, tenant, asset_id, fingerprint, triage, reason, \
         principal, accepted_until, at) \
         SELECT 'expired:' || asset_id || ':' || fingerprint || ':' || accepted_until, tenant, \
         asset_id, fingerprint, $1, $2, $3, 0, $4 FROM asset_findings \
         WHERE triage = $5 AND accepted_until <= $6 AND ($7 = '' OR asset_id = $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(i64::from(TriageState::Open as i32))
    .bind(EXPIRED.to_owned())
    .bind(SYSTEM.to_owned())
    .bind(now)
    .bind(i64::from(TriageState::AcceptedRisk as i32))
    .bind(now)
    .bind(asset.unwrap_or_default().to_owned())
    .bind(asset.unwrap_or_default().to_owned())
    .execute(&mut **tx)
    .await?;
    let done = sqlx::query(
        "UPDATE asset_findings SET triage = $1, triage_reason = $2, triage_by = $3, \
         triage_at = $4, accepted_until = 0 \
         WHERE triage = $5 AND accepted_until <= $6 AND ($7 = '' OR asset_id = $8)",
    )
    .bind(i64::from(TriageState::Open as i32))
    .bind(EXPIRED.to_owned())
    .bind(SYSTEM.to_owned())
    .bind(now)
    .bind(i64::from(TriageState::AcceptedRisk as i32))
    .bind(now)
    .bind(asset.unwrap_or_default().to_owned())
    .bind(asset.unwrap_or_default().to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

impl SqlScanRepository {
    async fn asset_finding(
        &self,
        tenant: &Tenant,
        asset_id: &str,
        fingerprint: &str,
    ) -> Result<Option<AssetFindingRecord>, StoreError> {
        let row = sqlx::query(select_asset_findings!(
            "WHERE af.tenant = $1 AND af.asset_id = $2 AND af.fingerprint = $3"
        ))
        .bind(tenant.to_string())
        .bind(asset_id.to_owned())
        .bind(fingerprint.to_owned())
        .fetch_optional(self.db().pool())
        .await?;
        row.as_ref().map(asset_finding_of).transpose()
    }
}

#[async_trait]
impl AssetRepository for SqlScanRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "insert_asset", otel.kind = "client", db.system.name = self.db().system(), db.operation.name = "insert_asset"))]
    async fn insert_asset(&self, a: &AssetRecord) -> Result<bool, StoreError> {
        let (cron, zone, every, jitter, missed) = a.schedule.to_stored();
        let done = sqlx::query(
            "INSERT INTO assets (id, tenant, name, targets, ports, scanner, cron, time_zone, \
             every_micros, jitter_micros, missed, paused, next_due, next_run, last_scan_id, \
             runs, skipped, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL, 0, 0, \
             $15, $16)",
        )
        .bind(a.id.clone())
        .bind(a.tenant.to_string())
        .bind(a.name.clone())
        .bind(serde_json::to_string(&a.targets).expect("strings serialize"))
        .bind(a.ports.clone())
        .bind(a.scanner.clone())
        .bind(cron)
        .bind(zone)
        .bind(every)
        .bind(jitter)
        .bind(missed.to_owned())
        .bind(i64::from(a.paused))
        .bind(a.next_due)
        .bind(a.next_run)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(self.db().pool())
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn count_assets(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM assets WHERE tenant = $1")
            .bind(tenant.to_string())
            .fetch_one(self.db().pool())
            .await?;
        u64_of(&row, "n")
    }

    async fn get_asset(
        &self,
        tenant: &Tenant,
        key: &str,
    ) -> Result<Option<AssetRecord>, StoreError> {
        let row = sqlx::query(select_assets!(
            "WHERE tenant = $1 AND (id = $2 OR name = $3)"
        ))
        .bind(tenant.to_string())
        .bind(key.to_owned())
        .bind(key.to_owned())
        .fetch_optional(self.db().pool())
        .await?;
        row.as_ref().map(asset_of).transpose()
    }

    async fn list_assets(
        &self,
        tenant: &Tenant,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssetRecord>, StoreError> {
        let rows = sqlx::query(select_assets!(
            "WHERE tenant = $1 AND name > $2 ORDER BY name LIMIT $3"
        ))
        .bind(tenant.to_string())
        .bind(after.unwrap_or_default().to_owned())
        .bind(i64::from(limit))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(asset_of).collect()
    }

    async fn set_paused(
        &self,
        tenant: &Tenant,
        id: &str,
        paused: bool,
        next_due: i64,
        next_run: i64,
        now: i64,
    ) -> Result<Option<AssetRecord>, StoreError> {
        // Resuming moves the schedule on to its next due time after now: the due times
        // missed while paused are not missed runs, they were never wanted.
        let done = sqlx::query(
            "UPDATE assets SET paused = $1, updated_at = $2, \
             next_due = CASE WHEN $3 = 0 THEN $4 ELSE next_due END, \
             next_run = CASE WHEN $5 = 0 THEN $6 ELSE next_run END \
             WHERE tenant = $7 AND id = $8 AND paused <> $9",
        )
        .bind(i64::from(paused))
        .bind(now)
        .bind(i64::from(paused))
        .bind(next_due)
        .bind(i64::from(paused))
        .bind(next_run)
        .bind(tenant.to_string())
        .bind(id.to_owned())
        .bind(i64::from(paused))
        .execute(self.db().pool())
        .await?;
        let _ = done; // unchanged when it already was so: the call is idempotent
        self.get_asset(tenant, id).await
    }

    async fn delete_asset(&self, tenant: &Tenant, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.db().pool().begin().await?;
        for sql in [
            "DELETE FROM triage_events WHERE tenant = $1 AND asset_id = $2",
            "DELETE FROM asset_findings WHERE tenant = $1 AND asset_id = $2",
        ] {
            sqlx::query(sql)
                .bind(tenant.to_string())
                .bind(id.to_owned())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM assets WHERE tenant = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_assets(&self, now: i64, limit: u32) -> Result<Vec<AssetRecord>, StoreError> {
        let rows = sqlx::query(select_assets!(
            "WHERE paused = 0 AND next_run <= $1 ORDER BY next_run LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(asset_of).collect()
    }

    async fn asset_busy(&self, asset_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM scans WHERE asset_id = $1 AND (state = $2 OR state = $3)",
        )
        .bind(asset_id.to_owned())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .fetch_one(self.db().pool())
        .await?;
        Ok(u64_of(&row, "n")? > 0)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "fire_asset", otel.kind = "client", db.system.name = self.db().system(), db.operation.name = "fire_asset"))]
    async fn fire(
        &self,
        asset: &AssetRecord,
        scan: Option<&ScanRecord>,
        next_due: i64,
        next_run: i64,
        now: i64,
    ) -> Result<Fired, StoreError> {
        let mut tx = self.db().pool().begin().await?;
        let scan_id = scan.map(|s| s.id.to_string()).unwrap_or_default();
        let moved = sqlx::query(
            "UPDATE assets SET next_due = $1, next_run = $2, updated_at = $3, \
             last_scan_id = CASE WHEN $4 = '' THEN last_scan_id ELSE $5 END, \
             runs = runs + $6, skipped = skipped + $7 \
             WHERE id = $8 AND tenant = $9 AND next_due = $10 AND paused = 0",
        )
        .bind(next_due)
        .bind(next_run)
        .bind(now)
        .bind(scan_id.clone())
        .bind(scan_id)
        .bind(i64::from(scan.is_some()))
        .bind(i64::from(scan.is_none()))
        .bind(asset.id.clone())
        .bind(asset.tenant.to_string())
        .bind(asset.next_due)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(Fired::Lost);
        }
        let Some(scan) = scan else {
            tx.commit().await?;
            return Ok(Fired::Skipped);
        };
        match insert_scan_row(&mut *tx, scan).await {
            Ok(_) => {}
            // The same due time stored already (the unique (asset_id, due_at)).
            Err(e) if is_unique_violation(&e) => return Ok(Fired::Lost),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(Fired::Started)
    }

    async fn list_asset_findings(
        &self,
        tenant: &Tenant,
        asset_id: &str,
        changes: Values,
        triage: Values,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssetFindingRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            select_asset_findings!(
                "WHERE af.tenant = $1 AND af.asset_id = $2 AND af.fingerprint > $3 "
            ),
            "AND ($4 = 0 OR ($5 & ",
            bit_of!("af.change"),
            ") <> 0) AND ($6 = 0 OR ($7 & ",
            bit_of!("af.triage"),
            ") <> 0) ORDER BY af.fingerprint LIMIT $8"
        ))
        .bind(tenant.to_string())
        .bind(asset_id.to_owned())
        .bind(after.unwrap_or_default().to_owned())
        .bind(changes.0)
        .bind(changes.0)
        .bind(triage.0)
        .bind(triage.0)
        .bind(i64::from(limit))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(asset_finding_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "set_triage", otel.kind = "client", db.system.name = self.db().system(), db.operation.name = "set_triage"))]
    async fn set_triage(
        &self,
        tenant: &Tenant,
        asset_id: &str,
        fingerprint: &str,
        triage: &Triage,
        event_id: &str,
    ) -> Result<Option<AssetFindingRecord>, StoreError> {
        let mut tx = self.db().pool().begin().await?;
        let done = sqlx::query(
            "UPDATE asset_findings SET triage = $1, triage_reason = $2, triage_by = $3, \
             triage_at = $4, accepted_until = $5 \
             WHERE tenant = $6 AND asset_id = $7 AND fingerprint = $8",
        )
        .bind(i64::from(triage.state as i32))
        .bind(triage.reason.clone())
        .bind(triage.principal.clone())
        .bind(triage.at)
        .bind(triage.accepted_until)
        .bind(tenant.to_string())
        .bind(asset_id.to_owned())
        .bind(fingerprint.to_owned())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO triage_events (id, tenant, asset_id, fingerprint, triage, reason, \
             principal, accepted_until, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(event_id.to_owned())
        .bind(tenant.to_string())
        .bind(asset_id.to_owned())
        .bind(fingerprint.to_owned())
        .bind(i64::from(triage.state as i32))
        .bind(triage.reason.clone())
        .bind(triage.principal.clone())
        .bind(triage.accepted_until)
        .bind(triage.at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.asset_finding(tenant, asset_id, fingerprint).await
    }

    async fn expire_accepted_risks(&self, now: i64) -> Result<u64, StoreError> {
        // Asked every look of every replica: a read, and the writes only when one is due (on
        // SQLite a write takes the database's one writer, even when it changes nothing).
        let due = sqlx::query(
            "SELECT fingerprint FROM asset_findings WHERE triage = $1 AND accepted_until <= $2 \
             LIMIT 1",
        )
        .bind(i64::from(TriageState::AcceptedRisk as i32))
        .bind(now)
        .fetch_optional(self.db().pool())
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.db().pool().begin().await?;
        let n = expire(&mut tx, None, now).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// The wire's change of a stored finding (0 when it was not compared).
pub(super) fn change_of(row: &AnyRow) -> Result<pb::FindingChange, StoreError> {
    enum_of::<FindingChange>(row, "change", "scan_changes.change")
}
