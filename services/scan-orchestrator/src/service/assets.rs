//! The asset methods of `phantom.v1.ScanOrchestrator`: assets and their schedules, their
//! findings across scans, and triage. The gRPC trait's methods call these.

use phantom_domain::Tenant;
use phantom_kit::time::now_micros;
use phantom_layers::{Error, status::echo};
use phantom_proto::pb;

use super::{Core, page_size, telemetry};
use crate::{
    repository::{
        alerts::AlertRuleRecord,
        assets::{AssetRecord, Triage, Values},
    },
    schedule::Schedule,
    targets,
};

/// Default and largest page of ListAssets and ListAssetFindings.
const PAGE: (i32, i32) = (100, 1000);
/// Longest asset name.
const MAX_NAME: usize = 64;
/// Longest triage reason.
const MAX_REASON: usize = 1000;
/// Longest fingerprint.
const MAX_FINGERPRINT: usize = 128;
/// Furthest an accepted risk may be accepted until.
const MAX_ACCEPTED: i64 = 366 * 24 * 3600 * 1_000_000;

/// An asset name: 1-64 letters, digits, '.', '_' and '-', not a UUID (ids and names share
/// the `asset` field of the requests).
fn name(field: &str, name: &str) -> Result<String, Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && uuid::Uuid::parse_str(name).is_err();
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{} is not an asset name: 1-{MAX_NAME} letters, digits, '.', '_' or '-', not a UUID",
                echo(name)
            ),
        ))
    }
}

/// The asset a request names (by id or name), of `tenant`.
pub(super) async fn asset(core: &Core, tenant: &Tenant, key: &str) -> Result<AssetRecord, Error> {
    if uuid::Uuid::parse_str(key).is_err() {
        name("asset", key)?;
    }
    core.assets
        .get_asset(tenant, key)
        .await?
        .ok_or_else(|| Error::not_found("asset", key))
}

/// A set of `FindingChange` values from request field `field`.
pub(super) fn changes(field: &str, values: &[i32]) -> Result<Values, Error> {
    for (i, v) in values.iter().enumerate() {
        if !matches!(
            pb::FindingChange::try_from(*v),
            Ok(pb::FindingChange::New
                | pb::FindingChange::StillOpen
                | pb::FindingChange::Fixed
                | pb::FindingChange::Reopened)
        ) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("{v} is not a FindingChange (NEW, STILL_OPEN, FIXED, REOPENED)"),
            ));
        }
    }
    Ok(Values::of(values.iter().copied()))
}

fn triage_states(field: &str, values: &[i32]) -> Result<Values, Error> {
    for (i, v) in values.iter().enumerate() {
        if matches!(
            pb::TriageState::try_from(*v),
            Err(_) | Ok(pb::TriageState::Unspecified)
        ) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("{v} is not a TriageState"),
            ));
        }
    }
    Ok(Values::of(values.iter().copied()))
}

/// The first due time of a new (or resumed) asset at `now`: an interval runs at once when
/// created (the first scan is the baseline the next ones are compared with), a cron pattern
/// at its next match.
fn first_due(schedule: &Schedule, created_at: i64, now: i64, new: bool) -> Result<i64, Error> {
    let due = if new && matches!(schedule.when, crate::schedule::When::Every(_)) {
        Some(now)
    } else {
        schedule.next_after(now, created_at)
    };
    due.ok_or_else(|| Error::invalid("schedule.cron", "never matches a time to come"))
}

pub(super) async fn create(
    core: &Core,
    tenant: Tenant,
    req: pb::CreateAssetRequest,
) -> Result<pb::Asset, Error> {
    let name = name("name", req.name.trim())?;
    let schedule = req
        .schedule
        .as_ref()
        .ok_or_else(|| Error::invalid("schedule", "is required"))?;
    let schedule = Schedule::from_request(schedule)
        .map_err(|e| Error::invalid(format!("schedule.{}", e.field), e.reason))?;
    let (scanner, ports) = core.engine_and_ports(&req.scanner, &req.ports)?;
    // Checked now as well as at every run: an asset that could never run is refused at once.
    targets::resolve(&req.targets, &core.scope, core.max_hosts).await?;
    let max = core.schedules.max_assets_per_tenant;
    if core.assets.count_assets(&tenant).await? >= u64::from(max) {
        return Err(Error::ResourceExhausted {
            message: format!(
                "the tenant has {max} assets, its limit (scan.schedules.max_assets_per_tenant)"
            ),
            retry_after: None,
        });
    }
    let now = now_micros();
    let next_due = first_due(&schedule, now, now, true)?;
    let asset = AssetRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant,
        name,
        targets: req.targets.iter().map(|t| t.trim().to_owned()).collect(),
        ports,
        scanner: scanner.to_owned(),
        next_run: schedule.run_at(next_due),
        schedule,
        paused: req.paused,
        next_due,
        last_scan_id: None,
        runs: 0,
        skipped: 0,
        created_at: now,
        updated_at: now,
    };
    if !core.assets.insert_asset(&asset).await? {
        return Err(Error::Conflict {
            reason: "ALREADY_EXISTS",
            message: format!("the tenant has an asset named {:?} already", asset.name),
            retryable: false,
        });
    }
    tracing::info!(
        target: telemetry::AUDIT,
        event = "asset.created",
        asset = %asset.name,
        tenant = %asset.tenant,
        targets = ?asset.targets,
        schedule = ?asset.schedule.when,
        "Asset created"
    );
    Ok(asset.into())
}

pub(super) async fn list(
    core: &Core,
    tenant: &Tenant,
    req: &pb::ListAssetsRequest,
) -> Result<pb::ListAssetsResponse, Error> {
    let limit = page_size("page_size", req.page_size, PAGE)?;
    let after = match req.page_token.as_str() {
        "" => None,
        token => Some(name("page_token", token)?),
    };
    let assets = core
        .assets
        .list_assets(tenant, after.as_deref(), limit)
        .await?;
    let next_page_token = if assets.len() == limit as usize {
        assets.last().map(|a| a.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListAssetsResponse {
        assets: assets.into_iter().map(Into::into).collect(),
        next_page_token,
    })
}

pub(super) async fn set_paused(
    core: &Core,
    tenant: &Tenant,
    req: &pb::SetAssetPausedRequest,
) -> Result<pb::Asset, Error> {
    let found = asset(core, tenant, &req.asset).await?;
    let now = now_micros();
    // Resumed: the next due time after now (those missed while paused were never wanted).
    let next_due = if req.paused {
        found.next_due
    } else {
        first_due(&found.schedule, found.created_at, now, false)?
    };
    let updated = core
        .assets
        .set_paused(
            tenant,
            &found.id,
            req.paused,
            next_due,
            found.schedule.run_at(next_due),
            now,
        )
        .await?
        .ok_or_else(|| Error::not_found("asset", req.asset.as_str()))?;
    tracing::info!(
        target: telemetry::AUDIT,
        event = if req.paused { "asset.paused" } else { "asset.resumed" },
        asset = %updated.name,
        tenant = %tenant,
        "Asset schedule {}",
        if req.paused { "paused" } else { "resumed" }
    );
    Ok(updated.into())
}

pub(super) async fn delete(core: &Core, tenant: &Tenant, key: &str) -> Result<(), Error> {
    let found = match asset(core, tenant, key).await {
        Ok(found) => found,
        // Deleting what is gone is done.
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if core.assets.delete_asset(tenant, &found.id).await? {
        tracing::info!(
            target: telemetry::AUDIT,
            event = "asset.deleted",
            asset = %found.name,
            tenant = %tenant,
            "Asset deleted"
        );
    }
    Ok(())
}

/// A fingerprint as a request gives it.
fn fingerprint(field: &str, fp: &str) -> Result<String, Error> {
    if fp.is_empty() || fp.len() > MAX_FINGERPRINT || !fp.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            field,
            format!("{} is not a finding's fingerprint", echo(fp)),
        ));
    }
    Ok(fp.to_owned())
}

pub(super) async fn list_findings(
    core: &Core,
    tenant: &Tenant,
    req: &pb::ListAssetFindingsRequest,
) -> Result<pb::ListAssetFindingsResponse, Error> {
    let limit = page_size("page_size", req.page_size, PAGE)?;
    let changes = changes("changes", &req.changes)?;
    let triage = triage_states("triage", &req.triage)?;
    let after = match req.page_token.as_str() {
        "" => None,
        token => Some(fingerprint("page_token", token)?),
    };
    let found = asset(core, tenant, &req.asset).await?;
    let findings = core
        .assets
        .list_asset_findings(tenant, &found.id, changes, triage, after.as_deref(), limit)
        .await?;
    let next_page_token = if findings.len() == limit as usize {
        findings
            .last()
            .map(|f| f.finding.fingerprint.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(pb::ListAssetFindingsResponse {
        findings: findings.into_iter().map(Into::into).collect(),
        next_page_token,
    })
}

pub(super) async fn set_triage(
    core: &Core,
    tenant: &Tenant,
    principal: String,
    req: &pb::SetTriageRequest,
) -> Result<pb::AssetFinding, Error> {
    let fp = fingerprint("fingerprint", &req.fingerprint)?;
    let state = match pb::TriageState::try_from(req.state) {
        Ok(pb::TriageState::Unspecified) | Err(_) => {
            return Err(Error::invalid(
                "state",
                "must be OPEN, ACKNOWLEDGED, FALSE_POSITIVE, ACCEPTED_RISK or FIXED",
            ));
        }
        Ok(state) => state,
    };
    let reason = req.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(Error::invalid(
            "reason",
            format!("is required: 1-{MAX_REASON} printable characters"),
        ));
    }
    let now = now_micros();
    let accepted_until = match (state, req.accepted_until.as_ref()) {
        (pb::TriageState::AcceptedRisk, None) => {
            return Err(Error::invalid(
                "accepted_until",
                "is required with ACCEPTED_RISK: when the risk stops being accepted",
            ));
        }
        (pb::TriageState::AcceptedRisk, Some(until)) => {
            // Checked: a hostile timestamp (seconds near i64::MAX) must not overflow.
            let until = until
                .seconds
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(i64::from(until.nanos / 1000)))
                .unwrap_or(i64::MAX);
            if until <= now || until - now > MAX_ACCEPTED {
                return Err(Error::invalid(
                    "accepted_until",
                    "must be in the future, at most 366 days away",
                ));
            }
            until
        }
        (_, Some(_)) => {
            return Err(Error::invalid(
                "accepted_until",
                "is only for ACCEPTED_RISK",
            ));
        }
        (_, None) => 0,
    };
    let found = asset(core, tenant, &req.asset).await?;
    let triage = Triage {
        state,
        reason: reason.to_owned(),
        principal,
        at: now,
        accepted_until,
    };
    let event = uuid::Uuid::now_v7().to_string();
    let updated = core
        .assets
        .set_triage(tenant, &found.id, &fp, &triage, &event)
        .await?
        .ok_or_else(|| Error::not_found("finding", fp.as_str()))?;
    tracing::info!(
        target: telemetry::AUDIT,
        event = "finding.triaged",
        asset = %found.name,
        tenant = %tenant,
        fingerprint = %fp,
        state = state.as_str_name(),
        principal = %triage.principal,
        "Finding triaged"
    );
    Ok(updated.into())
}

/// Most ports, services in a rule; longest service name and text.
const RULE_LIST: usize = 256;
const MAX_SERVICE: usize = 64;
const MAX_TEXT: usize = 256;

pub(super) async fn create_rule(
    core: &Core,
    tenant: Tenant,
    req: pb::CreateAlertRuleRequest,
) -> Result<pb::AlertRule, Error> {
    let rule = req
        .rule
        .ok_or_else(|| Error::invalid("rule", "is required"))?;
    let name = name("rule.name", rule.name.trim())?;
    let min_severity = match pb::Severity::try_from(rule.min_severity) {
        Ok(s) => phantom_domain::Severity::from(s),
        Err(_) => return Err(Error::invalid("rule.min_severity", "is not a Severity")),
    };
    if rule.ports.len() > RULE_LIST {
        return Err(Error::invalid(
            "rule.ports",
            format!("at most {RULE_LIST} ports"),
        ));
    }
    let mut ports = Vec::with_capacity(rule.ports.len());
    for (i, p) in rule.ports.iter().enumerate() {
        match u16::try_from(*p) {
            Ok(p) if p > 0 => ports.push(p),
            _ => {
                return Err(Error::invalid(
                    format!("rule.ports[{i}]"),
                    format!("{p} is not a port (1-65535)"),
                ));
            }
        }
    }
    if rule.services.len() > RULE_LIST {
        return Err(Error::invalid(
            "rule.services",
            format!("at most {RULE_LIST} services"),
        ));
    }
    let mut services = Vec::with_capacity(rule.services.len());
    for (i, s) in rule.services.iter().enumerate() {
        let s = s.trim();
        if s.is_empty()
            || s.len() > MAX_SERVICE
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return Err(Error::invalid(
                format!("rule.services[{i}]"),
                format!("{} is not a service name", echo(s)),
            ));
        }
        services.push(s.to_ascii_lowercase());
    }
    let text = rule.text.trim();
    if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(Error::invalid(
            "rule.text",
            format!("at most {MAX_TEXT} printable characters"),
        ));
    }
    for (i, c) in rule.changes.iter().enumerate() {
        if !matches!(
            pb::FindingChange::try_from(*c),
            Ok(pb::FindingChange::New | pb::FindingChange::Reopened)
        ) {
            return Err(Error::invalid(
                format!("rule.changes[{i}]"),
                "a rule fires on NEW or REOPENED findings",
            ));
        }
    }
    let changes = if rule.changes.is_empty() {
        Values::of([
            pb::FindingChange::New as i32,
            pb::FindingChange::Reopened as i32,
        ])
    } else {
        Values::of(rule.changes.iter().copied())
    };
    let max = core.schedules.max_alert_rules_per_tenant;
    if core.alerts.rules(&tenant).await?.len() >= max as usize {
        return Err(Error::ResourceExhausted {
            message: format!(
                "the tenant has {max} alert rules, its limit (scan.schedules.max_alert_rules_per_tenant)"
            ),
            retry_after: None,
        });
    }
    let record = AlertRuleRecord {
        id: uuid::Uuid::now_v7().to_string(),
        tenant,
        name,
        min_severity,
        ports,
        services,
        text: text.to_lowercase(),
        changes,
        created_at: now_micros(),
    };
    if !core.alerts.insert_rule(&record).await? {
        return Err(Error::Conflict {
            reason: "ALREADY_EXISTS",
            message: format!(
                "the tenant has an alert rule named {:?} already",
                record.name
            ),
            retryable: false,
        });
    }
    tracing::info!(
        target: telemetry::AUDIT,
        event = "alert_rule.created",
        rule = %record.name,
        tenant = %record.tenant,
        "Alert rule created"
    );
    Ok(record.into())
}

pub(super) async fn delete_rule(core: &Core, tenant: &Tenant, key: &str) -> Result<(), Error> {
    if uuid::Uuid::parse_str(key).is_err() {
        name("rule", key)?;
    }
    if core.alerts.delete_rule(tenant, key).await? {
        tracing::info!(
            target: telemetry::AUDIT,
            event = "alert_rule.deleted",
            rule = %key,
            tenant = %tenant,
            "Alert rule deleted"
        );
    }
    Ok(())
}
