//! `phantom scan diff A B`: what changed from scan A to scan B, by fingerprint.

use std::{collections::HashMap, process::ExitCode};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use phantom_proto::pb::{self, FindingChange, scan_orchestrator_client::ScanOrchestratorClient};

use super::{Output, connect, exit_for, print_status, remote::Credentials, scan, terminal::inert};

/// B's findings marked NEW (not in A) or STILL_OPEN (in both), then A's findings B no
/// longer has, marked FIXED, in that order.
pub fn compare(a: &[pb::Finding], b: &[pb::Finding]) -> Vec<pb::Finding> {
    let before: HashMap<&str, &pb::Finding> =
        a.iter().map(|f| (f.fingerprint.as_str(), f)).collect();
    let after: HashMap<&str, &pb::Finding> =
        b.iter().map(|f| (f.fingerprint.as_str(), f)).collect();
    let mut out: Vec<pb::Finding> = b
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f.set_change(if before.contains_key(f.fingerprint.as_str()) {
                FindingChange::StillOpen
            } else {
                FindingChange::New
            });
            f
        })
        .collect();
    out.extend(
        a.iter()
            .filter(|f| !after.contains_key(f.fingerprint.as_str()))
            .map(|f| {
                let mut f = f.clone();
                f.set_change(FindingChange::Fixed);
                f
            }),
    );
    out
}

/// How `phantom` prints a change (empty when not compared).
pub(crate) fn change_name(c: FindingChange) -> &'static str {
    match c {
        FindingChange::New => "new",
        FindingChange::StillOpen => "still open",
        FindingChange::Fixed => "fixed",
        FindingChange::Reopened => "reopened",
        FindingChange::Unspecified => "",
    }
}

/// Prints what changed from scan `a` to scan `b`.
pub async fn run(
    addr: &str,
    credentials: &Credentials,
    a: &str,
    b: &str,
    output: Output,
) -> ExitCode {
    let channel = match connect(addr, credentials).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut client = ScanOrchestratorClient::new(channel);
    let scan_b = match client
        .get_scan(pb::GetScanRequest { id: b.to_owned() })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => {
            print_status("GetScan", &status);
            return exit_for(&status);
        }
    };
    let (found_a, found_b) = match (
        scan::all_findings(&mut client, a).await,
        scan::all_findings(&mut client, b).await,
    ) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(status), _) | (_, Err(status)) => {
            print_status("ListFindings", &status);
            return exit_for(&status);
        }
    };
    let diff = compare(&found_a, &found_b);
    match output {
        Output::Sarif => super::outln!(
            "{}",
            serde_json::to_string_pretty(&scan::sarif(&scan_b, &diff)).expect("json")
        ),
        Output::Json | Output::Csv => {
            for f in &diff {
                super::outln!(
                    "{}",
                    serde_json::json!({
                        "change": change_name(f.change()),
                        "fingerprint": f.fingerprint,
                        "target": f.target,
                        "port": f.port,
                        "title": f.title,
                        "severity": f.severity().as_str_name().trim_start_matches("SEVERITY_"),
                    })
                );
            }
        }
        Output::Table => {
            let count = |c| diff.iter().filter(|f| f.change() == c).count();
            super::outln!(
                "{} new, {} fixed, {} still open",
                count(FindingChange::New),
                count(FindingChange::Fixed),
                count(FindingChange::StillOpen)
            );
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(["CHANGE", "ENDPOINT", "TITLE", "SEVERITY"]);
            for f in diff
                .iter()
                .filter(|f| f.change() != FindingChange::StillOpen)
            {
                table.add_row([
                    change_name(f.change()).to_owned(),
                    format!("{}:{}", inert(&f.target), f.port),
                    inert(&f.title).into_owned(),
                    f.severity()
                        .as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_owned(),
                ]);
            }
            super::outln!("{table}");
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fp: &str) -> pb::Finding {
        pb::Finding {
            fingerprint: fp.into(),
            ..Default::default()
        }
    }

    #[test]
    fn findings_are_new_still_open_or_fixed_by_fingerprint() {
        let got: Vec<(String, FindingChange)> = compare(&[f("a"), f("b")], &[f("b"), f("c")])
            .into_iter()
            .map(|x| (x.fingerprint.clone(), x.change()))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_owned(), FindingChange::StillOpen),
                ("c".to_owned(), FindingChange::New),
                ("a".to_owned(), FindingChange::Fixed),
            ]
        );
        assert!(
            compare(&[f("a")], &[f("a")])
                .iter()
                .all(|x| x.change() == FindingChange::StillOpen)
        );
    }
}
