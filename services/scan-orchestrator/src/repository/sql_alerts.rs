//! [`AlertRepository`] in SQL, one text for SQLite and PostgreSQL.

use async_trait::async_trait;
use phantom_domain::{ScanId, Severity, Tenant};
use phantom_proto::pb::{FindingChange, ScanState};
use phantom_storage::{
    StoreError,
    row::{is_unique_violation, json_of, to_i64, u64_of},
};
use sqlx::{Row, any::AnyRow};

use super::{
    SqlScanRepository,
    alerts::{AlertRepository, AlertRuleRecord, Candidate, DigestFigures, PendingFiring},
    assets::Values,
    sql::{finding_of, tenant_in},
    sql_assets::enum_of,
};

/// A finding's columns, `f.`-prefixed, for the joins below.
macro_rules! finding_columns {
    () => {
        "f.id, f.tenant, f.scan_id, f.target, f.hostname, f.port, f.protocol, f.service, \
         f.banner, f.engine, f.check_id, f.title, f.severity, f.cvss_score, f.cvss_vector, \
         f.cve_ids, f.fingerprint, f.analysis, f.created_at"
    };
}

fn rule_of(row: &AnyRow) -> Result<AlertRuleRecord, StoreError> {
    let severity: i64 = row.try_get("min_severity")?;
    Ok(AlertRuleRecord {
        id: row.try_get("id")?,
        tenant: tenant_in(row, "tenant", "alert_rules.tenant")?,
        name: row.try_get("name")?,
        min_severity: i32::try_from(severity)
            .ok()
            .and_then(|s| Severity::try_from(s).ok())
            .unwrap_or_default(),
        ports: json_of(row, "ports")?,
        services: json_of(row, "services")?,
        text: row.try_get("text")?,
        changes: Values(row.try_get("changes")?),
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl AlertRepository for SqlScanRepository {
    async fn insert_rule(&self, r: &AlertRuleRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO alert_rules (id, tenant, name, min_severity, ports, services, text, \
             changes, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.id.clone())
        .bind(r.tenant.to_string())
        .bind(r.name.clone())
        .bind(i64::from(r.min_severity.as_i32()))
        .bind(serde_json::to_string(&r.ports).expect("ports serialize"))
        .bind(serde_json::to_string(&r.services).expect("strings serialize"))
        .bind(r.text.clone())
        .bind(r.changes.0)
        .bind(r.created_at)
        .execute(self.db().pool())
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn rules(&self, tenant: &Tenant) -> Result<Vec<AlertRuleRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant, name, min_severity, ports, services, text, changes, created_at \
             FROM alert_rules WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant.to_string())
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(rule_of).collect()
    }

    async fn delete_rule(&self, tenant: &Tenant, key: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM alert_rules WHERE tenant = $1 AND (id = $2 OR name = $3)")
                .bind(tenant.to_string())
                .bind(key.to_owned())
                .bind(key.to_owned())
                .execute(self.db().pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn scans_to_alert(&self, limit: u32) -> Result<Vec<(Tenant, ScanId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant FROM scans WHERE alerted = 0 AND state = $1 \
             AND asset_id IS NOT NULL ORDER BY id LIMIT $2",
        )
        .bind(i64::from(ScanState::Succeeded as i32))
        .bind(i64::from(limit))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    tenant_in(r, "tenant", "scans.tenant")?,
                    ScanId::from_stored(r.try_get("id")?),
                ))
            })
            .collect()
    }

    async fn candidates(
        &self,
        tenant: &Tenant,
        scan_id: &ScanId,
    ) -> Result<Vec<Candidate>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT c.change AS c_change, af.asset_id AS af_asset_id, af.reopened AS af_reopened, \
             af.triage AS af_triage, a.name AS a_name, ",
            finding_columns!(),
            " FROM scan_changes c JOIN findings f ON f.id = c.finding_id \
             JOIN scans s ON s.id = c.scan_id \
             JOIN asset_findings af ON af.asset_id = s.asset_id AND af.fingerprint = c.fingerprint \
             JOIN assets a ON a.id = s.asset_id \
             WHERE c.tenant = $1 AND c.scan_id = $2 AND (c.change = $3 OR c.change = $4) \
             ORDER BY f.id"
        ))
        .bind(tenant.to_string())
        .bind(scan_id.to_string())
        .bind(i64::from(FindingChange::New as i32))
        .bind(i64::from(FindingChange::Reopened as i32))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    asset_id: r.try_get("af_asset_id")?,
                    asset_name: r.try_get("a_name")?,
                    finding: finding_of(r)?,
                    change: enum_of(r, "c_change", "scan_changes.change")?,
                    epoch: u64_of(r, "af_reopened")?,
                    triage: enum_of(r, "af_triage", "asset_findings.triage")?,
                })
            })
            .collect()
    }

    async fn record_firing(
        &self,
        rule: &AlertRuleRecord,
        c: &Candidate,
        scan_id: &ScanId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO alert_firings (tenant, rule_id, asset_id, fingerprint, epoch, scan_id, \
             finding_id, change, notified, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) ON CONFLICT DO NOTHING",
        )
        .bind(rule.tenant.to_string())
        .bind(rule.id.clone())
        .bind(c.asset_id.clone())
        .bind(c.finding.fingerprint.to_string())
        .bind(to_i64(c.epoch))
        .bind(scan_id.to_string())
        .bind(c.finding.id.clone())
        .bind(i64::from(c.change as i32))
        .bind(now)
        .execute(self.db().pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn mark_scan_alerted(&self, scan_id: &ScanId) -> Result<(), StoreError> {
        sqlx::query("UPDATE scans SET alerted = 1 WHERE id = $1")
            .bind(scan_id.to_string())
            .execute(self.db().pool())
            .await?;
        Ok(())
    }

    async fn pending_firings(&self, limit: u32) -> Result<Vec<PendingFiring>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT x.tenant AS x_tenant, x.rule_id AS x_rule_id, x.asset_id AS x_asset_id, \
             x.epoch AS x_epoch, x.change AS c_change, \
             COALESCE(r.name, x.rule_id) AS r_name, COALESCE(a.name, x.asset_id) AS a_name, ",
            finding_columns!(),
            " FROM alert_firings x JOIN findings f ON f.id = x.finding_id \
             LEFT JOIN alert_rules r ON r.id = x.rule_id \
             LEFT JOIN assets a ON a.id = x.asset_id \
             WHERE x.notified = 0 ORDER BY x.created_at LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingFiring {
                    tenant: tenant_in(r, "x_tenant", "alert_firings.tenant")?,
                    rule: r.try_get("r_name")?,
                    rule_id: r.try_get("x_rule_id")?,
                    asset_id: r.try_get("x_asset_id")?,
                    asset_name: r.try_get("a_name")?,
                    finding: finding_of(r)?,
                    change: enum_of(r, "c_change", "scan_changes.change")?,
                    epoch: u64_of(r, "x_epoch")?,
                })
            })
            .collect()
    }

    async fn mark_notified(&self, f: &PendingFiring) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_firings SET notified = 1 \
             WHERE rule_id = $1 AND asset_id = $2 AND fingerprint = $3 AND epoch = $4",
        )
        .bind(f.rule_id.clone())
        .bind(f.asset_id.clone())
        .bind(f.finding.fingerprint.to_string())
        .bind(to_i64(f.epoch))
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    async fn tenants_scanned(&self, from: i64, to: i64) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT tenant FROM scans WHERE asset_id IS NOT NULL AND state = $1 \
             AND finished_at >= $2 AND finished_at < $3",
        )
        .bind(i64::from(ScanState::Succeeded as i32))
        .bind(from)
        .bind(to)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| tenant_in(r, "tenant", "scans.tenant"))
            .collect()
    }

    async fn claim_digest(&self, tenant: &Tenant, day: &str, now: i64) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO alert_digests (tenant, day, notified, created_at) \
             VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(day.to_owned())
        .bind(now)
        .execute(self.db().pool())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        // Claimed before: send it if it never was (its sender failed or died).
        let row = sqlx::query("SELECT notified FROM alert_digests WHERE tenant = $1 AND day = $2")
            .bind(tenant.to_string())
            .bind(day.to_owned())
            .fetch_one(self.db().pool())
            .await?;
        Ok(u64_of(&row, "notified")? == 0)
    }

    async fn digest_figures(
        &self,
        tenant: &Tenant,
        from: i64,
        to: i64,
    ) -> Result<DigestFigures, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT s.id) AS scans, \
             COALESCE(SUM(CASE WHEN c.change = $1 THEN 1 ELSE 0 END), 0) AS new, \
             COALESCE(SUM(CASE WHEN c.change = $2 THEN 1 ELSE 0 END), 0) AS fixed, \
             COALESCE(SUM(CASE WHEN c.change = $3 THEN 1 ELSE 0 END), 0) AS reopened \
             FROM scans s LEFT JOIN scan_changes c ON c.scan_id = s.id \
             WHERE s.tenant = $4 AND s.asset_id IS NOT NULL AND s.state = $5 \
             AND s.finished_at >= $6 AND s.finished_at < $7",
        )
        .bind(i64::from(FindingChange::New as i32))
        .bind(i64::from(FindingChange::Fixed as i32))
        .bind(i64::from(FindingChange::Reopened as i32))
        .bind(tenant.to_string())
        .bind(i64::from(ScanState::Succeeded as i32))
        .bind(from)
        .bind(to)
        .fetch_one(self.db().pool())
        .await?;
        let alerted = sqlx::query(
            "SELECT COUNT(DISTINCT x.fingerprint) AS n FROM alert_firings x JOIN scans s \
             ON s.id = x.scan_id WHERE x.tenant = $1 AND s.finished_at >= $2 AND s.finished_at < $3",
        )
        .bind(tenant.to_string())
        .bind(from)
        .bind(to)
        .fetch_one(self.db().pool())
        .await?;
        Ok(DigestFigures {
            scans: u64_of(&row, "scans")?,
            new: u64_of(&row, "new")?,
            fixed: u64_of(&row, "fixed")?,
            reopened: u64_of(&row, "reopened")?,
            alerted: u64_of(&alerted, "n")?,
        })
    }

    async fn mark_digest_sent(&self, tenant: &Tenant, day: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE alert_digests SET notified = 1 WHERE tenant = $1 AND day = $2")
            .bind(tenant.to_string())
            .bind(day.to_owned())
            .execute(self.db().pool())
            .await?;
        Ok(())
    }
}
