//! What the orchestrator tells the notifier about a scan.
//!
//! A [`ScanEvent`] is built with typed fields where it happens (in the [`crate::runner`]) and
//! becomes a `phantom.v1.Notification` in one place ([`ScanEvent::notification`]): its type
//! ([`ScanEvent::kind`]), priority, severity and JSON payload. The payload is what clients
//! parse (`phantom watch`, the WebSocket gateway, webhooks): an object of the event's fields,
//! keys sorted, exactly as it has always been written.

use phantom_domain::{ScanId, Severity};
use phantom_proto::pb;
use serde::{Serialize, Serializer};

/// Something that happened to a scan, published to the scan's room (`scan/<id>`).
///
/// Serialized as the notification's payload: an object of the variant's fields (no tag: the
/// notification's type says which event it is).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ScanEvent {
    /// `scan.started`: the scan is running.
    Started {
        /// The scan.
        scan_id: ScanId,
        /// Targets as given.
        targets: Vec<String>,
        /// Probes the scan consists of.
        probes_total: u64,
    },
    /// `scan.progress`: the scan's percentage changed.
    Progress {
        /// The scan.
        scan_id: ScanId,
        /// 0-99 (100 is for success).
        progress_percent: u32,
        /// Probes done.
        probes_done: u64,
        /// Probes the scan consists of.
        probes_total: u64,
        /// Findings stored so far.
        findings_count: u64,
    },
    /// `finding`: the analyzer rated a finding high or critical.
    Finding {
        /// The scan.
        scan_id: ScanId,
        /// The finding.
        finding_id: String,
        /// Address scanned.
        target: String,
        /// Port, 0 for host-level findings.
        port: u16,
        /// The analysis' severity, serialized as its `phantom.v1.Severity` name
        /// (`"SEVERITY_HIGH"`).
        #[serde(serialize_with = "severity_name")]
        severity: Severity,
        /// The analysis' score, 0-10.
        score: f64,
        /// The analysis' summary.
        summary: String,
    },
    /// `scan.cancelled`: the scan stopped on CancelScan.
    Cancelled {
        /// The scan.
        scan_id: ScanId,
    },
    /// `scan.finished`: the scan succeeded (its `state` is always `"SUCCEEDED"`).
    Finished {
        /// The scan.
        scan_id: ScanId,
        /// Its final state, serialized as its `phantom.v1.ScanState` name without the prefix
        /// (`"SUCCEEDED"`).
        #[serde(serialize_with = "state_name")]
        state: pb::ScanState,
        /// Findings stored.
        findings_count: u64,
    },
    /// `scan.failed`: the scan ended FAILED.
    Failed {
        /// The scan.
        scan_id: ScanId,
        /// Why.
        error: String,
    },
}

impl ScanEvent {
    /// The notification's type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Started { .. } => "scan.started",
            Self::Progress { .. } => "scan.progress",
            Self::Finding { .. } => "finding",
            Self::Cancelled { .. } => "scan.cancelled",
            Self::Finished { .. } => "scan.finished",
            Self::Failed { .. } => "scan.failed",
        }
    }

    /// How urgent it is: a critical finding and a failure are critical, a high finding and
    /// a success high, the rest normal.
    pub fn priority(&self) -> pb::Priority {
        match self {
            Self::Finding {
                severity: Severity::Critical,
                ..
            }
            | Self::Failed { .. } => pb::Priority::Critical,
            Self::Finding { .. } | Self::Finished { .. } => pb::Priority::High,
            Self::Started { .. } | Self::Progress { .. } | Self::Cancelled { .. } => {
                pb::Priority::Normal
            }
        }
    }

    /// The severity subscribers filter on: a finding's, unspecified for the rest.
    pub fn severity(&self) -> Severity {
        match self {
            Self::Finding { severity, .. } => *severity,
            _ => Severity::Unspecified,
        }
    }

    /// The JSON payload: the event's fields, keys sorted (they go through a
    /// `serde_json::Value`, as the payloads built with `serde_json::json!` always did).
    pub fn payload(&self) -> String {
        serde_json::to_value(self)
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// The notification publishing it to `room`.
    pub fn notification(&self, room: String) -> pb::Notification {
        pb::Notification {
            room,
            priority: self.priority() as i32,
            r#type: self.kind().to_owned(),
            payload: self.payload(),
            severity: self.severity().as_i32(),
            ..Default::default()
        }
    }
}

fn severity_name<S: Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(pb::Severity::from(*severity).as_str_name())
}

fn state_name<S: Serializer>(state: &pb::ScanState, s: S) -> Result<S::Ok, S::Error> {
    let name = state.as_str_name();
    s.serialize_str(name.strip_prefix("SCAN_STATE_").unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn id() -> ScanId {
        ScanId::parse(ID).unwrap()
    }

    /// Each event's payload, type, priority and severity, as the runner wrote them with
    /// `serde_json::json!` before the events were typed: clients parse these.
    #[test]
    fn events_serialize_as_they_always_did() {
        let cases = [
            (
                ScanEvent::Started {
                    scan_id: id(),
                    targets: vec!["10.0.0.1".into(), "example.com".into()],
                    probes_total: 6,
                },
                "scan.started",
                pb::Priority::Normal,
                0,
                r#"{"probes_total":6,"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","targets":["10.0.0.1","example.com"]}"#,
            ),
            (
                ScanEvent::Progress {
                    scan_id: id(),
                    progress_percent: 50,
                    probes_done: 3,
                    probes_total: 6,
                    findings_count: 2,
                },
                "scan.progress",
                pb::Priority::Normal,
                0,
                r#"{"findings_count":2,"probes_done":3,"probes_total":6,"progress_percent":50,"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#,
            ),
            (
                ScanEvent::Finding {
                    scan_id: id(),
                    finding_id: "f1".into(),
                    target: "10.0.0.1".into(),
                    port: 443,
                    severity: Severity::Critical,
                    score: 9.8,
                    summary: "Log4Shell \"quoted\"".into(),
                },
                "finding",
                pb::Priority::Critical,
                5,
                r#"{"finding_id":"f1","port":443,"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","score":9.8,"severity":"SEVERITY_CRITICAL","summary":"Log4Shell \"quoted\"","target":"10.0.0.1"}"#,
            ),
            (
                ScanEvent::Finding {
                    scan_id: id(),
                    finding_id: "f2".into(),
                    target: "10.0.0.2".into(),
                    port: 0,
                    severity: Severity::High,
                    score: 7.0,
                    summary: String::new(),
                },
                "finding",
                pb::Priority::High,
                4,
                r#"{"finding_id":"f2","port":0,"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","score":7.0,"severity":"SEVERITY_HIGH","summary":"","target":"10.0.0.2"}"#,
            ),
            (
                ScanEvent::Cancelled { scan_id: id() },
                "scan.cancelled",
                pb::Priority::Normal,
                0,
                r#"{"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#,
            ),
            (
                ScanEvent::Finished {
                    scan_id: id(),
                    state: pb::ScanState::Succeeded,
                    findings_count: 2,
                },
                "scan.finished",
                pb::Priority::High,
                0,
                r#"{"findings_count":2,"scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","state":"SUCCEEDED"}"#,
            ),
            (
                ScanEvent::Failed {
                    scan_id: id(),
                    error: "engine crashed: boom".into(),
                },
                "scan.failed",
                pb::Priority::Critical,
                0,
                r#"{"error":"engine crashed: boom","scan_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#,
            ),
        ];
        for (event, kind, priority, severity, payload) in cases {
            assert_eq!(event.payload(), payload, "{kind}");
            let note = event.notification(format!("scan/{ID}"));
            assert_eq!(note.room, format!("scan/{ID}"));
            assert_eq!(note.r#type, kind);
            assert_eq!(note.priority, priority as i32, "{kind}");
            assert_eq!(note.severity, severity, "{kind}");
            assert_eq!(note.payload, payload);
        }
    }
}
