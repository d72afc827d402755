//! [`AnalysisRepository`] in SQL, one text for SQLite and PostgreSQL (see
//! [`phantom_storage::database`]).

use async_trait::async_trait;
use phantom_domain::{Analysis, CvssScores, Fingerprint, Severity, Tenant};
use phantom_storage::{Database, StoreError};
use sqlx::{Row, any::AnyRow};

use super::{AnalysisRepository, EnrichmentJob};

/// The SQL implementation of [`AnalysisRepository`].
#[derive(Debug, Clone)]
pub struct SqlAnalysisRepository {
    db: Database,
}

impl SqlAnalysisRepository {
    /// The repository over `db`, whose schema [`super::migrator`] brought up to date.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The tenant in column `col` (stored only after the edge validated it; checked again as
/// any stored value is, and reported as `column` when it does not hold a tenant).
fn tenant_in(row: &AnyRow, col: &str, column: &'static str) -> Result<Tenant, StoreError> {
    let text: String = row.try_get(col)?;
    Tenant::try_from(text).map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn analysis_of(row: &AnyRow) -> Result<Analysis, StoreError> {
    analysis_with_prefix(row, "")
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
        cvss: cvss_of(&row.try_get::<String, _>(col("cvss_vector").as_str())?)?,
    })
}

/// The scores of a stored vector, recomputed (the column holds the vector, never the scores).
fn cvss_of(vector: &str) -> Result<Option<CvssScores>, StoreError> {
    if vector.is_empty() {
        return Ok(None);
    }
    let v: crate::cvss::Vector =
        vector
            .parse()
            .map_err(|e: crate::cvss::CvssError| StoreError::Corrupt {
                column: "analyses.cvss_vector",
                message: e.to_string(),
            })?;
    Ok(Some(CvssScores::from(&v.to_pb())))
}

/// The vector to store for `a`: the canonical one its scores came from, '' without.
fn cvss_vector(a: &Analysis) -> String {
    a.cvss
        .as_ref()
        .map(|c| c.normalized_vector.clone())
        .unwrap_or_default()
}

#[async_trait]
impl AnalysisRepository for SqlAnalysisRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "get_analysis", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "get_analysis"))]
    async fn get_analysis(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Analysis>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, fingerprint, score, severity, analyzer, confidence, summary, \
             remediation, degraded, analyzed_at, impact, suppression_suggested, \
             suppression_reason, cvss_vector FROM analyses WHERE tenant = $1 AND fingerprint = $2",
        )
        .bind(tenant.to_string())
        .bind(fingerprint.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(analysis_of).transpose()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "put_analysis", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "put_analysis"))]
    async fn put_analysis(&self, a: &Analysis) -> Result<Analysis, StoreError> {
        sqlx::query(
            "INSERT INTO analyses (tenant, fingerprint, score, severity, analyzer, confidence, \
             summary, remediation, degraded, analyzed_at, impact, suppression_suggested, \
             suppression_reason, cvss_vector) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (tenant, fingerprint) DO NOTHING",
        )
        .bind(a.tenant.to_string())
        .bind(a.fingerprint.to_string())
        .bind(a.score)
        .bind(i64::from(a.severity.as_i32()))
        .bind(a.analyzer.clone())
        .bind(i64::from(a.confidence))
        .bind(a.summary.clone())
        .bind(a.remediation.clone())
        .bind(i64::from(a.degraded))
        .bind(a.analyzed_at)
        .bind(a.impact.clone())
        .bind(i64::from(a.suppression_suggested))
        .bind(a.suppression_reason.clone())
        .bind(cvss_vector(a))
        .execute(self.db.pool())
        .await?;
        self.get_analysis(&a.tenant, &a.fingerprint)
            .await?
            .ok_or(StoreError::Corrupt {
                column: "analyses",
                message: "analysis vanished after insert".into(),
            })
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "upgrade_analysis", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "upgrade_analysis"))]
    async fn upgrade_analysis(&self, a: &Analysis) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE analyses SET score = $1, severity = $2, analyzer = $3, confidence = $4, \
             summary = $5, remediation = $6, degraded = $7, analyzed_at = $8, impact = $9, \
             suppression_suggested = $10, suppression_reason = $11 \
             WHERE tenant = $12 AND fingerprint = $13 AND degraded = 1",
        )
        .bind(a.score)
        .bind(i64::from(a.severity.as_i32()))
        .bind(a.analyzer.clone())
        .bind(i64::from(a.confidence))
        .bind(a.summary.clone())
        .bind(a.remediation.clone())
        .bind(i64::from(a.degraded))
        .bind(a.analyzed_at)
        .bind(a.impact.clone())
        .bind(i64::from(a.suppression_suggested))
        .bind(a.suppression_reason.clone())
        .bind(a.tenant.to_string())
        .bind(a.fingerprint.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "enqueue_enrichment", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "enqueue_enrichment"))]
    async fn enqueue_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
        payload: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO enrichment_queue (tenant, fingerprint, payload, next_attempt_at, \
             enqueued_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, fingerprint) DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(fingerprint.to_string())
        .bind(payload.to_owned())
        .bind(now)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_enrichments", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "claim_enrichments"))]
    async fn claim_enrichments(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<EnrichmentJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, fingerprint, payload, attempts, next_attempt_at \
             FROM enrichment_queue WHERE next_attempt_at <= $1 \
             ORDER BY next_attempt_at, enqueued_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let tenant = tenant_in(row, "tenant", "enrichment_queue.tenant")?;
            let fingerprint = Fingerprint::new(row.try_get::<String, _>("fingerprint")?);
            let due: i64 = row.try_get("next_attempt_at")?;
            // Optimistic: only one replica moves a row from the time it read.
            let taken = sqlx::query(
                "UPDATE enrichment_queue SET next_attempt_at = $1 \
                 WHERE tenant = $2 AND fingerprint = $3 AND next_attempt_at = $4",
            )
            .bind(lease_until)
            .bind(tenant.to_string())
            .bind(fingerprint.to_string())
            .bind(due)
            .execute(self.db.pool())
            .await?;
            if taken.rows_affected() == 1 {
                let attempts: i64 = row.try_get("attempts")?;
                claimed.push(EnrichmentJob {
                    tenant,
                    fingerprint,
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(claimed)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "finish_enrichment", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "finish_enrichment"))]
    async fn finish_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM enrichment_queue WHERE tenant = $1 AND fingerprint = $2")
            .bind(tenant.to_string())
            .bind(fingerprint.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "retry_enrichment", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "retry_enrichment"))]
    async fn retry_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
        next_attempt_at: i64,
        failed: bool,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE enrichment_queue SET next_attempt_at = $1, attempts = attempts + $2, \
             last_error = $3 WHERE tenant = $4 AND fingerprint = $5",
        )
        .bind(next_attempt_at)
        .bind(i64::from(failed))
        .bind(error.chars().take(500).collect::<String>())
        .bind(tenant.to_string())
        .bind(fingerprint.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "enrichment_backlog", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "enrichment_backlog"))]
    async fn enrichment_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM enrichment_queue")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n.unsigned_abs())
    }
}
