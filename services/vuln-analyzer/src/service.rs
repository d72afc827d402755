//! The `phantom.v1.VulnAnalyzer` gRPC service.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt as _, TryStreamExt as _};
use phantom_domain::{Analysis, Fingerprint, Tenant};
use phantom_kit::{Ready, server::tenant_of, time::now_micros};
use phantom_layers::{Error, FieldViolation, status::MAX_VIOLATIONS};
use phantom_proto::pb::{self, vuln_analyzer_server::VulnAnalyzer};
use phantom_storage::cache::{CacheManager, Entry};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{cvss::Vector, repository::AnalysisRepository, rules};

/// Most findings one AnalyzeFindings call may carry.
pub const MAX_FINDINGS_PER_CALL: usize = 1000;

/// Findings of one call analyzed at once.
const ANALYZE_CONCURRENCY: usize = 8;

/// Most fingerprints one WarmScan call may carry.
pub const MAX_WARM_FINGERPRINTS: usize = 10_000;
/// Longest id, engine, protocol or fingerprint of a finding, and longest scan id.
pub const MAX_ID_LEN: usize = 128;
/// Longest target, hostname, service or check id of a finding (a DNS name is at most 253).
pub const MAX_NAME_LEN: usize = 256;
/// Longest banner of a finding (the scan-orchestrator keeps 256 characters of an engine's).
pub const MAX_BANNER_LEN: usize = 16 * 1024;
/// Longest title of a finding.
pub const MAX_TITLE_LEN: usize = 1024;
/// Most CVE ids on one finding.
pub const MAX_CVE_IDS: usize = 64;

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Stored analyses (the source of truth for dedup) and the enrichment queue.
    pub store: Arc<dyn AnalysisRepository>,
    /// Cache in front of the store.
    pub cache: CacheManager,
    /// How long cached analyses live (before the cache's adaptation).
    pub cache_ttl: Duration,
    /// LLM triage, when configured.
    pub llm: Option<crate::llm::Llm>,
    /// Wakes the enrichment loop when a finding is queued.
    pub enrich_wake: Notify,
}

/// Below this much time left before the caller's deadline, the LLM is not asked.
const LLM_MIN_BUDGET: Duration = Duration::from_millis(100);
/// What the LLM leaves of the caller's time: this much, or a fifth of what is left if more.
/// The rules' verdict, its storage and the answer need it; without it a hanging provider took
/// the whole deadline and the caller got DEADLINE_EXCEEDED instead of a degraded verdict.
const ANSWER_RESERVE: Duration = Duration::from_millis(100);

/// Time left before the deadline of the call being served, if it has one.
fn time_left() -> Option<Duration> {
    phantom_layers::request_id::current()
        .and_then(|c| c.deadline)
        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
}

/// The cache key of a fingerprint's analysis.
pub fn cache_key(tenant: &Tenant, fingerprint: &Fingerprint) -> String {
    format!("analysis:{tenant}:{fingerprint}")
}

/// The cache tag of every analysis made for one scan.
pub fn scan_tag(tenant: &Tenant, scan_id: &str) -> String {
    format!("scan:{tenant}:{scan_id}")
}

impl Core {
    fn entry(&self, tenant: &Tenant, scan_id: &str) -> Entry {
        let entry = Entry::new()
            .ttl(self.cache_ttl)
            .tag(format!("tenant:{tenant}"));
        if scan_id.is_empty() {
            entry
        } else {
            entry.tag(scan_tag(tenant, scan_id))
        }
    }

    /// The analysis of one finding: the cached or stored one if this fingerprint was analyzed
    /// before, a new one otherwise. Concurrent analyses of one fingerprint make one.
    ///
    /// A stored *degraded* analysis (rules that answered for an unavailable LLM) is returned
    /// as it is: its finding waits in the enrichment queue, which upgrades it in the
    /// background once the LLM answers, so no caller waits on a failing LLM twice.
    pub async fn analyze(
        self: &Arc<Self>,
        tenant: &Tenant,
        finding: &pb::Finding,
    ) -> Result<Analysis, Error> {
        let fp = Fingerprint::of(finding);
        let key = cache_key(tenant, &fp);
        let entry = self.entry(tenant, &finding.scan_id);
        let (this, tenant, finding) = (self.clone(), tenant.clone(), finding.clone());
        self.cache
            .get_or_load(&key, &entry, move || {
                let (this, tenant, finding, fp) =
                    (this.clone(), tenant.clone(), finding.clone(), fp.clone());
                async move { this.load(&tenant, fp, &finding).await }
            })
            .await
    }

    /// The stored analysis, or a new one, stored.
    async fn load(
        &self,
        tenant: &Tenant,
        fp: Fingerprint,
        finding: &pb::Finding,
    ) -> Result<Analysis, Error> {
        if let Some(stored) = self.store.get_analysis(tenant, &fp).await? {
            return Ok(stored);
        }
        let fresh = self.fresh(tenant, fp, finding).await;
        // Concurrent analyses of one fingerprint across replicas: the first stored wins.
        let stored = self.store.put_analysis(&fresh).await?;
        if stored.degraded && stored == fresh {
            self.enqueue(finding, &stored).await;
        }
        Ok(stored)
    }

    /// Queues `finding` for enrichment. A failure is logged, not returned: the analysis is
    /// stored (degraded), and the caller's answer must not depend on the queue.
    async fn enqueue(&self, finding: &pb::Finding, analysis: &Analysis) {
        let payload = crate::payload::encode(finding);
        match self
            .store
            .enqueue_enrichment(
                &analysis.tenant,
                &analysis.fingerprint,
                &payload,
                now_micros(),
            )
            .await
        {
            Ok(_) => self.enrich_wake.notify_one(),
            Err(err) => tracing::warn!(
                error = %err,
                fingerprint = %analysis.fingerprint,
                "Could not queue a degraded analysis for enrichment"
            ),
        }
    }

    /// The rules' verdict on `finding`, as an analysis.
    pub(crate) fn rules_analysis(
        tenant: &Tenant,
        fp: Fingerprint,
        finding: &pb::Finding,
    ) -> (Analysis, rules::Verdict) {
        let v = rules::analyze(finding);
        let record = Analysis {
            tenant: tenant.clone(),
            fingerprint: fp,
            score: v.score,
            severity: v.severity.into(),
            analyzer: "rules".to_owned(),
            confidence: v.confidence,
            summary: v.summary.clone(),
            remediation: v.remediation.clone(),
            degraded: false,
            analyzed_at: now_micros(),
            impact: String::new(),
            suppression_suggested: false,
            suppression_reason: String::new(),
            // The vector the rules scored from (the finding's, or the matching rule's).
            cvss: v
                .vector
                .as_deref()
                .and_then(|s| s.parse::<Vector>().ok())
                .map(|vector| (&vector.to_pb()).into()),
        };
        (record, v)
    }

    /// The LLM's annotations on the rules' analysis. Score and severity stay those of CVSS
    /// or the rules: the model never lowers a finding.
    pub(crate) fn annotate(record: &mut Analysis, llm: &crate::llm::Llm, t: crate::llm::Triage) {
        record.analyzer = llm.analyzer_name();
        record.summary = t.summary;
        record.impact = t.impact;
        record.remediation = t.remediation;
        record.suppression_suggested = t.suppress;
        record.suppression_reason = t.suppress_reason;
        record.degraded = false;
        record.analyzed_at = now_micros();
    }

    /// A new verdict: the rules', annotated by the LLM when it answers in time.
    async fn fresh(&self, tenant: &Tenant, fp: Fingerprint, finding: &pb::Finding) -> Analysis {
        let (mut record, v) = Self::rules_analysis(tenant, fp, finding);
        let Some(llm) = &self.llm else { return record };
        let budget = time_left().map(|b| b.saturating_sub(ANSWER_RESERVE.max(b / 5)));
        if budget.is_some_and(|b| b < LLM_MIN_BUDGET) {
            record.degraded = true;
            return record;
        }
        match llm.triage(finding, &v, budget).await {
            Ok(t) => Self::annotate(&mut record, llm, t),
            Err(err) => {
                tracing::info!(error = %err, "LLM triage unavailable; rules answer (degraded)");
                record.degraded = true;
            }
        }
        record
    }

    /// Loads the stored analyses of `fingerprints` into the cache, tagged with the scan.
    /// Returns how many were warmed (the others have no stored analysis).
    pub async fn warm_scan(
        &self,
        tenant: &Tenant,
        scan_id: &str,
        fingerprints: &[Fingerprint],
    ) -> Result<u32, Error> {
        let entry = self.entry(tenant, scan_id);
        let mut warmed = 0;
        for fp in fingerprints {
            if let Some(analysis) = self.store.get_analysis(tenant, fp).await? {
                self.cache
                    .set_json(&cache_key(tenant, fp), &analysis, &entry)
                    .await;
                warmed += 1;
            }
        }
        Ok(warmed)
    }
}

/// The gRPC service; answers UNAVAILABLE until [`Core`] is ready.
#[derive(Debug, Clone)]
pub struct VulnAnalyzerService {
    core: Ready<Arc<Core>>,
}

impl VulnAnalyzerService {
    /// A service that serves `core` once it is set.
    pub fn new(core: Ready<Arc<Core>>) -> Self {
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
        // A refusal lists no more than this (the rest are only counted): looking for more
        // would be work for nothing.
        if violations.len() >= MAX_VIOLATIONS {
            break;
        }
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
        for (name, value, max) in [
            ("id", &f.id, MAX_ID_LEN),
            ("scan_id", &f.scan_id, MAX_ID_LEN),
            ("target", &f.target, MAX_NAME_LEN),
            ("hostname", &f.hostname, MAX_NAME_LEN),
            ("protocol", &f.protocol, MAX_ID_LEN),
            ("service", &f.service, MAX_NAME_LEN),
            ("banner", &f.banner, MAX_BANNER_LEN),
            ("engine", &f.engine, MAX_ID_LEN),
            ("check_id", &f.check_id, MAX_NAME_LEN),
            ("title", &f.title, MAX_TITLE_LEN),
            ("fingerprint", &f.fingerprint, MAX_ID_LEN),
        ] {
            if value.len() > max {
                violations.push(FieldViolation::new(
                    format!("findings[{i}].{name}"),
                    format!("is {} bytes long, over the limit of {max}", value.len()),
                ));
            }
        }
        if f.cve_ids.len() > MAX_CVE_IDS {
            violations.push(FieldViolation::new(
                format!("findings[{i}].cve_ids"),
                format!(
                    "has {} entries, over the limit of {MAX_CVE_IDS}",
                    f.cve_ids.len()
                ),
            ));
        } else if let Some((j, id)) = f
            .cve_ids
            .iter()
            .enumerate()
            .find(|(_, c)| c.len() > MAX_ID_LEN)
        {
            violations.push(FieldViolation::new(
                format!("findings[{i}].cve_ids[{j}]"),
                format!("is {} bytes long, over the limit of {MAX_ID_LEN}", id.len()),
            ));
        }
        if f.port > u32::from(u16::MAX) {
            violations.push(FieldViolation::new(
                format!("findings[{i}].port"),
                format!("{} is not a port (0-65535)", f.port),
            ));
        }
        if !f.cvss_vector.is_empty()
            && let Err(err) = f.cvss_vector.parse::<Vector>()
        {
            violations.push(FieldViolation::new(
                format!("findings[{i}].cvss_vector"),
                err.to_string(),
            ));
        }
    }
    Error::unless_violated(violations)
}

#[tonic::async_trait]
impl VulnAnalyzer for VulnAnalyzerService {
    async fn analyze_findings(
        &self,
        request: Request<pb::AnalyzeFindingsRequest>,
    ) -> Result<Response<pb::AnalyzeFindingsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        phantom_layers::auth::audit::target(&request, || {
            let findings = &request.get_ref().findings;
            let scan = findings.first().map_or("", |f| f.scan_id.as_str());
            format!(
                "{} findings of scan {}",
                findings.len(),
                phantom_layers::status::echo(scan)
            )
        });
        let findings = request.into_inner().findings;
        validate(&findings)?;
        let core = self.core.get()?;
        // Several at once (an LLM call is mostly waiting), answers in the request's order.
        let analyses: Vec<pb::Analysis> = futures::stream::iter(findings.iter().cloned())
            .map(|f| {
                let (core, tenant) = (core.clone(), tenant.clone());
                async move { core.analyze(&tenant, &f).await }
            })
            .buffered(ANALYZE_CONCURRENCY)
            .map_ok(Into::into)
            .try_collect()
            .await?;
        tracing::debug!(tenant = %tenant, findings = findings.len(), "Findings analyzed");
        Ok(Response::new(pb::AnalyzeFindingsResponse { analyses }))
    }

    async fn warm_scan(
        &self,
        request: Request<pb::WarmScanRequest>,
    ) -> Result<Response<pb::WarmScanResponse>, Status> {
        let tenant = tenant_of(&request)?;
        phantom_layers::auth::audit::target(&request, || {
            format!(
                "scan {}",
                phantom_layers::status::echo(&request.get_ref().scan_id)
            )
        });
        let r = request.into_inner();
        if r.scan_id.trim().is_empty() {
            return Err(Error::invalid("scan_id", "is required").into());
        }
        if r.scan_id.len() > MAX_ID_LEN {
            return Err(Error::invalid(
                "scan_id",
                format!(
                    "is {} bytes long, over the limit of {MAX_ID_LEN}",
                    r.scan_id.len()
                ),
            )
            .into());
        }
        if let Some((i, fp)) = r
            .fingerprints
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() > MAX_ID_LEN)
        {
            return Err(Error::invalid(
                format!("fingerprints[{i}]"),
                format!("is {} bytes long, over the limit of {MAX_ID_LEN}", fp.len()),
            )
            .into());
        }
        if r.fingerprints.len() > MAX_WARM_FINGERPRINTS {
            return Err(Error::invalid(
                "fingerprints",
                format!(
                    "at most {MAX_WARM_FINGERPRINTS} per call, got {}",
                    r.fingerprints.len()
                ),
            )
            .into());
        }
        let core = self.core.get()?;
        let fingerprints: Vec<Fingerprint> = r
            .fingerprints
            .iter()
            .cloned()
            .map(Fingerprint::new)
            .collect();
        let warmed = core.warm_scan(&tenant, &r.scan_id, &fingerprints).await?;
        let missing = u32::try_from(r.fingerprints.len()).unwrap_or(u32::MAX) - warmed;
        tracing::debug!(tenant = %tenant, scan_id = %r.scan_id, warmed, missing, "Scan analyses warmed");
        Ok(Response::new(pb::WarmScanResponse { warmed, missing }))
    }

    async fn score_cvss(
        &self,
        request: Request<pb::ScoreCvssRequest>,
    ) -> Result<Response<pb::ScoreCvssResponse>, Status> {
        let vector: Vector = request
            .get_ref()
            .vector
            .parse()
            .map_err(|e: crate::cvss::CvssError| Error::invalid("vector", e.to_string()))?;
        let scores = vector.scores();
        Ok(Response::new(pb::ScoreCvssResponse {
            cvss: Some(vector.to_pb()),
            base_score: scores.base,
            // v3.x and v4.0 share the qualitative bands.
            severity: crate::cvss::severity_name(scores.base).to_owned(),
            normalized_vector: vector.to_string(),
            // CVSS v4.0 defines no impact or exploitability sub-score: 0 for v4 vectors.
            impact_score: scores.impact.unwrap_or(0.0),
            exploitability_score: scores.exploitability.unwrap_or(0.0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> pb::Finding {
        pb::Finding {
            target: "10.0.0.1".into(),
            engine: "builtin".into(),
            check_id: "open-port".into(),
            ..Default::default()
        }
    }

    fn violations(findings: &[pb::Finding]) -> Vec<FieldViolation> {
        match validate(findings) {
            Err(Error::InvalidArgument(v)) => v,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn oversized_fields_of_a_finding_are_refused_naming_the_field() {
        let mut huge = finding();
        huge.banner = "b".repeat(3 << 20);
        let v = violations(&[huge]);
        assert_eq!(v[0].field, "findings[0].banner");
        assert!(v[0].description.contains("3145728 bytes"), "{v:?}");
        let mut many = finding();
        many.cve_ids = vec!["CVE-2024-0001".into(); 10_000];
        assert_eq!(violations(&[many])[0].field, "findings[0].cve_ids");
    }

    #[test]
    fn a_refusal_lists_a_bounded_number_of_violations() {
        let bad = vec![pb::Finding::default(); MAX_FINDINGS_PER_CALL];
        let v = violations(&bad);
        assert!(
            v.len() < MAX_VIOLATIONS + 3,
            "{} violations listed",
            v.len()
        );
    }

    #[test]
    fn an_analysis_scored_from_a_vector_carries_all_its_scores() {
        let tenant = Tenant::try_from("acme".to_owned()).unwrap();
        let mut f = finding();
        f.cvss_vector =
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U/CR:L/MAV:P".into();
        let (a, _) = Core::rules_analysis(&tenant, Fingerprint::new("fp"), &f);
        assert_eq!(a.score, 9.3);
        let cvss = a.cvss.expect("scores");
        assert_eq!(cvss.base_score, 9.3);
        assert_eq!(cvss.v4_nomenclature, "CVSS-BTE");
        assert_eq!(cvss.v4_score, 3.7);
        // A rule's representative vector is scored too; no vector, no scores.
        f.cvss_vector.clear();
        f.port = 23;
        let (a, _) = Core::rules_analysis(&tenant, Fingerprint::new("fp"), &f);
        assert_eq!(a.cvss.expect("the telnet rule's vector").version, "3.1");
        f.port = 8443;
        let (a, _) = Core::rules_analysis(&tenant, Fingerprint::new("fp"), &f);
        assert_eq!(a.cvss, None);
    }

    #[test]
    fn a_well_formed_finding_passes() {
        assert!(validate(&[finding()]).is_ok());
    }
}
