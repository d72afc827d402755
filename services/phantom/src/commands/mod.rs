//! Client commands: they talk to a running system over its public gRPC API, except
//! [`migrate`] and [`auth`], which talk to the database.

pub mod auth;
pub mod diff;
pub mod health;
pub mod migrate;
pub mod remote;
pub mod scan;
pub mod schedule;
pub(crate) mod terminal;
pub mod watch;

/// Output format of client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table for humans.
    Table,
    /// JSON for scripts.
    Json,
    /// CSV, one finding per row (`scan` only).
    Csv,
    /// SARIF 2.1.0 for code-scanning dashboards (`scan` only).
    Sarif,
}

/// `println!` that tolerates a closed stdout (`phantom scan … | head`): a reader that went
/// away is not an error worth a panic. What it prints is made inert for a terminal
/// ([`terminal::inert_lines`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            $crate::commands::terminal::inert_lines(&text)
        );
    }};
}
pub(crate) use outln;

/// `eprintln!`, made inert for a terminal ([`terminal::inert_lines`]).
macro_rules! errln {
    ($($arg:tt)*) => {{
        let text = format!($($arg)*);
        eprintln!("{}", $crate::commands::terminal::inert_lines(&text));
    }};
}
pub(crate) use errln;

use terminal::inert;

use tonic_types::StatusExt;

/// Prints a failed call the way a user can act on: the code, the message, and each field
/// the server refused.
pub(crate) fn print_status(what: &str, status: &tonic::Status) {
    errln!("{}", status_text(what, status).trim_end());
}

/// What [`print_status`] prints: one line per thing the server said, each made inert.
fn status_text(what: &str, status: &tonic::Status) -> String {
    let mut out = format!(
        "phantom: {what} failed: {:?}: {}\n",
        status.code(),
        inert(status.message())
    );
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            out.push_str(&format!(
                "  {}: {}\n",
                inert(&v.field),
                inert(&v.description)
            ));
        }
    }
    if status.code() == tonic::Code::Unavailable {
        out.push_str("  is the server running? (`make run` or `phantom up`)\n");
    }
    if status.code() == tonic::Code::Unauthenticated {
        out.push_str(
            "  pass an API key with --token or PHANTOM_TOKEN (`phantom auth key create`)\n",
        );
    }
    out
}

/// Exit status for a failed call: 2 for the caller's mistakes, 1 otherwise.
pub(crate) fn exit_for(status: &tonic::Status) -> std::process::ExitCode {
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::NotFound
        | tonic::Code::PermissionDenied
        | tonic::Code::FailedPrecondition => std::process::ExitCode::from(2),
        _ => std::process::ExitCode::FAILURE,
    }
}

/// Connects to `addr` with `credentials`, or explains why it cannot.
pub(crate) async fn connect(
    addr: &str,
    credentials: &remote::Credentials,
) -> Result<remote::RemoteChannel, std::process::ExitCode> {
    let endpoint = credentials
        .endpoint(addr)?
        .connect_timeout(std::time::Duration::from_secs(5));
    let channel = credentials
        .connect(addr, &endpoint)
        .await?
        .map_err(|e| {
            errln!("phantom: cannot connect to {addr}: {e}\n  is the server running? (`make run` or `phantom up`)");
            std::process::ExitCode::FAILURE
        })?;
    credentials.wrap(addr, channel)
}

/// RFC 3339 text of a protobuf timestamp.
pub(crate) fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|ts| {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                ts.seconds.max(0).unsigned_abs(),
                ts.nanos.max(0).unsigned_abs(),
            );
        humantime::format_rfc3339_seconds(t).to_string()
    })
    .unwrap_or_default()
}

/// What a terminal would act on in `text` rather than show: C0 controls (but the newline
/// ending a line), DEL, C1 controls, and the bidi overrides and isolates.
#[cfg(test)]
pub(crate) fn terminal_hazards(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            c != '\n'
                && matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_refusal_is_printed_inert() {
        let status = tonic::Status::invalid_argument(
            "bad target \u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H \u{202e}gnp.exe",
        );
        let text = status_text("CreateScan", &status);
        assert_eq!(terminal_hazards(&text), Vec::<char>::new(), "{text:?}");
        assert_eq!(text.lines().count(), 1, "{text:?}");
    }
}
