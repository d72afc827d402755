//! The `nmap` engine: runs nmap with fixed, safe arguments and reads its XML as it streams.
//!
//! Arguments are passed as argv (never through a shell) and callers cannot add options:
//! targets are addresses the scope already checked (nothing starting with `-`, and `--`
//! ends the options anyway), ports are the normalized list. nmap runs with `-n` (the scope
//! check resolved names once; nmap must not resolve them again) and `-Pn` (every target
//! given is meant to be scanned). The child is killed when the scan is cancelled, times out,
//! or the runner goes away (`kill_on_drop`).

use std::{collections::HashMap, net::IpAddr, path::PathBuf, process::Stdio, sync::Arc};

use async_trait::async_trait;
use phantom_kit::CancellationToken;

use crate::settings::NmapConfig;
use quick_xml::{Reader, events::Event as Xml};
use tokio::{
    io::BufReader,
    process::Command,
    sync::{Semaphore, mpsc},
};

use super::{
    Chunk, Event, OpenPort, Plan, ScanError, Scanner,
    nmap_xml::{NmapEvent, NmapParser},
};
use crate::ports;

/// The nmap engine.
#[derive(Debug, Clone)]
pub struct NmapScanner {
    binary: PathBuf,
    config: NmapConfig,
    processes: Arc<Semaphore>,
}

/// `name` as found on `PATH`, or as given when it is a path that exists.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let given = PathBuf::from(name);
    if given.components().count() > 1 {
        return given.is_file().then_some(given);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl NmapScanner {
    /// The engine, if the nmap binary can be found.
    pub fn find(config: &NmapConfig) -> Option<Self> {
        let binary = find_binary(&config.path)?;
        Some(Self {
            binary,
            processes: Arc::new(Semaphore::new(config.max_processes.max(1))),
            config: config.clone(),
        })
    }

    fn args(&self, ports: &str, addresses: &[IpAddr]) -> Vec<String> {
        let mut args: Vec<String> = [
            "-sT",
            "-Pn",
            "-n",
            "-oX",
            "-",
            "--stats-every",
            "1s",
            "--max-retries",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["-p".to_owned(), ports.to_owned()]);
        args.extend(["--max-rate".to_owned(), self.config.max_rate.to_string()]);
        args.extend([
            "--host-timeout".to_owned(),
            format!("{}s", self.config.host_timeout.as_secs().max(1)),
        ]);
        if self.config.version_detection {
            args.push("-sV".to_owned());
        }
        if addresses.iter().any(IpAddr::is_ipv6) {
            args.push("-6".to_owned());
        }
        args.push("--".to_owned());
        args.extend(addresses.iter().map(ToString::to_string));
        args
    }

    /// One nmap run over the addresses of `chunk` of one family.
    async fn run(
        &self,
        chunk: &Chunk<'_>,
        addresses: &[IpAddr],
        done_before: u64,
        events: &mpsc::Sender<Event>,
        cancel: &CancellationToken,
    ) -> Result<u64, ScanError> {
        let probes = addresses.len() as u64 * chunk.ports.len() as u64;
        let hostnames: HashMap<IpAddr, Option<String>> = chunk
            .targets
            .iter()
            .map(|t| (t.address, t.hostname.clone()))
            .collect();
        let mut child = Command::new(&self.binary)
            .args(self.args(&ports::normalize(chunk.ports), addresses))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ScanError::Engine(format!("cannot start nmap: {e}")))?;
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut reader = Reader::from_reader(BufReader::new(stdout));
        reader.config_mut().check_end_names = false;
        let mut parser = NmapParser::default();
        let mut buf = Vec::new();
        let mut done = 0u64;
        let deadline = tokio::time::sleep(self.config.time_limit);
        tokio::pin!(deadline);
        loop {
            let xml = tokio::select! {
                () = cancel.cancelled() => {
                    let _ = child.kill().await;
                    return Ok(done);
                }
                () = &mut deadline => {
                    let _ = child.kill().await;
                    return Err(ScanError::Engine(format!("nmap ran over its time limit of {:?}", self.config.time_limit)));
                }
                xml = reader.read_event_into_async(&mut buf) => xml,
            };
            let event = match xml {
                Ok(Xml::Start(e) | Xml::Empty(e)) => parser.start(&e),
                Ok(Xml::End(e)) => parser.end(e.name().as_ref()),
                Ok(Xml::Eof) | Err(_) => break,
                Ok(_) => None,
            };
            buf.clear();
            if let Some(e) = event
                && !self
                    .forward(e, probes, done_before, &mut done, &hostnames, events)
                    .await
            {
                return Ok(done);
            }
        }
        if let Some(e) = parser.finish() {
            self.forward(e, probes, done_before, &mut done, &hostnames, events)
                .await;
        }
        super::wait_engine("nmap", child, stderr).await?;
        Ok(probes)
    }

    /// Passes an nmap event on; false when the runner went away.
    async fn forward(
        &self,
        event: NmapEvent,
        probes: u64,
        done_before: u64,
        done: &mut u64,
        hostnames: &HashMap<IpAddr, Option<String>>,
        events: &mpsc::Sender<Event>,
    ) -> bool {
        match event {
            NmapEvent::Progress(percent) => {
                // nmap's percentage is per phase; progress only moves forward.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let now = ((percent / 100.0) * probes as f64) as u64;
                if now > *done {
                    *done = now.min(probes);
                    return events
                        .send(Event::Progress(done_before + *done))
                        .await
                        .is_ok();
                }
                true
            }
            NmapEvent::Port(p) if p.state == "open" && p.protocol == "tcp" => {
                let Some(hostname) = hostnames.get(&p.address) else {
                    // nmap reported an address it was not given: ignore it.
                    return true;
                };
                let open = OpenPort {
                    target: crate::repository::ResolvedTarget {
                        hostname: hostname.clone(),
                        address: p.address,
                    },
                    port: p.port,
                    service: p.service,
                    banner: p.product,
                };
                events.send(Event::Open(open)).await.is_ok()
            }
            NmapEvent::Port(_) => true,
        }
    }
}

#[async_trait]
impl Scanner for NmapScanner {
    fn name(&self) -> &'static str {
        "nmap"
    }

    async fn scan(
        &self,
        plan: &Plan,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), ScanError> {
        let _permit = tokio::select! {
            permit = self.processes.acquire() => permit.map_err(|_| ScanError::Engine("nmap engine closed".into()))?,
            () = cancel.cancelled() => return Ok(()),
        };
        // One nmap run per chunk, and per address family in it (nmap scans one per run).
        let mut done = 0;
        for chunk in plan.chunks() {
            let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = chunk
                .targets
                .iter()
                .map(|t| t.address)
                .partition(IpAddr::is_ipv4);
            for family in [v4, v6] {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                if !family.is_empty() {
                    done += self.run(&chunk, &family, done, &events, &cancel).await?;
                }
            }
            if cancel.is_cancelled() || events.send(Event::Done(chunk.index)).await.is_err() {
                return Ok(());
            }
        }
        let _ = events.send(Event::Progress(done)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_fixed_and_targets_come_after_the_end_of_options() {
        let s = NmapScanner {
            binary: "nmap".into(),
            config: NmapConfig::default(),
            processes: Arc::new(Semaphore::new(1)),
        };
        let args = s.args("22,80", &["10.0.0.1".parse().unwrap()]);
        let dashdash = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(&args[dashdash + 1..], ["10.0.0.1"]);
        for safe in ["-sT", "-Pn", "-n", "-oX"] {
            assert!(args.contains(&safe.to_owned()));
        }
        assert!(
            !args.contains(&"-sV".to_owned()),
            "version detection off by default"
        );
        assert_eq!(
            duration_secs(&args),
            Some(NmapConfig::default().host_timeout.as_secs())
        );
    }

    fn duration_secs(args: &[String]) -> Option<u64> {
        let i = args.iter().position(|a| a == "--host-timeout")?;
        args[i + 1].trim_end_matches('s').parse().ok()
    }

    #[test]
    fn binaries_are_found_on_the_path_or_not_at_all() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("definitely-not-a-phantom-binary").is_none());
        assert!(find_binary("/nonexistent/nmap").is_none());
    }
}
