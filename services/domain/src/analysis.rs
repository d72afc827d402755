//! The analysis of a finding: the vuln-analyzer's verdict on a fingerprint.

use phantom_proto::pb;
use serde::{Deserialize, Serialize};

use crate::{Fingerprint, Severity, Tenant, time};

/// The analysis of one fingerprint, as the vuln-analyzer stores it (`analyses`) and as the
/// scan-orchestrator keeps it with a finding (`findings.analysis`, this type's JSON) and reads
/// the analyzer's current verdict. Converted from the wire at the edge
/// ([`Analysis::from_wire`]) and back (`From<Analysis> for pb::Analysis`).
///
/// The JSON shape is stored: `tenant` and `fingerprint` as text, `severity` as its
/// `pb::Severity` number, and values stored before `impact` and the suppression fields
/// existed still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Owner.
    pub tenant: Tenant,
    /// The analyzed finding's fingerprint.
    pub fingerprint: Fingerprint,
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
    /// Made at, in microseconds since the Unix epoch.
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
    /// Every score of the CVSS vector the analysis was scored from, when one applied. Absent
    /// from values stored before it existed, and left out of the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss: Option<CvssScores>,
}

/// The scores of one CVSS vector (`pb::CvssScores`, which documents each field), as the
/// vuln-analyzer computed them: a snapshot, like [`Analysis::score`], so that a reader of a
/// stored analysis needs no CVSS calculator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CvssScores {
    /// "3.0", "3.1" or "4.0".
    pub version: String,
    /// Base score (CVSS-B for v4.0).
    pub base_score: f64,
    /// Severity of the base score.
    pub base_severity: String,
    /// v3.x temporal score.
    pub temporal_score: f64,
    /// Its severity.
    pub temporal_severity: String,
    /// v3.x environmental score.
    pub environmental_score: f64,
    /// Its severity.
    pub environmental_severity: String,
    /// v4.0 score of the vector as given.
    pub v4_score: f64,
    /// "CVSS-B", "CVSS-BT", "CVSS-BE" or "CVSS-BTE".
    pub v4_nomenclature: String,
    /// Severity of the v4.0 score.
    pub v4_severity: String,
    /// The vector in canonical form.
    pub normalized_vector: String,
}

impl From<&pb::CvssScores> for CvssScores {
    fn from(c: &pb::CvssScores) -> Self {
        Self {
            version: c.version.clone(),
            base_score: c.base_score,
            base_severity: c.base_severity.clone(),
            temporal_score: c.temporal_score,
            temporal_severity: c.temporal_severity.clone(),
            environmental_score: c.environmental_score,
            environmental_severity: c.environmental_severity.clone(),
            v4_score: c.v4_score,
            v4_nomenclature: c.v4_nomenclature.clone(),
            v4_severity: c.v4_severity.clone(),
            normalized_vector: c.normalized_vector.clone(),
        }
    }
}

impl From<CvssScores> for pb::CvssScores {
    fn from(c: CvssScores) -> Self {
        Self {
            version: c.version,
            base_score: c.base_score,
            base_severity: c.base_severity,
            temporal_score: c.temporal_score,
            temporal_severity: c.temporal_severity,
            environmental_score: c.environmental_score,
            environmental_severity: c.environmental_severity,
            v4_score: c.v4_score,
            v4_nomenclature: c.v4_nomenclature,
            v4_severity: c.v4_severity,
            normalized_vector: c.normalized_vector,
        }
    }
}

impl Analysis {
    /// An analysis received over the wire, as `tenant` stores it. Without `analyzed_at`, it
    /// was made now.
    pub fn from_wire(tenant: &Tenant, a: &pb::Analysis) -> Self {
        Self {
            tenant: tenant.clone(),
            fingerprint: Fingerprint::new(a.fingerprint.clone()),
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
                .as_ref()
                .map_or_else(time::now_micros, time::micros),
            impact: a.likely_impact.clone(),
            suppression_suggested: a.suppression_suggested,
            suppression_reason: a.suppression_reason.clone(),
            cvss: a.cvss.as_ref().map(CvssScores::from),
        }
    }
}

impl From<Analysis> for pb::Analysis {
    fn from(r: Analysis) -> Self {
        pb::Analysis {
            fingerprint: r.fingerprint.into(),
            score: r.score,
            severity: r.severity.into(),
            analyzer: r.analyzer,
            confidence: r.confidence,
            summary: r.summary,
            remediation: r.remediation,
            degraded: r.degraded,
            analyzed_at: Some(time::timestamp(r.analyzed_at)),
            likely_impact: r.impact,
            suppression_suggested: r.suppression_suggested,
            suppression_reason: r.suppression_reason,
            cvss: r.cvss.map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `findings.analysis` value as stored before the domain types: `tenant` and
    /// `fingerprint` as text, `severity` as the `pb::Severity` number.
    const STORED: &str = r#"{"tenant":"acme","fingerprint":"fp1","score":7.5,"severity":4,"analyzer":"rules","confidence":80,"summary":"s","remediation":"r","degraded":true,"analyzed_at":1700000000000000,"impact":"i","suppression_suggested":false,"suppression_reason":""}"#;

    #[test]
    fn stored_analyses_read_back_and_serialize_the_same() {
        let a: Analysis = serde_json::from_str(STORED).unwrap();
        assert_eq!(a.tenant.as_str(), "acme");
        assert_eq!(a.fingerprint.as_str(), "fp1");
        assert_eq!(a.severity, Severity::High);
        assert_eq!(serde_json::to_string(&a).unwrap(), STORED);

        // Values stored before `impact` and the suppression fields existed still read.
        let old = r#"{"tenant":"acme","fingerprint":"fp1","score":0.0,"severity":1,"analyzer":"rules","confidence":50,"summary":"","remediation":"","degraded":false,"analyzed_at":1}"#;
        let a: Analysis = serde_json::from_str(old).unwrap();
        assert_eq!(a.severity, Severity::Info);
        assert_eq!(
            serde_json::to_value(&a).unwrap()["severity"],
            serde_json::json!(1)
        );
    }

    #[test]
    fn analyses_round_trip_through_the_wire() {
        let a: Analysis = serde_json::from_str(STORED).unwrap();
        let wire = pb::Analysis::from(a.clone());
        assert_eq!(wire.fingerprint, "fp1");
        assert_eq!(Analysis::from_wire(&a.tenant, &wire), a);

        let scored = Analysis {
            cvss: Some(CvssScores {
                version: "4.0".into(),
                base_score: 9.3,
                base_severity: "CRITICAL".into(),
                v4_score: 3.7,
                v4_nomenclature: "CVSS-BTE".into(),
                v4_severity: "LOW".into(),
                normalized_vector: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N\
                                    /SA:N/E:U/CR:L/MAV:P"
                    .into(),
                ..Default::default()
            }),
            ..a
        };
        let wire = pb::Analysis::from(scored.clone());
        assert_eq!(wire.cvss.as_ref().unwrap().v4_nomenclature, "CVSS-BTE");
        assert_eq!(Analysis::from_wire(&scored.tenant, &wire), scored);
        let json = serde_json::to_string(&scored).unwrap();
        assert_eq!(serde_json::from_str::<Analysis>(&json).unwrap(), scored);
    }
}
