//! What the store holds, as plain structs. Times are microseconds since the Unix epoch.

use phantom_proto::pb;
use serde::{Deserialize, Serialize};

use crate::time::timestamp;

/// A target after resolution: what the scanner is handed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTarget {
    /// The hostname the user gave, if the target was a name.
    pub hostname: Option<String>,
    /// The address to scan.
    pub address: std::net::IpAddr,
}

/// A stored scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRecord {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// Life-cycle state.
    pub state: pb::ScanState,
    /// Targets as given.
    pub targets: Vec<String>,
    /// Targets as resolved and checked against the scope, in scan order.
    pub resolved: Vec<ResolvedTarget>,
    /// Normalized port specification.
    pub ports: String,
    /// Engine name.
    pub scanner: String,
    /// 0-100.
    pub progress_percent: u32,
    /// Findings stored so far.
    pub findings_count: u64,
    /// Probes the scan consists of.
    pub probes_total: u64,
    /// Probes done.
    pub probes_done: u64,
    /// Client-chosen idempotency key.
    pub idempotency_key: Option<String>,
    /// Why it failed.
    pub error: String,
    /// Correlation id of the CreateScan call, carried by the scan's own outgoing calls.
    pub request_id: String,
    /// W3C `traceparent` of the CreateScan call's span (empty when it had none): the scan's
    /// span is its child, so the scan's work is part of that call's trace.
    pub trace_context: String,
    /// Accepted at.
    pub created_at: i64,
    /// Started at.
    pub started_at: Option<i64>,
    /// Finished at.
    pub finished_at: Option<i64>,
    /// The replica running it (empty when none claimed it).
    pub owner: String,
    /// Until when the owner's claim holds (µs); past it, any replica may claim the scan.
    pub lease_until: i64,
    /// How many times a replica claimed it (1 for a scan that ran without interruption).
    pub claims: u64,
}

impl ScanRecord {
    /// Whether the scan reached a state it never leaves.
    pub fn is_final(&self) -> bool {
        !matches!(self.state, pb::ScanState::Pending | pb::ScanState::Running)
    }
}

impl From<ScanRecord> for pb::Scan {
    fn from(r: ScanRecord) -> Self {
        pb::Scan {
            id: r.id,
            state: r.state as i32,
            targets: r.targets,
            ports: r.ports,
            scanner: r.scanner,
            progress_percent: r.progress_percent,
            findings_count: r.findings_count,
            created_at: Some(timestamp(r.created_at)),
            finished_at: r.finished_at.map(timestamp),
            error: r.error,
            idempotency_key: r.idempotency_key.unwrap_or_default(),
            started_at: r.started_at.map(timestamp),
            probes_total: r.probes_total,
            probes_done: r.probes_done,
        }
    }
}

/// Progress of a running scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProgress {
    /// Probes done.
    pub probes_done: u64,
    /// 0-100.
    pub progress_percent: u32,
    /// Findings stored so far.
    pub findings_count: u64,
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRecord {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// The scan that found it.
    pub scan_id: String,
    /// Address scanned.
    pub target: String,
    /// Hostname given by the user, if any.
    pub hostname: String,
    /// Port, 0 for host-level findings.
    pub port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// Service guess.
    pub service: String,
    /// What the service said first.
    pub banner: String,
    /// Engine name.
    pub engine: String,
    /// Engine's check id.
    pub check_id: String,
    /// One line for humans.
    pub title: String,
    /// Severity.
    pub severity: pb::Severity,
    /// CVSS base score.
    pub cvss_score: f64,
    /// CVSS vector.
    pub cvss_vector: String,
    /// CVE ids.
    pub cve_ids: Vec<String>,
    /// Dedup identity.
    pub fingerprint: String,
    /// The analysis, once made.
    pub analysis: Option<AnalysisRecord>,
    /// Stored at.
    pub created_at: i64,
}

impl From<FindingRecord> for pb::Finding {
    fn from(r: FindingRecord) -> Self {
        pb::Finding {
            id: r.id,
            scan_id: r.scan_id,
            target: r.target,
            hostname: r.hostname,
            port: u32::from(r.port),
            protocol: r.protocol,
            service: r.service,
            banner: r.banner,
            engine: r.engine,
            check_id: r.check_id,
            title: r.title,
            severity: r.severity as i32,
            cvss_score: r.cvss_score,
            cvss_vector: r.cvss_vector,
            cve_ids: r.cve_ids,
            fingerprint: r.fingerprint,
            created_at: Some(timestamp(r.created_at)),
            analysis: r.analysis.map(Into::into),
        }
    }
}

/// A stored analysis of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    /// Owner.
    pub tenant: String,
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

impl AnalysisRecord {
    /// An analysis received over the wire, as `tenant` stores it.
    pub fn from_wire(tenant: &str, a: &pb::Analysis) -> Self {
        Self {
            tenant: tenant.to_owned(),
            fingerprint: a.fingerprint.clone(),
            score: a.score,
            severity: a.severity,
            analyzer: a.analyzer.clone(),
            confidence: a.confidence,
            summary: a.summary.clone(),
            remediation: a.remediation.clone(),
            degraded: a.degraded,
            analyzed_at: a.analyzed_at.map_or_else(crate::time::now_micros, |t| {
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

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Owner.
    pub tenant: String,
    /// Room.
    pub room: String,
    /// Position in the room; assigned by [`super::Store::append_notification`].
    pub sequence: u64,
    /// UUIDv7.
    pub id: String,
    /// A `pb::Priority` value.
    pub priority: i32,
    /// Event type.
    pub kind: String,
    /// Payload.
    pub payload: String,
    /// Accepted at.
    pub created_at: i64,
    /// A `pb::Severity` value, for notifications about a finding (0 otherwise).
    pub severity: i32,
}

impl NotificationRecord {
    /// Memory a notification takes once read: its fields and its text. Pages of a room's log
    /// are bounded by it ([`super::Store::notifications_after`] computes the same sum in SQL).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.tenant.len()
            + self.room.len()
            + self.id.len()
            + self.kind.len()
            + self.payload.len()
    }
}

impl From<NotificationRecord> for pb::Notification {
    fn from(r: NotificationRecord) -> Self {
        pb::Notification {
            room: r.room,
            priority: r.priority,
            r#type: r.kind,
            payload: r.payload,
            sequence: r.sequence,
            id: r.id,
            created_at: Some(timestamp(r.created_at)),
            severity: r.severity,
        }
    }
}

/// A finding waiting for LLM enrichment of its degraded analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentJob {
    /// Owner.
    pub tenant: String,
    /// The analysis to enrich.
    pub fingerprint: String,
    /// The finding, encoded by the analyzer.
    pub payload: String,
    /// Attempts so far.
    pub attempts: u32,
}
