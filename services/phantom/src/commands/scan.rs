//! `phantom scan`.

use std::{process::ExitCode, time::Duration};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::{connect, exit_for, print_status, rfc3339};
use crate::cli::Output;

/// What to scan.
#[derive(Debug)]
pub struct Args {
    /// scan-orchestrator URL.
    pub addr: String,
    /// Targets.
    pub targets: Vec<String>,
    /// Port specification ("" for the server's default).
    pub ports: String,
    /// Engine.
    pub scanner: String,
    /// Idempotency key ("" for none).
    pub idempotency_key: String,
    /// Follow the scan to its end.
    pub wait: bool,
    /// Output format.
    pub output: Output,
}

fn state_name(state: i32) -> &'static str {
    pb::ScanState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("SCAN_STATE_"))
        .unwrap_or("UNKNOWN")
}

fn severity_name(severity: i32) -> &'static str {
    pb::Severity::try_from(severity)
        .map(|s| s.as_str_name().trim_start_matches("SEVERITY_"))
        .unwrap_or("UNKNOWN")
}

/// Submits a scan, follows it, prints its findings.
pub async fn run(args: Args) -> ExitCode {
    let channel = match connect(&args.addr).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut client = ScanOrchestratorClient::new(channel);
    let request = pb::CreateScanRequest {
        targets: args.targets.clone(),
        ports: args.ports.clone(),
        scanner: args.scanner.clone(),
        idempotency_key: args.idempotency_key.clone(),
    };
    let mut scan = match client.create_scan(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            print_status("CreateScan", &status);
            return exit_for(&status);
        }
    };
    if args.wait {
        match follow(&mut client, &scan, args.output).await {
            Ok(done) => scan = done,
            Err(status) => {
                print_status("WatchScan", &status);
                return exit_for(&status);
            }
        }
    }
    let findings = match all_findings(&mut client, &scan.id).await {
        Ok(f) => f,
        Err(status) => {
            print_status("ListFindings", &status);
            return exit_for(&status);
        }
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "scan": scan_json(&scan),
                "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
            }))
            .expect("json")
        ),
        Output::Table => print_table(&scan, &findings),
    }
    match pb::ScanState::try_from(scan.state) {
        Ok(pb::ScanState::Failed) => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Follows the scan's events with a progress bar until it reaches a final state.
async fn follow(
    client: &mut ScanOrchestratorClient<Channel>,
    scan: &pb::Scan,
    output: Output,
) -> Result<pb::Scan, tonic::Status> {
    let bar = if output == Output::Table {
        ProgressBar::new(100)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40}] {pos:>3}% {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last = scan.clone();
    let mut stream = client
        .watch_scan(pb::WatchScanRequest {
            id: scan.id.clone(),
        })
        .await?
        .into_inner();
    while let Some(event) = stream.next().await {
        let event = event?;
        let Some(s) = event.scan else { continue };
        bar.set_position(u64::from(s.progress_percent));
        bar.set_message(format!(
            "{} · {} findings · {}",
            state_name(s.state),
            s.findings_count,
            event.message
        ));
        let done = !matches!(
            pb::ScanState::try_from(s.state),
            Ok(pb::ScanState::Pending | pb::ScanState::Running)
        );
        last = s;
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(last)
}

async fn all_findings(
    client: &mut ScanOrchestratorClient<Channel>,
    scan_id: &str,
) -> Result<Vec<pb::Finding>, tonic::Status> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_findings(pb::ListFindingsRequest {
                scan_id: scan_id.to_owned(),
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        out.extend(page.findings);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

fn print_table(scan: &pb::Scan, findings: &[pb::Finding]) {
    println!(
        "Scan {}: {} · {}% · {} findings · targets {} · ports {}",
        scan.id,
        state_name(scan.state),
        scan.progress_percent,
        scan.findings_count,
        scan.targets.join(" "),
        scan.ports
    );
    if !scan.error.is_empty() {
        println!("Error: {}", scan.error);
    }
    if findings.is_empty() {
        println!("No findings.");
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "TARGET", "PORT", "SERVICE", "SEVERITY", "SCORE", "CONF", "FINDING", "BANNER",
    ]);
    for f in findings {
        let (score, confidence) = f
            .analysis
            .as_ref()
            .map_or((f.cvss_score, String::new()), |a| {
                (a.score, a.confidence.to_string())
            });
        let banner: String = f
            .banner
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        table.add_row([
            if f.hostname.is_empty() {
                f.target.clone()
            } else {
                format!("{} ({})", f.hostname, f.target)
            },
            format!("{}/{}", f.port, f.protocol),
            f.service.clone(),
            severity_name(f.severity).to_owned(),
            format!("{score:.1}"),
            confidence,
            f.analysis
                .as_ref()
                .map_or_else(|| f.title.clone(), |a| a.summary.clone()),
            banner,
        ]);
    }
    println!("{table}");
}

fn scan_json(s: &pb::Scan) -> Value {
    json!({
        "id": s.id,
        "state": state_name(s.state),
        "targets": s.targets,
        "ports": s.ports,
        "scanner": s.scanner,
        "progress_percent": s.progress_percent,
        "findings_count": s.findings_count,
        "probes_total": s.probes_total,
        "probes_done": s.probes_done,
        "created_at": rfc3339(s.created_at.as_ref()),
        "started_at": rfc3339(s.started_at.as_ref()),
        "finished_at": rfc3339(s.finished_at.as_ref()),
        "error": s.error,
        "idempotency_key": s.idempotency_key,
    })
}

fn finding_json(f: &pb::Finding) -> Value {
    json!({
        "id": f.id,
        "target": f.target,
        "hostname": f.hostname,
        "port": f.port,
        "protocol": f.protocol,
        "service": f.service,
        "banner": f.banner,
        "engine": f.engine,
        "check_id": f.check_id,
        "title": f.title,
        "severity": severity_name(f.severity),
        "cvss_score": f.cvss_score,
        "fingerprint": f.fingerprint,
        "analysis": f.analysis.as_ref().map(|a| json!({
            "score": a.score,
            "severity": severity_name(a.severity),
            "analyzer": a.analyzer,
            "confidence": a.confidence,
            "summary": a.summary,
            "remediation": a.remediation,
            "degraded": a.degraded,
        })),
    })
}
