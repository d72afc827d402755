//! Scanner engines behind one trait.
//!
//! An engine turns a plan (addresses × ports, in chunks) into events: open ports as it finds
//! them, progress, and each chunk it finished. It does not store anything; the
//! [`crate::runner`] does.

mod builtin;
mod nmap;
pub mod nmap_xml;
mod nuclei;
pub mod nuclei_jsonl;
mod plan;
pub mod politeness;

pub use builtin::BuiltinScanner;
pub use nmap::{NmapScanner, find_binary};
pub use nuclei::NucleiScanner;
pub use plan::{Chunk, Plan};

use async_trait::async_trait;
use phantom_kit::CancellationToken;

use crate::repository::ResolvedTarget;
use tokio::sync::mpsc;

/// An open port and what its service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPort {
    /// Where.
    pub target: ResolvedTarget,
    /// Which port.
    pub port: u16,
    /// Service guessed from the banner or the port.
    pub service: String,
    /// What the service said (sanitized).
    pub banner: String,
}

/// A finding of a vulnerability engine (nuclei): more than an open port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineFinding {
    /// Where.
    pub target: ResolvedTarget,
    /// Which port (0 when the finding is about the host).
    pub port: u16,
    /// Scheme or service (`http`, `https`, `tcp`).
    pub service: String,
    /// The engine's check (template id).
    pub check_id: String,
    /// One line for humans.
    pub title: String,
    /// The engine's severity, lowercase (`critical`…`info`).
    pub severity: String,
    /// CVE and CWE ids.
    pub cve_ids: Vec<String>,
    /// CVSS vector, when the engine gives one.
    pub cvss_vector: String,
    /// Where it matched (URL or host:port).
    pub evidence: String,
}

/// What an engine reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An open port.
    Open(OpenPort),
    /// A vulnerability finding.
    Finding(EngineFinding),
    /// This many probes of the plan's chunks are done in this run (monotonic).
    Progress(u64),
    /// Chunk `n` is done: every probe of it ran, and every finding of it was sent before.
    Done(u32),
}

/// Why an engine failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The engine could not run at all.
    #[error("{0}")]
    Engine(String),
}

/// A scanner engine.
#[async_trait]
pub trait Scanner: Send + Sync + std::fmt::Debug {
    /// The engine's name as requests give it.
    fn name(&self) -> &'static str;

    /// Scans the chunks of `plan` not done, reporting to `events`, until done or `cancel`
    /// fires. Returning early because of `cancel` is not an error.
    async fn scan(
        &self,
        plan: &Plan,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), ScanError>;
}

/// Waits for an engine's process to end; a failure exit is an error carrying the first line
/// it wrote on stderr (what an operator needs to see in the scan's `error`).
pub(crate) async fn wait_engine(
    engine: &str,
    mut child: tokio::process::Child,
    mut stderr: tokio::process::ChildStderr,
) -> Result<(), ScanError> {
    use tokio::io::AsyncReadExt;

    let status = child
        .wait()
        .await
        .map_err(|e| ScanError::Engine(format!("{engine}: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err).await;
    let first = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(ScanError::Engine(format!(
        "{engine} exited with {status}: {first}"
    )))
}

/// Service name conventionally on `port`.
pub fn service_for_port(port: u16) -> &'static str {
    match port {
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 | 587 => "smtp",
        53 => "dns",
        80 | 8000 | 8008 | 8080 | 8888 => "http",
        110 => "pop3",
        139 | 445 => "smb",
        143 => "imap",
        443 | 8443 => "https",
        1433 => "mssql",
        1521 => "oracle",
        3306 => "mysql",
        3389 => "rdp",
        5432 => "postgresql",
        5900 => "vnc",
        6379 => "redis",
        9200 => "elasticsearch",
        11211 => "memcached",
        27017 => "mongodb",
        _ => "",
    }
}

/// Service recognised from what it said, if anything was recognisable.
pub fn service_for_banner(banner: &str) -> Option<&'static str> {
    let lower = banner.to_ascii_lowercase();
    Some(match () {
        () if banner.starts_with("SSH-") => "ssh",
        () if banner.starts_with("HTTP/") => "http",
        () if banner.starts_with("220") && lower.contains("ftp") => "ftp",
        () if banner.starts_with("220") && (lower.contains("smtp") || lower.contains("mail")) => {
            "smtp"
        }
        () if banner.starts_with("+OK") => "pop3",
        () if banner.starts_with("* OK") => "imap",
        () if banner.starts_with("-ERR")
            || banner.starts_with("+PONG")
            || lower.contains("redis") =>
        {
            "redis"
        }
        () if lower.contains("mysql") || lower.contains("mariadb") => "mysql",
        () if lower.contains("login:") || lower.contains("telnet") => "telnet",
        // An HTTP/2 server speaks first with a SETTINGS frame (type 0x04): gRPC, mostly.
        () if banner.starts_with("\\x00\\x00") && banner.get(12..16) == Some("\\x04") => "http2",
        () => return None,
    })
}
