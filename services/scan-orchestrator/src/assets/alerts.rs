//! Alerts: the tenant's rules looked at each succeeded scan of an asset, firings handed to the
//! notifier (room `system/alerts`, whose webhooks forward them), and a daily digest.
//!
//! Exactly once, whichever replica looks: a firing is stored first, under the key (rule,
//! finding, epoch), where the epoch counts the finding's reopenings; so an unchanged scan
//! (nothing new) alerts nobody, and a finding that comes back alerts again. Stored firings are
//! then published until the notifier takes them, with the firing's key as the publish's
//! idempotency key: a replica that dies between the publish and its record does not make a
//! second notification.

use std::{sync::Arc, time::Duration};

use phantom_domain::Tenant;
use phantom_kit::client::GrpcChannel;
use phantom_layers::{
    RequestId,
    request_id::{self, CallContext},
};
use phantom_proto::pb::{self, notifier_client::NotifierClient};
use phantom_storage::StoreError;

use crate::repository::alerts::{AlertRepository, DigestFigures, PendingFiring};

/// The room alerts and digests are published to (a system room: only services publish there;
/// the tenant's users subscribe to it, and webhooks follow it).
pub const ROOM: &str = "system/alerts";
/// Scans looked at per round.
const SCANS_PER_ROUND: u32 = 20;
/// Firings published per round.
const FIRINGS_PER_ROUND: u32 = 200;
/// Deadline of one publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// One day, in µs.
const DAY: i64 = 24 * 3600 * 1_000_000;

/// Evaluates the alert rules and publishes what they fire.
#[derive(Debug, Clone)]
pub struct Alerter {
    store: Arc<dyn AlertRepository>,
    notifier: NotifierClient<GrpcChannel>,
}

impl Alerter {
    /// An alerter over `store`, publishing through `notifier`.
    pub fn new(store: Arc<dyn AlertRepository>, notifier: NotifierClient<GrpcChannel>) -> Self {
        Self { store, notifier }
    }

    /// One round at `now`: the rules look at the scans not looked at yet, pending firings
    /// are published, and yesterday's digests sent. Returns the firings published.
    pub async fn once(&self, now: i64) -> Result<usize, StoreError> {
        for (tenant, scan) in self.store.scans_to_alert(SCANS_PER_ROUND).await? {
            let rules = self.store.rules(&tenant).await?;
            if !rules.is_empty() {
                for candidate in self.store.candidates(&tenant, &scan).await? {
                    for rule in rules.iter().filter(|r| {
                        r.matches(&candidate.finding, candidate.change, candidate.triage)
                    }) {
                        self.store
                            .record_firing(rule, &candidate, &scan, now)
                            .await?;
                    }
                }
            }
            self.store.mark_scan_alerted(&scan).await?;
        }
        let mut published = 0;
        for firing in self.store.pending_firings(FIRINGS_PER_ROUND).await? {
            if self.publish(&firing.tenant, alert(&firing)).await {
                self.store.mark_notified(&firing).await?;
                published += 1;
            } else {
                break; // the notifier is away: the rest wait for the next round
            }
        }
        self.digests(now).await?;
        Ok(published)
    }

    /// Sends the digest of the UTC day before `now` to every tenant whose assets were scanned
    /// that day, once.
    async fn digests(&self, now: i64) -> Result<(), StoreError> {
        let to = now.div_euclid(DAY) * DAY;
        let from = to - DAY;
        let day = day_name(from);
        for tenant in self.store.tenants_scanned(from, to).await? {
            if !self.store.claim_digest(&tenant, &day, now).await? {
                continue;
            }
            let figures = self.store.digest_figures(&tenant, from, to).await?;
            if self.publish(&tenant, digest(&day, &figures)).await {
                self.store.mark_digest_sent(&tenant, &day).await?;
            }
        }
        Ok(())
    }

    /// Publishes `note` for `tenant`; true when the notifier took it.
    async fn publish(&self, tenant: &Tenant, note: pb::Notification) -> bool {
        let mut client = self.notifier.clone();
        let ctx = CallContext::background(RequestId::generate(), Some(tenant.clone()));
        let call = request_id::scope(ctx, async move {
            tokio::time::timeout(PUBLISH_TIMEOUT, client.publish(note)).await
        });
        match call.await {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "Alert not published; retried next round");
                false
            }
            Err(_) => {
                tracing::warn!("Alert publish timed out; retried next round");
                false
            }
        }
    }
}

/// `YYYY-MM-DD` of a time (µs, UTC).
fn day_name(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The notification of a firing: type `alert`, HIGH priority (CRITICAL for a critical
/// finding), the finding and why it alerted in the payload.
fn alert(f: &PendingFiring) -> pb::Notification {
    let severity = pb::Severity::from(f.finding.verdict_severity());
    let payload = serde_json::json!({
        "rule": f.rule,
        "asset": f.asset_name,
        "asset_id": f.asset_id,
        "change": match f.change {
            pb::FindingChange::Reopened => "reopened",
            _ => "new",
        },
        "scan_id": f.finding.scan_id.to_string(),
        "finding_id": f.finding.id,
        "fingerprint": f.finding.fingerprint.to_string(),
        "target": f.finding.target,
        "port": f.finding.port,
        "service": f.finding.service,
        "title": f.finding.title,
        "severity": severity.as_str_name().trim_start_matches("SEVERITY_"),
        "cve_ids": f.finding.cve_ids,
    });
    pb::Notification {
        room: ROOM.to_owned(),
        r#type: "alert".to_owned(),
        severity: severity.into(),
        priority: if severity == pb::Severity::Critical {
            pb::Priority::Critical
        } else {
            pb::Priority::High
        }
        .into(),
        payload: payload.to_string(),
        idempotency_key: f.key(),
        ..Default::default()
    }
}

/// The daily digest: what the tenant's assets did that day, alerted or not.
fn digest(day: &str, f: &DigestFigures) -> pb::Notification {
    let payload = serde_json::json!({
        "day": day,
        "scans": f.scans,
        "new": f.new,
        "fixed": f.fixed,
        "reopened": f.reopened,
        "alerted": f.alerted,
        "not_alerted": (f.new + f.reopened).saturating_sub(f.alerted),
    });
    pb::Notification {
        room: ROOM.to_owned(),
        r#type: "alert.digest".to_owned(),
        priority: pb::Priority::Normal.into(),
        payload: payload.to_string(),
        idempotency_key: format!("digest:{day}"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_named_in_utc() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(DAY - 1), "1970-01-01");
        assert_eq!(day_name(DAY), "1970-01-02");
    }
}
