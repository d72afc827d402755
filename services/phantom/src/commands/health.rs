//! `phantom health`.

use std::process::ExitCode;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use phantom_health_aggregator::{checks::status_name, http::health_json};
use phantom_proto::pb::{self, health_aggregator_client::HealthAggregatorClient};

use super::{connect, exit_for, print_status};
use crate::cli::Output;

/// Prints the system's health; exit status 1 when it is unhealthy.
pub async fn run(addr: &str, output: Output) -> ExitCode {
    let channel = match connect(addr).await {
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
        Output::Table => {
            super::outln!(
                "System: {} ({}/{} checks passed)",
                status_name(report.status).to_uppercase(),
                report.successful_checks,
                report.total_checks
            );
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
                    c.name.clone(),
                    status_name(c.status).to_owned(),
                    if c.critical { "yes" } else { "no" }.to_owned(),
                    format!("{:.1}", c.response_time_ms),
                    c.endpoint.clone(),
                    c.message.clone(),
                ]);
            }
            super::outln!("{table}");
        }
    }
    if report.status == pb::HealthStatus::Unhealthy as i32 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
