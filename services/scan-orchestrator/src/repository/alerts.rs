//! Alert rules, their firings (an outbox: a firing is stored once per rule, finding and state,
//! then handed to the notifier), and the daily digests: the records and [`AlertRepository`].

use async_trait::async_trait;
use phantom_domain::{ScanId, Severity, Tenant};
use phantom_kit::time::timestamp;
use phantom_proto::pb;
use phantom_storage::StoreError;

use super::{FindingRecord, assets::Values};

/// A stored alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRecord {
    /// UUIDv7.
    pub id: String,
    /// Owner.
    pub tenant: Tenant,
    /// Unique per tenant.
    pub name: String,
    /// Lowest severity that alerts.
    pub min_severity: Severity,
    /// Ports that alert (empty: any).
    pub ports: Vec<u16>,
    /// Services that alert, lowercase (empty: any).
    pub services: Vec<String>,
    /// Text that must appear, lowercase (empty: any).
    pub text: String,
    /// Changes that alert (NEW, REOPENED).
    pub changes: Values,
    /// Created at (µs).
    pub created_at: i64,
}

impl From<AlertRuleRecord> for pb::AlertRule {
    fn from(r: AlertRuleRecord) -> Self {
        pb::AlertRule {
            id: r.id,
            name: r.name,
            min_severity: r.min_severity.as_i32(),
            ports: r.ports.into_iter().map(u32::from).collect(),
            services: r.services,
            text: r.text,
            changes: [pb::FindingChange::New, pb::FindingChange::Reopened]
                .into_iter()
                .filter(|c| r.changes.contains(*c as i32))
                .map(|c| c as i32)
                .collect(),
            created_at: Some(timestamp(r.created_at)),
        }
    }
}

impl AlertRuleRecord {
    /// Whether a finding that changed so, triaged so, sets this rule off.
    pub fn matches(
        &self,
        f: &FindingRecord,
        change: pb::FindingChange,
        triage: pb::TriageState,
    ) -> bool {
        if matches!(
            triage,
            pb::TriageState::FalsePositive | pb::TriageState::AcceptedRisk
        ) {
            return false;
        }
        let text = || {
            let hay = |s: &str| s.to_lowercase().contains(&self.text);
            hay(&f.title)
                || hay(&f.service)
                || hay(&f.banner)
                || hay(&f.check_id)
                || f.cve_ids.iter().any(|c| hay(c))
        };
        self.changes.contains(change as i32)
            && f.verdict_severity() >= self.min_severity
            && (self.ports.is_empty() || self.ports.contains(&f.port))
            && (self.services.is_empty()
                || self
                    .services
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&f.service)))
            && (self.text.is_empty() || text())
    }
}

/// A new or reopened finding of a scan of an asset, for the rules to look at.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The asset.
    pub asset_id: String,
    /// The asset's name.
    pub asset_name: String,
    /// The finding as the scan saw it.
    pub finding: FindingRecord,
    /// NEW or REOPENED.
    pub change: pb::FindingChange,
    /// How many times it had reopened: a rule fires once per finding and epoch.
    pub epoch: u64,
    /// Its triage.
    pub triage: pb::TriageState,
}

/// A firing not yet handed to the notifier.
#[derive(Debug, Clone)]
pub struct PendingFiring {
    /// Owner.
    pub tenant: Tenant,
    /// The rule (its name; the rule may have been deleted since: then its id).
    pub rule: String,
    /// The rule's id.
    pub rule_id: String,
    /// The asset's id.
    pub asset_id: String,
    /// The asset's name.
    pub asset_name: String,
    /// The finding as the scan saw it.
    pub finding: FindingRecord,
    /// NEW or REOPENED.
    pub change: pb::FindingChange,
    /// The finding's epoch.
    pub epoch: u64,
}

impl PendingFiring {
    /// The firing's key, stable across retries: the notifier's idempotency key.
    pub fn key(&self) -> String {
        format!(
            "alert:{}:{}:{}",
            self.rule_id, self.finding.fingerprint, self.epoch
        )
    }
}

/// What a tenant's assets did in a day, for its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestFigures {
    /// Scans of assets that succeeded that day.
    pub scans: u64,
    /// Findings new that day.
    pub new: u64,
    /// Findings fixed that day.
    pub fixed: u64,
    /// Findings reopened that day.
    pub reopened: u64,
    /// Of the new and reopened, those an alert rule had already sent.
    pub alerted: u64,
}

/// What the scan-orchestrator stores about alerts.
#[async_trait]
pub trait AlertRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a rule. False when the tenant has one of that name.
    async fn insert_rule(&self, rule: &AlertRuleRecord) -> Result<bool, StoreError>;

    /// The tenant's rules by name.
    async fn rules(&self, tenant: &Tenant) -> Result<Vec<AlertRuleRecord>, StoreError>;

    /// Deletes a rule by id or name. False when there was none.
    async fn delete_rule(&self, tenant: &Tenant, key: &str) -> Result<bool, StoreError>;

    /// Succeeded scans of assets (any tenant) the rules have not looked at yet, oldest first.
    async fn scans_to_alert(&self, limit: u32) -> Result<Vec<(Tenant, ScanId)>, StoreError>;

    /// The new and reopened findings of a scan of an asset.
    async fn candidates(
        &self,
        tenant: &Tenant,
        scan_id: &ScanId,
    ) -> Result<Vec<Candidate>, StoreError>;

    /// Stores that `rule` fires for `candidate` of `scan_id`, unless it did for that finding
    /// and epoch already; true when stored now.
    async fn record_firing(
        &self,
        rule: &AlertRuleRecord,
        candidate: &Candidate,
        scan_id: &ScanId,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Marks a scan's changes seen by the rules.
    async fn mark_scan_alerted(&self, scan_id: &ScanId) -> Result<(), StoreError>;

    /// Firings (any tenant) not yet handed to the notifier, oldest first.
    async fn pending_firings(&self, limit: u32) -> Result<Vec<PendingFiring>, StoreError>;

    /// Marks a firing handed to the notifier.
    async fn mark_notified(&self, firing: &PendingFiring) -> Result<(), StoreError>;

    /// Tenants with asset scans that succeeded in `[from, to)` (µs).
    async fn tenants_scanned(&self, from: i64, to: i64) -> Result<Vec<Tenant>, StoreError>;

    /// Claims the digest of `tenant` for `day` (once across replicas); true when claimed now
    /// or claimed before and never sent.
    async fn claim_digest(&self, tenant: &Tenant, day: &str, now: i64) -> Result<bool, StoreError>;

    /// What `tenant`'s assets did in `[from, to)` (µs).
    async fn digest_figures(
        &self,
        tenant: &Tenant,
        from: i64,
        to: i64,
    ) -> Result<DigestFigures, StoreError>;

    /// Marks a digest sent.
    async fn mark_digest_sent(&self, tenant: &Tenant, day: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::conformance::{sample_finding, sample_scan};
    use pb::{FindingChange as C, TriageState as T};

    fn rule() -> AlertRuleRecord {
        AlertRuleRecord {
            id: "r".into(),
            tenant: Tenant::parse("acme").unwrap(),
            name: "r".into(),
            min_severity: Severity::High,
            ports: Vec::new(),
            services: Vec::new(),
            text: String::new(),
            changes: Values::of([C::New as i32, C::Reopened as i32]),
            created_at: 0,
        }
    }

    #[test]
    fn a_rule_matches_on_every_condition_it_sets_and_never_on_a_silenced_finding() {
        let scan = sample_scan(&Tenant::parse("acme").unwrap());
        let mut f = sample_finding(&scan, 23);
        f.service = "telnet".into();
        f.title = "Telnet login prompt".into();
        f.severity = Severity::High;
        let r = rule();
        assert!(r.matches(&f, C::New, T::Open));
        assert!(r.matches(&f, C::Reopened, T::Acknowledged));
        assert!(!r.matches(&f, C::StillOpen, T::Open), "only changes alert");
        assert!(!r.matches(&f, C::New, T::FalsePositive));
        assert!(!r.matches(&f, C::New, T::AcceptedRisk));
        let mut low = f.clone();
        low.severity = Severity::Medium;
        assert!(!r.matches(&low, C::New, T::Open));
        let ports = AlertRuleRecord {
            ports: vec![22],
            ..rule()
        };
        assert!(!ports.matches(&f, C::New, T::Open));
        let services = AlertRuleRecord {
            services: vec!["TELNET".into()],
            ..rule()
        };
        assert!(services.matches(&f, C::New, T::Open));
        let text = AlertRuleRecord {
            text: "login".into(),
            ..rule()
        };
        assert!(text.matches(&f, C::New, T::Open));
        let other = AlertRuleRecord {
            text: "ssh".into(),
            ..rule()
        };
        assert!(!other.matches(&f, C::New, T::Open));
        let reopened_only = AlertRuleRecord {
            changes: Values::of([C::Reopened as i32]),
            ..rule()
        };
        assert!(!reopened_only.matches(&f, C::New, T::Open));
    }
}
