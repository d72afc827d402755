//! Client commands: they talk to a running system over its public gRPC API, except
//! [`migrate`], which talks to the database.

pub mod health;
pub mod migrate;
pub mod scan;
pub mod watch;

/// `println!` that tolerates a closed stdout (`phantom scan … | head`): a reader that went
/// away is not an error worth a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use outln;

use tonic_types::StatusExt;

/// Prints a failed call the way a user can act on: the code, the message, and each field
/// the server refused.
pub(crate) fn print_status(what: &str, status: &tonic::Status) {
    eprintln!(
        "phantom: {what} failed: {:?}: {}",
        status.code(),
        status.message()
    );
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            eprintln!("  {}: {}", v.field, v.description);
        }
    }
    if status.code() == tonic::Code::Unavailable {
        eprintln!("  is the server running? (`make run` or `phantom up`)");
    }
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

/// Connects to `addr`, or explains why it cannot.
pub(crate) async fn connect(
    addr: &str,
) -> Result<tonic::transport::Channel, std::process::ExitCode> {
    let endpoint = tonic::transport::Endpoint::from_shared(addr.to_owned()).map_err(|e| {
        eprintln!("phantom: {addr:?} is not a URL: {e}");
        std::process::ExitCode::from(2)
    })?;
    endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            eprintln!("phantom: cannot connect to {addr}: {e}\n  is the server running? (`make run` or `phantom up`)");
            std::process::ExitCode::FAILURE
        })
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
