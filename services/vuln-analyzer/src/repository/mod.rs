//! The vuln-analyzer's repository: analyses, and the queue of findings waiting for LLM
//! enrichment.
//!
//! [`AnalysisRepository`] is what the analyzer stores; [`SqlAnalysisRepository`] speaks it to
//! the shared database (see [`phantom_storage::Database`]). The tables (`analyses`,
//! `enrichment_queue`) and their migrations (`services/vuln-analyzer/migrations`) are the
//! analyzer's. [`AnalysisRecord`] is also the scan-orchestrator's: it attaches analyses to
//! findings, and reads `analyses` when it lists them.
//!
//! Every method takes the tenant (or works across tenants by design, said so) and every query
//! filters on it: a record of another tenant is indistinguishable from a missing one.

mod sql;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use async_trait::async_trait;
use phantom_domain::{Severity, Tenant};
use phantom_kit::time::timestamp;
use phantom_proto::pb;
use phantom_storage::StoreError;
use serde::{Deserialize, Serialize};

pub use sql::SqlAnalysisRepository;

phantom_storage::migrator! {
    /// The migrations the analyzer applies before it uses the database. Numbered
    /// 202611290200-202611290299 (see [`phantom_storage::Database::migrate`]).
    pub fn migrator
}

/// A stored analysis of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// Owner.
    pub tenant: Tenant,
    /// The analyzed finding's fingerprint.
    pub fingerprint: String,
    /// Score, 0-10.
    pub score: f64,
    /// Severity band of the score (serialized and stored as its `pb::Severity` number).
    pub severity: Severity,
    /// "rules" or "llm:<model>".
    pub analyzer: String,
    /// 0-100.
    pub confidence: u32,
    /// Why.
    pub summary: String,
    /// What to do.
    pub remediation: String,
    /// Rules answered because the LLM could not.
    pub degraded: bool,
    /// Made at.
    pub analyzed_at: i64,
    /// Likely impact (LLM triage).
    #[serde(default)]
    pub impact: String,
    /// The LLM suggests suppression (a suggestion only).
    #[serde(default)]
    pub suppression_suggested: bool,
    /// Why.
    #[serde(default)]
    pub suppression_reason: String,
}

impl AnalysisRecord {
    /// An analysis received over the wire, as `tenant` stores it.
    pub fn from_wire(tenant: &Tenant, a: &pb::Analysis) -> Self {
        Self {
            tenant: tenant.clone(),
            fingerprint: a.fingerprint.clone(),
            score: a.score,
            // An unknown number (never sent by a PHANTOM peer) reads as unspecified.
            severity: Severity::try_from(a.severity).unwrap_or_default(),
            analyzer: a.analyzer.clone(),
            confidence: a.confidence,
            summary: a.summary.clone(),
            remediation: a.remediation.clone(),
            degraded: a.degraded,
            analyzed_at: a
                .analyzed_at
                .map_or_else(phantom_kit::time::now_micros, |t| {
                    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
                }),
            impact: a.likely_impact.clone(),
            suppression_suggested: a.suppression_suggested,
            suppression_reason: a.suppression_reason.clone(),
        }
    }
}

impl From<AnalysisRecord> for pb::Analysis {
    fn from(r: AnalysisRecord) -> Self {
        pb::Analysis {
            fingerprint: r.fingerprint,
            score: r.score,
            severity: r.severity.into(),
            analyzer: r.analyzer,
            confidence: r.confidence,
            summary: r.summary,
            remediation: r.remediation,
            degraded: r.degraded,
            analyzed_at: Some(timestamp(r.analyzed_at)),
            likely_impact: r.impact,
            suppression_suggested: r.suppression_suggested,
            suppression_reason: r.suppression_reason,
        }
    }
}

/// A finding waiting for LLM enrichment of its degraded analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentJob {
    /// Owner.
    pub tenant: Tenant,
    /// The analysis to enrich.
    pub fingerprint: String,
    /// The finding, encoded by the analyzer.
    pub payload: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// What the vuln-analyzer stores: analyses, and the enrichment queue.
#[async_trait]
pub trait AnalysisRepository: Send + Sync + std::fmt::Debug + 'static {
    /// The stored analysis of a fingerprint.
    async fn get_analysis(
        &self,
        tenant: &Tenant,
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
        tenant: &Tenant,
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
    async fn finish_enrichment(&self, tenant: &Tenant, fingerprint: &str)
    -> Result<(), StoreError>;

    /// Puts a job back, due at `next_attempt_at`; `failed` counts the attempt and records
    /// `error` (false: it was not tried, e.g. the LLM's breaker was open).
    async fn retry_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &str,
        next_attempt_at: i64,
        failed: bool,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Jobs queued (due or not).
    async fn enrichment_backlog(&self) -> Result<u64, StoreError>;
}
