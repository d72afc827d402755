//! `phantom health`.

use std::process::ExitCode;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use phantom_health_aggregator::{checks::status_name, http::health_json};
use phantom_proto::pb::{self, health_aggregator_client::HealthAggregatorClient};

use super::Output;
use super::{connect, exit_for, print_status, terminal::inert};

/// Prints the system's health; exit status 1 when it is unhealthy.
pub async fn run(addr: &str, credentials: &super::remote::Credentials, output: Output) -> ExitCode {
    let channel = match connect(addr, credentials).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match HealthAggregatorClient::new(channel)
        .get_system_health(pb::GetSystemHealthRequest {})
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => {
            print_status("GetSystemHealth", &status);
            return exit_for(&status);
        }
    };
    match output {
        // CSV and SARIF describe findings; a health report is JSON.
        Output::Json | Output::Csv | Output::Sarif => super::outln!(
            "{}",
            serde_json::to_string_pretty(&health_json(&report)).expect("json")
        ),
        Output::Table => super::outln!("{}", table(&report)),
    }
    if report.status == pb::HealthStatus::Unhealthy as i32 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The report as a table, after a summary line.
fn table(report: &pb::SystemHealth) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "COMPONENT",
        "STATUS",
        "CRITICAL",
        "TIME (ms)",
        "ENDPOINT",
        "MESSAGE",
    ]);
    for c in &report.checks {
        table.add_row([
            inert(&c.name).into_owned(),
            status_name(c.status).to_owned(),
            if c.critical { "yes" } else { "no" }.to_owned(),
            format!("{:.1}", c.response_time_ms),
            inert(&c.endpoint).into_owned(),
            inert(&c.message).into_owned(),
        ]);
    }
    format!(
        "System: {} ({}/{} checks passed)\n{table}",
        status_name(report.status).to_uppercase(),
        report.successful_checks,
        report.total_checks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_tables_are_inert_on_a_terminal() {
        let report = pb::SystemHealth {
            checks: vec![pb::ComponentHealth {
                name: "llm".into(),
                endpoint: "http://llm\u{202e}:8000".into(),
                message: "HTTP 500: \u{1b}]0;owned\u{7}\u{1b}[2J".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = table(&report);
        assert_eq!(
            crate::commands::terminal_hazards(&text),
            Vec::<char>::new(),
            "{text}"
        );
    }
}
