//! Log set-up: structured events, as text for terminals or JSON for collectors.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber. Calling it again (tests) is harmless.
///
/// Logs go to stderr: stdout belongs to what the user asked for (`phantom up`'s summary,
/// `phantom scan --output json`).
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}
