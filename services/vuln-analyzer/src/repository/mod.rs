//! The vuln-analyzer's repository: analyses, and the queue of findings waiting for LLM
//! enrichment.
//!
//! [`AnalysisRepository`] is what the analyzer stores; [`SqlAnalysisRepository`] speaks it to
//! the shared database (see [`phantom_storage::Database`]). The tables (`analyses`,
//! `enrichment_queue`) and their migrations (`services/vuln-analyzer/migrations`) are the
//! analyzer's. The record, [`phantom_domain::Analysis`], is shared with the scan-orchestrator
//! through phantom-domain: it attaches analyses to findings, and reads `analyses` when it lists
//! them.
//!
//! Every method takes the tenant (or works across tenants by design, said so) and every query
//! filters on it: a record of another tenant is indistinguishable from a missing one.

mod sql;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use async_trait::async_trait;
use phantom_domain::{Analysis, Fingerprint, Tenant};
use phantom_storage::StoreError;

pub use sql::SqlAnalysisRepository;

phantom_storage::migrator! {
    /// The migrations the analyzer applies before it uses the database. Numbered
    /// 202611290200-202611290299 (see [`phantom_storage::Database::migrate`]).
    pub fn migrator
}

/// A finding waiting for LLM enrichment of its degraded analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentJob {
    /// Owner.
    pub tenant: Tenant,
    /// The analysis to enrich.
    pub fingerprint: Fingerprint,
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
        fingerprint: &Fingerprint,
    ) -> Result<Option<Analysis>, StoreError>;

    /// Stores an analysis unless one exists for the fingerprint; returns the stored one.
    async fn put_analysis(&self, analysis: &Analysis) -> Result<Analysis, StoreError>;

    /// Replaces a *degraded* stored analysis (rules answering for an unavailable LLM) with a
    /// better one. Returns false when the stored one is not degraded (it is kept).
    async fn upgrade_analysis(&self, analysis: &Analysis) -> Result<bool, StoreError>;

    /// Queues a finding for LLM enrichment (due at once). False when it is already queued.
    async fn enqueue_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
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
    async fn finish_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
    ) -> Result<(), StoreError>;

    /// Puts a job back, due at `next_attempt_at`; `failed` counts the attempt and records
    /// `error` (false: it was not tried, e.g. the LLM's breaker was open).
    async fn retry_enrichment(
        &self,
        tenant: &Tenant,
        fingerprint: &Fingerprint,
        next_attempt_at: i64,
        failed: bool,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Jobs queued (due or not).
    async fn enrichment_backlog(&self) -> Result<u64, StoreError>;
}
