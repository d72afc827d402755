//! The analysis a finding carries.

use phantom_domain::Tenant;
use phantom_kit::time::timestamp;
use phantom_proto::pb;
use serde::{Deserialize, Serialize};

/// The analysis a finding carries: what the vuln-analyzer answered for its fingerprint, as
/// the orchestrator keeps it with the finding (`findings.analysis`, JSON) and as it reads the
/// analyzer's current verdict (`analyses`). The orchestrator's own type: it is converted from
/// the wire at the edge, and never shared with the analyzer's crate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingAnalysis {
    /// Owner.
    pub tenant: Tenant,
    /// The analyzed finding's fingerprint.
    pub fingerprint: String,
    /// Score, 0-10.
    pub score: f64,
    /// Severity band of the score (a `pb::Severity` value).
    pub severity: i32,
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

impl FindingAnalysis {
    /// An analysis received over the wire, as `tenant` stores it.
    pub fn from_wire(tenant: &Tenant, a: &pb::Analysis) -> Self {
        Self {
            tenant: tenant.clone(),
            fingerprint: a.fingerprint.clone(),
            score: a.score,
            severity: a.severity,
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

impl From<FindingAnalysis> for pb::Analysis {
    fn from(r: FindingAnalysis) -> Self {
        pb::Analysis {
            fingerprint: r.fingerprint,
            score: r.score,
            severity: r.severity,
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
