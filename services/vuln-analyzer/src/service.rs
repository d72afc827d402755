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
}

impl Core {
    fn cache_key(tenant: &str, fingerprint: &str) -> String {
        format!("analysis:{tenant}:{fingerprint}")
    }

    /// The analysis of one finding: the stored one if this fingerprint was analyzed before,
    /// a new rule-based one otherwise.
    pub async fn analyze(
        &self,
        tenant: &str,
        finding: &pb::Finding,
    ) -> Result<AnalysisRecord, Error> {
        let fp = fingerprint(finding);
        let key = Self::cache_key(tenant, &fp);
        match self.cache.get(&key).await {
            Ok(Some(bytes)) => {
                if let Ok(hit) = serde_json::from_slice::<AnalysisRecord>(&bytes) {
                    return Ok(hit);
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "Cache read failed; using the database"),
        }
        let analysis = match self.store.get_analysis(tenant, &fp).await? {
            Some(stored) => stored,
            None => {
                let v = rules::analyze(finding);
                let record = AnalysisRecord {
                    tenant: tenant.to_owned(),
                    fingerprint: fp,
                    score: v.score,
                    severity: v.severity as i32,
                    analyzer: "rules".to_owned(),
                    confidence: v.confidence,
                    summary: v.summary,
                    remediation: v.remediation,
                    degraded: false,
                    analyzed_at: now_micros(),
                };
                // Concurrent analyses of one fingerprint: the first stored wins for all.
                self.store.put_analysis(&record).await?
            }
        };
        let bytes = serde_json::to_vec(&analysis).expect("analysis serializes");
        if let Err(err) = self.cache.set(&key, &bytes, self.cache_ttl).await {
            tracing::warn!(error = %err, "Cache write failed");
        }
        Ok(analysis)
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
