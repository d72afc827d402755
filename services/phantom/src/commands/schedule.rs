//! `phantom schedule`: assets scanned on a schedule, their findings across scans, and triage.

use std::{process::ExitCode, time::Duration};

use clap::{Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};

use super::{
    Output, connect, diff::change_name, exit_for, print_status, remote::Credentials, rfc3339,
    terminal::inert, watch::MinSeverity,
};

/// What a missed due time does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Missed {
    /// Run once, as soon as possible.
    RunOnce,
    /// Skip to the next due time.
    Skip,
}

/// A finding's change, for filters.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Change {
    /// Never seen on the asset before.
    New,
    /// Seen by the previous scan too.
    StillOpen,
    /// Gone in the latest scan.
    Fixed,
    /// Back after a fix.
    Reopened,
}

impl Change {
    fn wire(self) -> pb::FindingChange {
        match self {
            Change::New => pb::FindingChange::New,
            Change::StillOpen => pb::FindingChange::StillOpen,
            Change::Fixed => pb::FindingChange::Fixed,
            Change::Reopened => pb::FindingChange::Reopened,
        }
    }
}

/// A triage state.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TriageState {
    /// Not looked at yet, or reopened.
    Open,
    /// Seen and being handled.
    Acknowledged,
    /// Not a real issue.
    FalsePositive,
    /// Accepted until `--until`.
    AcceptedRisk,
    /// Said to be fixed.
    Fixed,
}

impl TriageState {
    fn wire(self) -> pb::TriageState {
        match self {
            TriageState::Open => pb::TriageState::Open,
            TriageState::Acknowledged => pb::TriageState::Acknowledged,
            TriageState::FalsePositive => pb::TriageState::FalsePositive,
            TriageState::AcceptedRisk => pb::TriageState::AcceptedRisk,
            TriageState::Fixed => pb::TriageState::Fixed,
        }
    }
}

/// `phantom schedule alert <action>`.
#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// Create a rule: matching new or reopened findings of the tenant's assets are published
    /// to the notifier's `system/alerts` room (and the webhooks that follow it), once each.
    Create {
        /// The rule's name.
        name: String,
        /// Only findings at this severity or above.
        #[arg(long, value_enum, default_value_t = MinSeverity::High)]
        min_severity: MinSeverity,
        /// Only these ports ("22,3389").
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u32>,
        /// Only these services ("ssh,rdp").
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
        /// Only findings whose title, service, banner, check or CVEs contain this text.
        #[arg(long)]
        text: Option<String>,
        /// On these changes ("new", "reopened"; default both).
        #[arg(long, value_enum, value_delimiter = ',')]
        on: Vec<Change>,
    },
    /// List the rules.
    List,
    /// Delete a rule.
    Delete {
        /// The rule's name or id.
        rule: String,
    },
}

/// `phantom schedule <action>`.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create an asset: a named set of targets scanned on a schedule.
    Create {
        /// The asset's name (letters, digits, '.', '_', '-').
        name: String,
        /// Targets: addresses, CIDR blocks or hostnames.
        #[arg(required = true)]
        targets: Vec<String>,
        /// Ports: "22,80,443,8000-8100". Default: the server's default list.
        #[arg(long, short)]
        ports: Option<String>,
        /// Engine: builtin, nmap or nuclei.
        #[arg(long, short, default_value = "builtin")]
        scanner: String,
        /// A cron pattern ("0 3 * * *"; six fields for seconds; @daily...).
        #[arg(long, conflicts_with = "every", required_unless_present = "every")]
        cron: Option<String>,
        /// The time zone the cron pattern is read in ("Europe/Paris"). Default: UTC.
        #[arg(long = "tz", requires = "cron")]
        time_zone: Option<String>,
        /// A fixed interval instead ("6h", "30m"); the first scan runs at once.
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<Duration>,
        /// Start each run up to this much after its due time, at random ("5m").
        #[arg(long, value_parser = humantime::parse_duration)]
        jitter: Option<Duration>,
        /// What a missed due time does.
        #[arg(long, value_enum, default_value_t = Missed::RunOnce)]
        missed: Missed,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// List the assets.
    List,
    /// Pause an asset's schedule.
    Pause {
        /// The asset's name or id.
        asset: String,
    },
    /// Resume an asset's schedule at its next due time.
    Resume {
        /// The asset's name or id.
        asset: String,
    },
    /// Delete an asset, its findings' history and triage (its scans are kept).
    Delete {
        /// The asset's name or id.
        asset: String,
    },
    /// An asset's findings across its scans.
    Findings {
        /// The asset's name or id.
        asset: String,
        /// Only these latest changes ("new,reopened").
        #[arg(long, value_enum, value_delimiter = ',')]
        change: Vec<Change>,
        /// Only these triage states ("open,acknowledged").
        #[arg(long, value_enum, value_delimiter = ',')]
        triage: Vec<TriageState>,
    },
    /// Set the triage of one of an asset's findings (the reason and who set it are kept; it
    /// carries over to later scans).
    Triage {
        /// The asset's name or id.
        asset: String,
        /// The finding's fingerprint (`phantom schedule findings`).
        fingerprint: String,
        /// The new state.
        #[arg(value_enum)]
        state: TriageState,
        /// Why.
        #[arg(long, required = true)]
        reason: String,
        /// With accepted-risk: how long the risk is accepted ("90d"); it reopens then.
        #[arg(long, value_parser = humantime::parse_duration)]
        until: Option<Duration>,
    },
    /// Alert rules on new and reopened findings.
    #[command(subcommand)]
    Alert(AlertAction),
}

fn duration(d: Option<Duration>) -> Option<prost_types::Duration> {
    d.and_then(|d| prost_types::Duration::try_from(d).ok())
}

/// Runs `action` against the scan-orchestrator at `addr`.
pub async fn run(
    addr: &str,
    credentials: &Credentials,
    action: Action,
    output: Output,
) -> ExitCode {
    let channel = match connect(addr, credentials).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut client = ScanOrchestratorClient::new(channel);
    let result = match action {
        Action::Create {
            name,
            targets,
            ports,
            scanner,
            cron,
            time_zone,
            every,
            jitter,
            missed,
            paused,
        } => client
            .create_asset(pb::CreateAssetRequest {
                name,
                targets,
                ports: ports.unwrap_or_default(),
                scanner,
                schedule: Some(pb::Schedule {
                    cron: cron.unwrap_or_default(),
                    time_zone: time_zone.unwrap_or_default(),
                    every: duration(every),
                    jitter: duration(jitter),
                    missed: match missed {
                        Missed::RunOnce => pb::MissedRuns::RunOnce,
                        Missed::Skip => pb::MissedRuns::Skip,
                    }
                    .into(),
                }),
                paused,
            })
            .await
            .map(|r| assets(&[r.into_inner()], output)),
        Action::List => list(&mut client).await.map(|a| assets(&a, output)),
        action @ (Action::Pause { .. } | Action::Resume { .. }) => {
            let (asset, paused) = match action {
                Action::Pause { asset } => (asset, true),
                Action::Resume { asset } => (asset, false),
                _ => unreachable!("matched as pause or resume"),
            };
            client
                .set_asset_paused(pb::SetAssetPausedRequest { asset, paused })
                .await
                .map(|r| assets(&[r.into_inner()], output))
        }
        Action::Alert(AlertAction::Create {
            name,
            min_severity,
            ports,
            services,
            text,
            on,
        }) => client
            .create_alert_rule(pb::CreateAlertRuleRequest {
                rule: Some(pb::AlertRule {
                    name,
                    min_severity: pb::Severity::from(min_severity).into(),
                    ports,
                    services,
                    text: text.unwrap_or_default(),
                    changes: on.iter().map(|c| c.wire() as i32).collect(),
                    ..Default::default()
                }),
            })
            .await
            .map(|r| rules(&[r.into_inner()], output)),
        Action::Alert(AlertAction::List) => client
            .list_alert_rules(pb::ListAlertRulesRequest {})
            .await
            .map(|r| rules(&r.into_inner().rules, output)),
        Action::Alert(AlertAction::Delete { rule }) => client
            .delete_alert_rule(pb::DeleteAlertRuleRequest { rule: rule.clone() })
            .await
            .map(|_| format!("alert rule {} deleted", inert(&rule))),
        Action::Delete { asset } => client
            .delete_asset(pb::DeleteAssetRequest {
                asset: asset.clone(),
            })
            .await
            .map(|_| format!("asset {} deleted", inert(&asset))),
        Action::Findings {
            asset,
            change,
            triage,
        } => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                match client
                    .list_asset_findings(pb::ListAssetFindingsRequest {
                        asset: asset.clone(),
                        changes: change.iter().map(|c| c.wire() as i32).collect(),
                        triage: triage.iter().map(|t| t.wire() as i32).collect(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await
                {
                    Ok(page) => {
                        let page = page.into_inner();
                        all.extend(page.findings);
                        if page.next_page_token.is_empty() {
                            break Ok(findings(&all, output));
                        }
                        token = page.next_page_token;
                    }
                    Err(status) => break Err(status),
                }
            }
        }
        Action::Triage {
            asset,
            fingerprint,
            state,
            reason,
            until,
        } => {
            let accepted_until =
                until.map(|d| prost_types::Timestamp::from(std::time::SystemTime::now() + d));
            client
                .set_triage(pb::SetTriageRequest {
                    asset,
                    fingerprint,
                    state: state.wire().into(),
                    reason,
                    accepted_until,
                })
                .await
                .map(|r| findings(&[r.into_inner()], output))
        }
    };
    match result {
        Ok(text) => {
            // JSON lines: nothing at all for an empty list.
            if !text.is_empty() {
                super::outln!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(status) => {
            print_status("ScanOrchestrator", &status);
            exit_for(&status)
        }
    }
}

async fn list(
    client: &mut ScanOrchestratorClient<super::remote::RemoteChannel>,
) -> Result<Vec<pb::Asset>, tonic::Status> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_assets(pb::ListAssetsRequest {
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        all.extend(page.assets);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

fn when(s: Option<&pb::Schedule>) -> String {
    let Some(s) = s else { return String::new() };
    let mut out = if s.cron.is_empty() {
        s.every
            .and_then(|d| Duration::try_from(d).ok())
            .map(|d| format!("every {}", humantime::format_duration(d)))
            .unwrap_or_default()
    } else {
        let zone = if s.time_zone.is_empty() {
            "UTC"
        } else {
            &s.time_zone
        };
        format!("{} ({zone})", s.cron)
    };
    if let Some(j) = s.jitter.and_then(|d| Duration::try_from(d).ok()) {
        out.push_str(&format!(" ±{}", humantime::format_duration(j)));
    }
    if s.missed() == pb::MissedRuns::Skip {
        out.push_str(", missed: skip");
    }
    out
}

fn assets(list: &[pb::Asset], output: Output) -> String {
    match output {
        Output::Json | Output::Csv | Output::Sarif => list
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id,
                    "name": a.name,
                    "targets": a.targets,
                    "ports": a.ports,
                    "scanner": a.scanner,
                    "schedule": when(a.schedule.as_ref()),
                    "paused": a.paused,
                    "next_run_at": rfc3339(a.next_run_at.as_ref()),
                    "last_scan_id": a.last_scan_id,
                    "runs": a.runs,
                    "skipped": a.skipped,
                })
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Output::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header([
                "NAME",
                "TARGETS",
                "PORTS",
                "SCHEDULE",
                "NEXT RUN",
                "RUNS",
                "LAST SCAN",
            ]);
            for a in list {
                table.add_row([
                    inert(&a.name).into_owned(),
                    inert(&a.targets.join(" ")).into_owned(),
                    inert(&a.ports).into_owned(),
                    when(a.schedule.as_ref()),
                    if a.paused {
                        "paused".to_owned()
                    } else {
                        rfc3339(a.next_run_at.as_ref())
                    },
                    format!("{} ({} skipped)", a.runs, a.skipped),
                    a.last_scan_id.clone(),
                ]);
            }
            table.to_string()
        }
    }
}

fn rules(list: &[pb::AlertRule], output: Output) -> String {
    let on = |r: &pb::AlertRule| r.changes().map(change_name).collect::<Vec<_>>().join(",");
    let severity = |r: &pb::AlertRule| {
        r.min_severity()
            .as_str_name()
            .trim_start_matches("SEVERITY_")
            .to_owned()
    };
    match output {
        Output::Json | Output::Csv | Output::Sarif => list
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "name": r.name,
                    "min_severity": severity(r),
                    "ports": r.ports,
                    "services": r.services,
                    "text": r.text,
                    "on": on(r),
                })
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Output::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(["NAME", "MIN SEVERITY", "PORTS", "SERVICES", "TEXT", "ON"]);
            for r in list {
                table.add_row([
                    inert(&r.name).into_owned(),
                    severity(r),
                    r.ports
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    inert(&r.services.join(",")).into_owned(),
                    inert(&r.text).into_owned(),
                    on(r),
                ]);
            }
            table.to_string()
        }
    }
}

fn triage_name(t: pb::TriageState) -> &'static str {
    match t {
        pb::TriageState::Open => "open",
        pb::TriageState::Acknowledged => "acknowledged",
        pb::TriageState::FalsePositive => "false positive",
        pb::TriageState::AcceptedRisk => "accepted risk",
        pb::TriageState::Fixed => "fixed",
        pb::TriageState::Unspecified => "",
    }
}

fn findings(list: &[pb::AssetFinding], output: Output) -> String {
    match output {
        Output::Json | Output::Csv | Output::Sarif => list
            .iter()
            .map(|f| {
                let finding = f.finding.clone().unwrap_or_default();
                let triage = f.triage.clone().unwrap_or_default();
                serde_json::json!({
                    "fingerprint": f.fingerprint,
                    "target": finding.target,
                    "port": finding.port,
                    "title": finding.title,
                    "severity": finding.severity().as_str_name().trim_start_matches("SEVERITY_"),
                    "present": f.present,
                    "change": change_name(f.change()),
                    "first_seen": rfc3339(f.first_seen.as_ref()),
                    "last_seen": rfc3339(f.last_seen.as_ref()),
                    "times_seen": f.times_seen,
                    "reopened": f.reopened,
                    "triage": triage_name(triage.state()),
                    "triage_reason": triage.reason,
                    "triage_by": triage.principal,
                    "accepted_until": rfc3339(triage.accepted_until.as_ref()),
                })
                .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Output::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header([
                "FINGERPRINT",
                "ENDPOINT",
                "TITLE",
                "SEVERITY",
                "CHANGE",
                "SEEN",
                "TRIAGE",
            ]);
            for f in list {
                let finding = f.finding.clone().unwrap_or_default();
                let triage = f.triage.clone().unwrap_or_default();
                table.add_row([
                    inert(&f.fingerprint).into_owned(),
                    format!("{}:{}", inert(&finding.target), finding.port),
                    inert(&finding.title).into_owned(),
                    finding
                        .severity()
                        .as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_owned(),
                    change_name(f.change()).to_owned(),
                    format!("{}× since {}", f.times_seen, rfc3339(f.first_seen.as_ref())),
                    if triage.reason.is_empty() {
                        triage_name(triage.state()).to_owned()
                    } else {
                        format!(
                            "{} ({}: {})",
                            triage_name(triage.state()),
                            inert(&triage.principal),
                            inert(&triage.reason)
                        )
                    },
                ]);
            }
            table.to_string()
        }
    }
}
