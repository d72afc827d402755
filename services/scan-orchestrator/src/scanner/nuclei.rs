//! The `nuclei` engine: runs `nuclei -jsonl -duc -ni -dr` over a target list file and reads
//! its results line by line.
//!
//! Targets are the scope-checked addresses with each requested port (`addr:port`, so nuclei
//! resolves nothing). Arguments are argv, never a shell, and each keeps nuclei on those
//! targets (see [`arguments`]): no redirects (`-dr`), no interactsh callbacks (`-ni`), no
//! templates that query third parties (`-ept dns,whois`), no self-update (`-duc`).

use std::{
    collections::HashMap,
    ffi::OsString,
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};

use async_trait::async_trait;
use phantom_kit::CancellationToken;

use crate::settings::NucleiConfig;

use crate::repository::ResolvedTarget;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    sync::{Semaphore, mpsc},
};

use super::{
    Chunk, EngineFinding, Event, Plan, ScanError, Scanner, find_binary, nuclei_jsonl::parse_line,
};

/// The nuclei engine.
#[derive(Debug, Clone)]
pub struct NucleiScanner {
    binary: PathBuf,
    config: NucleiConfig,
    processes: Arc<Semaphore>,
}

impl NucleiScanner {
    /// The engine, if the nuclei binary can be found.
    pub fn find(config: &NucleiConfig) -> Option<Self> {
        Some(Self {
            binary: find_binary(&config.path)?,
            processes: Arc::new(Semaphore::new(config.max_processes.max(1))),
            config: config.clone(),
        })
    }
}

/// nuclei's arguments: fixed, with the target list file last.
///
/// Every one keeps nuclei on the scope-checked `addr:port` list: `-dr` turns redirects off
/// for every HTTP template (it overrides a template's `redirects: true` and nuclei's own
/// configuration file), so a target cannot send nuclei to an address the scope refuses;
/// `-ni` keeps it from calling out to interactsh servers; `-ept dns,whois` leaves out the
/// templates that by design query third parties (DNS resolvers, registries) rather than the
/// target; `-duc` keeps it from updating itself or its templates mid-scan.
fn arguments(config: &NucleiConfig, list: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-jsonl",
        "-duc",
        "-ni",
        "-dr",
        "-ept",
        "dns,whois",
        "-silent",
        "-nc",
        "-rl",
        &config.rate_limit.to_string(),
        "-l",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(list.into());
    args
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

impl NucleiScanner {
    /// One nuclei run over `chunk`; false when it stopped early (cancelled, or the runner
    /// went away).
    async fn run(
        &self,
        chunk: &Chunk<'_>,
        events: &mpsc::Sender<Event>,
        cancel: &CancellationToken,
    ) -> Result<bool, ScanError> {
        let mut list = tempfile::NamedTempFile::new()
            .map_err(|e| ScanError::Engine(format!("target list: {e}")))?;
        for t in chunk.targets {
            for port in chunk.ports {
                writeln!(list, "{}", endpoint(t.address, *port))
                    .map_err(|e| ScanError::Engine(format!("target list: {e}")))?;
            }
        }
        list.flush()
            .map_err(|e| ScanError::Engine(format!("target list: {e}")))?;
        let targets: HashMap<IpAddr, &ResolvedTarget> =
            chunk.targets.iter().map(|t| (t.address, t)).collect();

        let mut child = Command::new(&self.binary)
            .args(arguments(&self.config, list.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ScanError::Engine(format!("cannot start nuclei: {e}")))?;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        let stderr = child.stderr.take().expect("stderr piped");
        let deadline = tokio::time::sleep(self.config.time_limit);
        tokio::pin!(deadline);
        let mut skipped = 0u64;
        loop {
            let line = tokio::select! {
                () = cancel.cancelled() => {
                    let _ = child.kill().await;
                    return Ok(false);
                }
                () = &mut deadline => {
                    let _ = child.kill().await;
                    return Err(ScanError::Engine(format!("nuclei ran over its time limit of {:?}", self.config.time_limit)));
                }
                line = lines.next_line() => line,
            };
            let Ok(Some(line)) = line else { break };
            let Some(r) = parse_line(&line) else {
                skipped += u64::from(!line.trim().is_empty());
                continue;
            };
            let Some(target) = r.ip.and_then(|ip| targets.get(&ip)) else {
                skipped += 1;
                continue;
            };
            let finding = EngineFinding {
                target: (*target).clone(),
                port: r.port.unwrap_or(0),
                service: r.scheme.clone(),
                check_id: r.template_id.clone(),
                title: r.name.clone(),
                severity: r.severity.clone(),
                cve_ids: r.cve_ids.iter().chain(&r.cwe_ids).cloned().collect(),
                cvss_vector: r.cvss_vector.clone(),
                evidence: r.matched_at.clone(),
            };
            if events.send(Event::Finding(finding)).await.is_err() {
                return Ok(false);
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "nuclei lines that were not usable results were skipped"
            );
        }
        super::wait_engine("nuclei", child, stderr).await?;
        Ok(true)
    }
}

#[async_trait]
impl Scanner for NucleiScanner {
    fn name(&self) -> &'static str {
        "nuclei"
    }

    async fn scan(
        &self,
        plan: &Plan,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), ScanError> {
        let _permit = tokio::select! {
            permit = self.processes.acquire() => permit.map_err(|_| ScanError::Engine("nuclei engine closed".into()))?,
            () = cancel.cancelled() => return Ok(()),
        };
        // One nuclei run per chunk: its findings, then the chunk is done.
        let mut done = 0;
        for chunk in plan.chunks() {
            if !self.run(&chunk, &events, &cancel).await? {
                return Ok(());
            }
            done += chunk.probes();
            let progress = events.send(Event::Progress(done)).await;
            if progress.is_err() || events.send(Event::Done(chunk.index)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nuclei_never_follows_a_redirect_off_the_scoped_addresses() {
        let args = arguments(&NucleiConfig::default(), Path::new("/tmp/targets"));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        // -dr turns off redirects for every HTTP template, whatever the template or nuclei's
        // own configuration file ask for (it wins over -fr, -fhr and `redirects: true`).
        assert!(args.contains(&"-dr"), "{args:?}");
        for follows in [
            "-fr",
            "-follow-redirects",
            "-fhr",
            "-follow-host-redirects",
            "-mr",
        ] {
            assert!(!args.contains(&follows), "{args:?}");
        }
        // No callbacks to interactsh servers, no templates that query third parties, none of
        // the template kinds nuclei runs only when asked, no update checks, and the targets
        // last.
        assert!(args.contains(&"-ni") && args.contains(&"-duc"), "{args:?}");
        assert!(
            args.windows(2).any(|w| w == ["-ept", "dns,whois"]),
            "{args:?}"
        );
        for opens in [
            "-headless",
            "-code",
            "-file",
            "-esc",
            "-lfa",
            "-fuzz",
            "-dast",
        ] {
            assert!(!args.contains(&opens), "{args:?}");
        }
        assert_eq!(args[args.len() - 2..], ["-l", "/tmp/targets"]);
    }
}
