//! [`ScanRepository`] in SQL, one text for SQLite and PostgreSQL (see
//! [`phantom_storage::database`]).

use async_trait::async_trait;
use phantom_domain::{Analysis, Fingerprint, ScanId, Severity, Tenant};
use phantom_proto::pb::{self, ScanState};
use phantom_storage::{
    Database, Dialect, StoreError,
    row::{is_unique_violation, json_of, to_i64, u64_of},
};
use sqlx::{Row, any::AnyRow};

use super::{
    FindingRecord, InsertScan, Saved, ScanProgress, ScanRecord, ScanRepository, TenantUsage,
    assets::Values,
};

/// The SQL implementation of [`ScanRepository`].
#[derive(Debug, Clone)]
pub struct SqlScanRepository {
    db: Database,
}

impl SqlScanRepository {
    /// The repository over `db`, whose schema [`super::migrators`] brought up to date.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database.
    pub(super) fn db(&self) -> &Database {
        &self.db
    }
}

/// The tenant in column `col` (stored only after the edge validated it; checked again as
/// any stored value is, and reported as `column` when it does not hold a tenant).
pub(super) fn tenant_in(
    row: &AnyRow,
    col: &str,
    column: &'static str,
) -> Result<Tenant, StoreError> {
    let text: String = row.try_get(col)?;
    Tenant::try_from(text).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn scan_of(row: &AnyRow) -> Result<ScanRecord, StoreError> {
    let state: i64 = row.try_get("state")?;
    let state = i32::try_from(state)
        .ok()
        .and_then(|s| ScanState::try_from(s).ok())
        .ok_or(StoreError::Corrupt {
            column: "scans.state",
            message: format!("unknown state {state}"),
        })?;
    Ok(ScanRecord {
        id: ScanId::from_stored(row.try_get("id")?),
        tenant: tenant_in(row, "tenant", "scans.tenant")?,
        state,
        targets: json_of(row, "targets")?,
        resolved: json_of(row, "resolved")?,
        ports: row.try_get("ports")?,
        scanner: row.try_get("scanner")?,
        progress_percent: u32::try_from(u64_of(row, "progress_percent")?).unwrap_or(100),
        findings_count: u64_of(row, "findings_count")?,
        probes_total: u64_of(row, "probes_total")?,
        probes_done: u64_of(row, "probes_done")?,
        idempotency_key: row.try_get("idempotency_key")?,
        error: row.try_get("error")?,
        request_id: row.try_get("request_id")?,
        trace_context: row.try_get("trace_context")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        owner: row.try_get("owner")?,
        lease_until: row.try_get("lease_until")?,
        claims: u64_of(row, "claims")?,
        checkpoint: row.try_get("checkpoint")?,
        asset_id: row.try_get("asset_id")?,
        due_at: row.try_get("due_at")?,
    })
}

pub(super) fn finding_of(row: &AnyRow) -> Result<FindingRecord, StoreError> {
    let severity: i64 = row.try_get("severity")?;
    let analysis: Option<String> = row.try_get("analysis")?;
    Ok(FindingRecord {
        id: row.try_get("id")?,
        tenant: tenant_in(row, "tenant", "scans.tenant")?,
        scan_id: ScanId::from_stored(row.try_get("scan_id")?),
        target: row.try_get("target")?,
        hostname: row.try_get("hostname")?,
        port: u16::try_from(u64_of(row, "port")?).map_err(|_| StoreError::Corrupt {
            column: "findings.port",
            message: "port above 65535".into(),
        })?,
        protocol: row.try_get("protocol")?,
        service: row.try_get("service")?,
        banner: row.try_get("banner")?,
        engine: row.try_get("engine")?,
        check_id: row.try_get("check_id")?,
        title: row.try_get("title")?,
        severity: i32::try_from(severity)
            .ok()
            .and_then(|s| Severity::try_from(s).ok())
            .unwrap_or(Severity::Unspecified),
        cvss_score: row.try_get("cvss_score")?,
        cvss_vector: row.try_get("cvss_vector")?,
        cve_ids: json_of(row, "cve_ids")?,
        fingerprint: Fingerprint::new(row.try_get::<String, _>("fingerprint")?),
        analysis: analysis
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                column: "findings.analysis",
                message: e.to_string(),
            })?,
        created_at: row.try_get("created_at")?,
        change: pb::FindingChange::Unspecified,
    })
}

/// The analysis in the columns named `<prefix><column>` (a joined table's, aliased).
fn analysis_with_prefix(row: &AnyRow, prefix: &str) -> Result<Analysis, StoreError> {
    let col = |c: &str| format!("{prefix}{c}");
    let severity: i64 = row.try_get(col("severity").as_str())?;
    let degraded: i64 = row.try_get(col("degraded").as_str())?;
    let suppression: i64 = row.try_get(col("suppression_suggested").as_str())?;
    let confidence: i64 = row.try_get(col("confidence").as_str())?;
    Ok(Analysis {
        tenant: tenant_in(row, &col("tenant"), "analyses.tenant")?,
        fingerprint: Fingerprint::new(row.try_get::<String, _>(col("fingerprint").as_str())?),
        score: row.try_get(col("score").as_str())?,
        severity: i32::try_from(severity)
            .ok()
            .and_then(|s| Severity::try_from(s).ok())
            .unwrap_or_default(),
        analyzer: row.try_get(col("analyzer").as_str())?,
        confidence: u32::try_from(confidence).unwrap_or(0),
        summary: row.try_get(col("summary").as_str())?,
        remediation: row.try_get(col("remediation").as_str())?,
        degraded: degraded != 0,
        analyzed_at: row.try_get(col("analyzed_at").as_str())?,
        impact: row.try_get(col("impact").as_str())?,
        suppression_suggested: suppression != 0,
        suppression_reason: row.try_get(col("suppression_reason").as_str())?,
        // The analyzer keeps only the vector in `analyses` (it recomputes the scores); the
        // scores come from the analysis stored with the finding (see below).
        cvss: None,
    })
}

/// A finding read with its fingerprint's current analysis joined (columns `a_*`): when the
/// verdict attached at scan time was degraded and has since been enriched, the enriched one
/// is what the finding shows.
fn finding_with_current_analysis(row: &AnyRow) -> Result<FindingRecord, StoreError> {
    let mut finding = finding_of(row)?;
    let joined: Option<String> = row.try_get("a_analyzer")?;
    if joined.is_some() && finding.analysis.as_ref().is_some_and(|a| a.degraded) {
        let mut current = analysis_with_prefix(row, "a_")?;
        if !current.degraded {
            // Enrichment changes the words, never the vector nor its scores.
            current.cvss = finding.analysis.as_mut().and_then(|a| a.cvss.take());
            finding.analysis = Some(current);
        }
    }
    Ok(finding)
}

/// Stores `findings` in `tx`, skipping any whose `(scan_id, fingerprint)` is already stored;
/// returns how many were new.
async fn insert_findings(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    findings: &[FindingRecord],
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for f in findings {
        let done = sqlx::query(
            "INSERT INTO findings (id, tenant, scan_id, target, hostname, port, protocol, \
                 service, banner, engine, check_id, title, severity, cvss_score, cvss_vector, \
                 cve_ids, fingerprint, analysis, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19) ON CONFLICT (scan_id, fingerprint) DO NOTHING",
        )
        .bind(f.id.clone())
        .bind(f.tenant.to_string())
        .bind(f.scan_id.to_string())
        .bind(f.target.clone())
        .bind(f.hostname.clone())
        .bind(i64::from(f.port))
        .bind(f.protocol.clone())
        .bind(f.service.clone())
        .bind(f.banner.clone())
        .bind(f.engine.clone())
        .bind(f.check_id.clone())
        .bind(f.title.clone())
        .bind(i64::from(f.severity.as_i32()))
        .bind(f.cvss_score)
        .bind(f.cvss_vector.clone())
        .bind(serde_json::to_string(&f.cve_ids).expect("strings serialize"))
        .bind(f.fingerprint.to_string())
        .bind(
            f.analysis
                .as_ref()
                .map(|a| serde_json::to_string(a).expect("analysis serializes")),
        )
        .bind(f.created_at)
        .execute(&mut **tx)
        .await?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}

/// Stores `scan` through `e` (the pool, or a transaction).
pub(super) async fn insert_scan_row<'e, E>(
    e: E,
    scan: &ScanRecord,
) -> Result<sqlx::any::AnyQueryResult, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO scans (id, tenant, state, targets, resolved, ports, scanner, \
         progress_percent, findings_count, probes_total, probes_done, idempotency_key, \
         error, request_id, created_at, started_at, finished_at, owner, lease_until, claims, \
         trace_context, hosts, checkpoint, asset_id, due_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $25)",
    )
    .bind(scan.id.to_string())
    .bind(scan.tenant.to_string())
    .bind(i64::from(scan.state as i32))
    .bind(serde_json::to_string(&scan.targets).expect("strings serialize"))
    .bind(serde_json::to_string(&scan.resolved).expect("addresses serialize"))
    .bind(scan.ports.clone())
    .bind(scan.scanner.clone())
    .bind(i64::from(scan.progress_percent))
    .bind(to_i64(scan.findings_count))
    .bind(to_i64(scan.probes_total))
    .bind(to_i64(scan.probes_done))
    .bind(scan.idempotency_key.clone())
    .bind(scan.error.clone())
    .bind(scan.request_id.clone())
    .bind(scan.created_at)
    .bind(scan.started_at)
    .bind(scan.finished_at)
    .bind(scan.owner.clone())
    .bind(scan.lease_until)
    .bind(to_i64(scan.claims))
    .bind(scan.trace_context.clone())
    .bind(to_i64(scan.resolved.len() as u64))
    .bind(scan.checkpoint.clone())
    .bind(scan.asset_id.clone())
    .bind(scan.due_at)
    .execute(e)
    .await
}

/// `SELECT <every scan column> FROM scans <rest>`, as one `&'static str` (sqlx takes only
/// static SQL without an explicit `AssertSqlSafe`).
macro_rules! scan_columns {
    () => {
        "id, tenant, state, targets, resolved, ports, scanner, progress_percent, \
         findings_count, probes_total, probes_done, idempotency_key, error, request_id, \
         created_at, started_at, finished_at, owner, lease_until, claims, trace_context, \
         checkpoint, asset_id, due_at"
    };
}

/// `SELECT <a finding's columns and its fingerprint's analysis (a_*)>, <rest>` (`f` is the
/// finding, `a` the analysis).
macro_rules! listed_findings {
    ($rest:literal) => {
        concat!(
            "SELECT f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, \
             f.service, f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, \
             f.cvss_vector, f.cve_ids, f.fingerprint, f.analysis, f.created_at, \
             a.tenant AS a_tenant, a.fingerprint AS a_fingerprint, a.score AS a_score, \
             a.severity AS a_severity, a.analyzer AS a_analyzer, a.confidence AS a_confidence, \
             a.summary AS a_summary, a.remediation AS a_remediation, a.degraded AS a_degraded, \
             a.analyzed_at AS a_analyzed_at, a.impact AS a_impact, \
             a.suppression_suggested AS a_suppression_suggested, \
             a.suppression_reason AS a_suppression_reason, ",
            $rest
        )
    };
}

/// `SELECT <every scan column> FROM scans <rest>`.
macro_rules! select_scans {
    ($rest:literal) => {
        concat!("SELECT ", scan_columns!(), " FROM scans ", $rest)
    };
}

/// The job claim: takes the lease of claimable scans and returns them. `$lock` is the row
/// lock clause of the subquery (PostgreSQL's `FOR UPDATE SKIP LOCKED`; none on SQLite).
macro_rules! claim_scans {
    ($lock:literal) => {
        concat!(
            "UPDATE scans SET owner = $1, lease_until = $2, claims = claims + 1 \
             WHERE id IN (SELECT id FROM scans WHERE (state = $3 OR state = $4) \
             AND lease_until < $5 ORDER BY id LIMIT $6 ",
            $lock,
            ") RETURNING ",
            scan_columns!()
        )
    };
}

#[async_trait]
impl ScanRepository for SqlScanRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "scan_counts", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "scan_counts"))]
    async fn scan_counts(&self) -> Result<Vec<(ScanState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM scans GROUP BY state")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let state: i64 = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                Ok((
                    ScanState::try_from(i32::try_from(state).unwrap_or(0))
                        .unwrap_or(ScanState::Unspecified),
                    n.unsigned_abs(),
                ))
            })
            .collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "tenant_usage", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "tenant_usage"))]
    async fn tenant_usage(&self, tenant: &Tenant, since: i64) -> Result<TenantUsage, StoreError> {
        let row = sqlx::query(
            "SELECT \
             CAST(COALESCE(SUM(CASE WHEN state IN ($2, $3) THEN 1 ELSE 0 END), 0) AS BIGINT) \
             AS active, \
             CAST(COALESCE(SUM(CASE WHEN created_at >= $4 THEN hosts ELSE 0 END), 0) AS BIGINT) \
             AS hosts, \
             MIN(CASE WHEN created_at >= $4 THEN created_at END) AS oldest \
             FROM scans WHERE tenant = $1 AND (state IN ($2, $3) OR created_at >= $4)",
        )
        .bind(tenant.to_string())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .bind(since)
        .fetch_one(self.db.pool())
        .await?;
        let active: i64 = row.try_get("active")?;
        let hosts: i64 = row.try_get("hosts")?;
        Ok(TenantUsage {
            active_scans: active.unsigned_abs(),
            hosts: hosts.unsigned_abs(),
            oldest: row.try_get("oldest")?,
        })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "insert_scan", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "insert_scan"))]
    async fn insert_scan(&self, scan: &ScanRecord) -> Result<InsertScan, StoreError> {
        let result = insert_scan_row(self.db.pool(), scan).await;
        match result {
            Ok(_) => Ok(InsertScan::Inserted),
            Err(err) if is_unique_violation(&err) && scan.idempotency_key.is_some() => {
                let row = sqlx::query(select_scans!("WHERE tenant = $1 AND idempotency_key = $2"))
                    .bind(scan.tenant.to_string())
                    .bind(scan.idempotency_key.clone())
                    .fetch_one(self.db.pool())
                    .await?;
                Ok(InsertScan::Existing(Box::new(scan_of(&row)?)))
            }
            Err(err) => Err(err.into()),
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "get_scan", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "get_scan"))]
    async fn get_scan(
        &self,
        tenant: &Tenant,
        id: &ScanId,
    ) -> Result<Option<ScanRecord>, StoreError> {
        let row = sqlx::query(select_scans!("WHERE tenant = $1 AND id = $2"))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(scan_of).transpose()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list_scans", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "list_scans"))]
    async fn list_scans(
        &self,
        tenant: &Tenant,
        state: Option<ScanState>,
        before_id: Option<&ScanId>,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError> {
        // 0 stands for "any state" and "" for "from the newest": one static query serves all
        // combinations of filters.
        let rows = sqlx::query(select_scans!(
            "WHERE tenant = $1 AND ($2 = 0 OR state = $3) AND ($4 = '' OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(tenant.to_string())
        .bind(state.map_or(0, |s| i64::from(s as i32)))
        .bind(state.map_or(0, |s| i64::from(s as i32)))
        .bind(before_id.map(ScanId::to_string).unwrap_or_default())
        .bind(before_id.map(ScanId::to_string).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(scan_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "unfinished_scans", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "unfinished_scans"))]
    async fn unfinished_scans(&self) -> Result<Vec<ScanRecord>, StoreError> {
        let rows = sqlx::query(select_scans!("WHERE state = $1 OR state = $2 ORDER BY id"))
            .bind(i64::from(ScanState::Pending as i32))
            .bind(i64::from(ScanState::Running as i32))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(scan_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_scans", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "claim_scans"))]
    async fn claim_scans(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<ScanRecord>, StoreError> {
        // PostgreSQL: replicas claiming at once skip each other's rows instead of waiting or
        // taking the same scan. SQLite: one writer at a time, so the plain subquery is enough.
        let sql = if self.db.dialect() == Dialect::Postgres {
            claim_scans!("FOR UPDATE SKIP LOCKED")
        } else {
            claim_scans!("")
        };
        let rows = sqlx::query(sql)
            .bind(owner.to_owned())
            .bind(lease_until)
            .bind(i64::from(ScanState::Pending as i32))
            .bind(i64::from(ScanState::Running as i32))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.db.pool())
            .await?;
        let mut scans: Vec<ScanRecord> = rows.iter().map(scan_of).collect::<Result<_, _>>()?;
        scans.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(scans)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "renew_lease", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "renew_lease"))]
    async fn renew_lease(
        &self,
        id: &ScanId,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE scans SET lease_until = $1 WHERE id = $2 AND owner = $3 \
             AND (state = $4 OR state = $5)",
        )
        .bind(lease_until)
        .bind(id.to_string())
        .bind(owner.to_owned())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "mark_scan_running", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "mark_scan_running"))]
    async fn mark_scan_running(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        probes_total: u64,
        now: i64,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE scans SET state = $1, probes_total = $2, \
             started_at = COALESCE(started_at, $3) \
             WHERE tenant = $4 AND id = $5 AND (state = $6 OR state = $7) AND owner = $8",
        )
        .bind(i64::from(ScanState::Running as i32))
        .bind(to_i64(probes_total))
        .bind(now)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "save_progress", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "save_progress", findings = findings.len()))]
    async fn save_progress(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        owner: &str,
        findings: &[FindingRecord],
        progress: &ScanProgress,
    ) -> Result<Saved, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let new_findings = insert_findings(&mut tx, findings).await?;
        let done = sqlx::query(
            "UPDATE scans SET probes_done = $1, progress_percent = $2, \
             findings_count = findings_count + $3, checkpoint = $4 \
             WHERE tenant = $5 AND id = $6 AND state = $7 AND owner = $8",
        )
        .bind(to_i64(progress.probes_done))
        .bind(i64::from(progress.progress_percent))
        .bind(to_i64(new_findings))
        .bind(progress.checkpoint.clone())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.to_owned())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Saved {
            new_findings,
            held: done.rows_affected() == 1,
        })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "finish_scan", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "finish_scan"))]
    async fn finish_scan(
        &self,
        tenant: &Tenant,
        id: &ScanId,
        state: ScanState,
        error: &str,
        now: i64,
        owner: Option<&str>,
    ) -> Result<Option<ScanRecord>, StoreError> {
        // Success means every probe ran: progress is exactly 100 then, and only then. A
        // runner finishes only a scan it still holds; a cancel (no owner) finishes any.
        let mut tx = self.db.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE scans SET state = $1, error = $2, finished_at = $3, lease_until = 0, \
             progress_percent = CASE WHEN $4 = 1 THEN 100 ELSE progress_percent END, \
             probes_done = CASE WHEN $5 = 1 THEN probes_total ELSE probes_done END, \
             findings_count = (SELECT COUNT(*) FROM findings f WHERE f.scan_id = scans.id) \
             WHERE tenant = $6 AND id = $7 AND (state = $8 OR state = $9) \
             AND ($10 = '' OR owner = $11)",
        )
        .bind(i64::from(state as i32))
        .bind(error.to_owned())
        .bind(now)
        .bind(i64::from(state == ScanState::Succeeded))
        .bind(i64::from(state == ScanState::Succeeded))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(i64::from(ScanState::Pending as i32))
        .bind(i64::from(ScanState::Running as i32))
        .bind(owner.unwrap_or_default().to_owned())
        .bind(owner.unwrap_or_default().to_owned())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        // A scan of an asset is compared with the asset's previous one as it succeeds, in the
        // same transaction: never a succeeded scan without its diff.
        if state == ScanState::Succeeded {
            super::sql_assets::reconcile(&mut tx, id.as_str(), now).await?;
        }
        tx.commit().await?;
        self.get_scan(tenant, id).await
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "set_finding_analysis", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "set_finding_analysis"))]
    async fn set_finding_analysis(
        &self,
        tenant: &Tenant,
        finding_id: &str,
        analysis: &Analysis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE findings SET analysis = $1, severity = $2, cvss_score = $3 \
             WHERE tenant = $4 AND id = $5",
        )
        .bind(serde_json::to_string(analysis).expect("analysis serializes"))
        .bind(i64::from(analysis.severity.as_i32()))
        .bind(analysis.score)
        .bind(tenant.to_string())
        .bind(finding_id.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list_findings", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "list_findings"))]
    async fn list_findings(
        &self,
        tenant: &Tenant,
        scan_id: &ScanId,
        changes: Values,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FindingRecord>, StoreError> {
        // The scan's own findings with how they compare (a scan of an asset), and, when
        // FIXED is asked for, the findings the asset had that this scan did not see, as last
        // seen.
        let fixed = i64::from(changes.contains(pb::FindingChange::Fixed as i32));
        let rows = sqlx::query(concat!(
            "SELECT * FROM (",
            listed_findings!(
                "COALESCE(c.change, 0) AS change FROM findings f \
                 LEFT JOIN scan_changes c ON c.scan_id = f.scan_id AND c.fingerprint = f.fingerprint \
                 LEFT JOIN analyses a ON a.tenant = f.tenant AND a.fingerprint = f.fingerprint \
                 WHERE f.tenant = $1 AND f.scan_id = $2 AND f.id > $3"
            ),
            " UNION ALL ",
            listed_findings!(
                "c.change AS change FROM scan_changes c JOIN findings f ON f.id = c.finding_id \
                 LEFT JOIN analyses a ON a.tenant = f.tenant AND a.fingerprint = f.fingerprint \
                 WHERE c.tenant = $4 AND c.scan_id = $5 AND c.change = $6 AND $7 = 1 AND f.id > $8"
            ),
            ") x WHERE ($9 = 0 OR ($10 & ",
            bit_of!("x.change"),
            ") <> 0) ORDER BY x.id LIMIT $11"
        ))
        .bind(tenant.to_string())
        .bind(scan_id.to_string())
        .bind(after_id.unwrap_or_default().to_owned())
        .bind(tenant.to_string())
        .bind(scan_id.to_string())
        .bind(i64::from(pb::FindingChange::Fixed as i32))
        .bind(fixed)
        .bind(after_id.unwrap_or_default().to_owned())
        .bind(changes.0)
        .bind(changes.0)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let mut finding = finding_with_current_analysis(row)?;
                finding.change = super::sql_assets::change_of(row)?;
                Ok(finding)
            })
            .collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "unanalyzed_findings", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "unanalyzed_findings"))]
    async fn unanalyzed_findings(&self, limit: u32) -> Result<Vec<FindingRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, \
             f.service, f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, \
             f.cvss_vector, f.cve_ids, f.fingerprint, f.analysis, f.created_at \
             FROM findings f JOIN scans s ON s.id = f.scan_id \
             WHERE f.analysis IS NULL AND s.state = $1 ORDER BY f.id LIMIT $2",
        )
        .bind(i64::from(ScanState::Succeeded as i32))
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(finding_of).collect()
    }
}
