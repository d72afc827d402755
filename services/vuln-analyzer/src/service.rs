//! The `phantom.v1.VulnAnalyzer` gRPC service.

use std::{sync::Arc, time::Duration};

use phantom_layers::{Error, FieldViolation};
use phantom_proto::pb::{self, vuln_analyzer_server::VulnAnalyzer};
use phantom_runtime::{
    Ready,
    cache::Cache,
    server::tenant_of,
    storage::{AnalysisRecord, Store},
    time::now_micros,
};
use tonic::{Request, Response, Status};

use phantom_runtime::fingerprint::fingerprint;

use crate::{cvss::BaseVector, rules};

/// Most findings one AnalyzeFindings call may carry.
pub const MAX_FINDINGS_PER_CALL: usize = 1000;

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Stored analyses (the source of truth for dedup).
    pub store: Arc<dyn Store>,
    /// Cache in front of the store.
    pub cache: Arc<dyn Cache>,
    /// How long cached analyses live.
    pub cache_ttl: Duration,
    /// LLM triage, when configured.
    pub llm: Option<crate::llm::Llm>,
}

/// Below this much time left before the caller's deadline, the LLM is not asked.
const LLM_MIN_BUDGET: Duration = Duration::from_millis(100);

/// Time left before the deadline of the call being served, if it has one.
fn time_left() -> Option<Duration> {
    phantom_layers::request_id::current()
        .and_then(|c| c.deadline)
        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
}

impl Core {
    fn cache_key(tenant: &str, fingerprint: &str) -> String {
        format!("analysis:{tenant}:{fingerprint}")
    }

    /// The analysis of one finding: the stored one if this fingerprint was analyzed before,
    /// a new one otherwise. With an LLM configured, a stored *degraded* analysis (rules that
    /// answered for an unavailable LLM) is tried again and upgraded when the LLM answers.
    pub async fn analyze(
        &self,
        tenant: &str,
        finding: &pb::Finding,
    ) -> Result<AnalysisRecord, Error> {
        let fp = fingerprint(finding);
        let key = Self::cache_key(tenant, &fp);
        let wants_llm = |a: &AnalysisRecord| a.degraded && self.llm.is_some();
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => {
                if let Ok(hit) = serde_json::from_slice::<AnalysisRecord>(&bytes)
                    && !wants_llm(&hit)
                {
                    return Ok(hit);
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "Cache read failed; using the database"),
        }
        let stored = self.store.get_analysis(tenant, &fp).await?;
        let analysis = match stored {
            Some(stored) if !wants_llm(&stored) => stored,
            stored => {
                let fresh = self.fresh(tenant, fp, finding).await;
                match stored {
                    // Concurrent analyses of one fingerprint: the first stored wins for all.
                    None => self.store.put_analysis(&fresh).await?,
                    Some(_) if !fresh.degraded => {
                        self.store.upgrade_analysis(&fresh).await?;
                        fresh
                    }
                    Some(stored) => stored,
                }
            }
        };
        let bytes = serde_json::to_vec(&analysis).expect("analysis serializes");
        if let Err(err) = self.cache.set(&key, &bytes, self.cache_ttl).await {
            tracing::warn!(error = %err, "Cache write failed");
        }
        Ok(analysis)
    }

    /// A new verdict: the rules', annotated by the LLM when it answers in time.
    async fn fresh(&self, tenant: &str, fp: String, finding: &pb::Finding) -> AnalysisRecord {
        let v = rules::analyze(finding);
        let mut record = AnalysisRecord {
            tenant: tenant.to_owned(),
            fingerprint: fp,
            score: v.score,
            severity: v.severity as i32,
            analyzer: "rules".to_owned(),
            confidence: v.confidence,
            summary: v.summary.clone(),
            remediation: v.remediation.clone(),
            degraded: false,
            analyzed_at: now_micros(),
            impact: String::new(),
            suppression_suggested: false,
            suppression_reason: String::new(),
        };
        let Some(llm) = &self.llm else { return record };
        let budget = time_left();
        if budget.is_some_and(|b| b < LLM_MIN_BUDGET) {
            record.degraded = true;
            return record;
        }
        match llm.triage(finding, &v, budget).await {
            Ok(t) => {
                // The LLM annotates; score and severity stay those of CVSS or the rules.
                record.analyzer = llm.analyzer_name();
                record.summary = t.summary;
                record.impact = t.impact;
                record.remediation = t.remediation;
                record.suppression_suggested = t.suppress;
                record.suppression_reason = t.suppress_reason;
            }
            Err(err) => {
                tracing::info!(error = %err, "LLM triage unavailable; rules answer (degraded)");
                record.degraded = true;
            }
        }
        record
    }
}

/// The gRPC service; answers UNAVAILABLE until [`Core`] is ready.
#[derive(Debug, Clone)]
pub struct VulnAnalyzerService {
    core: Ready<Core>,
}

impl VulnAnalyzerService {
    /// A service that serves `core` once it is set.
    pub fn new(core: Ready<Core>) -> Self {
        Self { core }
    }
}

fn validate(findings: &[pb::Finding]) -> Result<(), Error> {
    if findings.is_empty() {
        return Err(Error::invalid(
            "findings",
            "at least one finding is required",
        ));
    }
    if findings.len() > MAX_FINDINGS_PER_CALL {
        return Err(Error::invalid(
            "findings",
            format!(
                "at most {MAX_FINDINGS_PER_CALL} findings per call, got {}",
                findings.len()
            ),
        ));
    }
    let mut violations = Vec::new();
    for (i, f) in findings.iter().enumerate() {
        for (name, value) in [
            ("target", &f.target),
            ("engine", &f.engine),
            ("check_id", &f.check_id),
        ] {
            if value.trim().is_empty() {
                violations.push(FieldViolation::new(
                    format!("findings[{i}].{name}"),
                    "is required",
                ));
            }
        }
        if f.port > u32::from(u16::MAX) {
            violations.push(FieldViolation::new(
                format!("findings[{i}].port"),
                format!("{} is not a port (0-65535)", f.port),
            ));
        }
        if !f.cvss_vector.is_empty()
            && let Err(err) = f.cvss_vector.parse::<BaseVector>()
        {
            violations.push(FieldViolation::new(
                format!("findings[{i}].cvss_vector"),
                err.to_string(),
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

#[tonic::async_trait]
impl VulnAnalyzer for VulnAnalyzerService {
    async fn analyze_findings(
        &self,
        request: Request<pb::AnalyzeFindingsRequest>,
    ) -> Result<Response<pb::AnalyzeFindingsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let findings = request.into_inner().findings;
        validate(&findings)?;
        let core = self.core.get()?;
        let mut analyses = Vec::with_capacity(findings.len());
        for f in &findings {
            analyses.push(core.analyze(&tenant, f).await?.into());
        }
        tracing::debug!(tenant = %tenant, findings = findings.len(), "Findings analyzed");
        Ok(Response::new(pb::AnalyzeFindingsResponse { analyses }))
    }

    async fn score_cvss(
        &self,
        request: Request<pb::ScoreCvssRequest>,
    ) -> Result<Response<pb::ScoreCvssResponse>, Status> {
        let vector: BaseVector = request
            .get_ref()
            .vector
            .parse()
            .map_err(|e: crate::cvss::CvssError| Error::invalid("vector", e.to_string()))?;
        let scores = vector.scores();
        Ok(Response::new(pb::ScoreCvssResponse {
            base_score: scores.base,
            severity: crate::cvss::severity_name(scores.base).to_owned(),
            normalized_vector: vector.to_string(),
            impact_score: scores.impact,
            exploitability_score: scores.exploitability,
        }))
    }
}
