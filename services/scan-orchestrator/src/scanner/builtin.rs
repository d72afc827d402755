//! The built-in engine: an async TCP connect scan with a bounded number of sockets in flight,
//! a connect timeout, and a banner probe (what the service says first; for a silent service,
//! the answer to an HTTP `HEAD /`: status line and `Server` header). Each connection waits
//! for its host's caps first ([`HostCaps`]: per second, in flight), which hold across scans,
//! and across replicas when they share a Redis.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use async_trait::async_trait;
use futures::{StreamExt, stream};
use phantom_kit::CancellationToken;

use crate::settings::ScanConfig;

use crate::repository::ResolvedTarget;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    time::{Instant, timeout},
};

use super::{
    Event, OpenPort, Plan, ScanError, Scanner, politeness::HostCaps, service_for_banner,
    service_for_port,
};

/// Longest banner kept.
const MAX_BANNER: usize = 256;
/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The built-in TCP connect scanner.
#[derive(Debug, Clone)]
pub struct BuiltinScanner {
    max_in_flight: usize,
    connect_timeout: Duration,
    banner_timeout: Duration,
    /// Connections per second and in flight per host.
    per_host: HostCaps,
    /// Longest a probe holds its host's slot (its connect and banner waits, bounded).
    longest_probe: Duration,
    /// Wall-clock limit of one scan.
    time_limit: Duration,
}

impl BuiltinScanner {
    /// A scanner tuned by `config`, its per-host caps kept in this process.
    pub fn new(config: &ScanConfig) -> Self {
        Self::with_caps(config, HostCaps::local(config))
    }

    /// A scanner tuned by `config`, with these per-host caps (shared through Redis, say).
    pub fn with_caps(config: &ScanConfig, per_host: HostCaps) -> Self {
        Self {
            max_in_flight: config.max_in_flight,
            connect_timeout: config.connect_timeout,
            banner_timeout: config.banner_timeout,
            per_host,
            longest_probe: super::politeness::longest_probe(config),
            time_limit: config.time_limit,
        }
    }

    async fn probe(&self, target: ResolvedTarget, port: u16) -> Option<OpenPort> {
        let permit = self.per_host.acquire(target.address).await;
        // Bounded, so that a slot is never held past its lease in Redis; the connection is
        // closed (the future dropped) before the slot is given back.
        let open = timeout(self.longest_probe, self.connect_and_identify(target, port))
            .await
            .ok()
            .flatten();
        drop(permit);
        open
    }

    async fn connect_and_identify(&self, target: ResolvedTarget, port: u16) -> Option<OpenPort> {
        let addr = SocketAddr::new(target.address, port);
        let mut stream = timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        // A zero banner timeout is a plain connect sweep: fastest, least informative.
        let banner = if self.banner_timeout.is_zero() {
            String::new()
        } else {
            self.banner(&mut stream, &target, port).await
        };
        let service = service_for_banner(&banner)
            .map(|s| {
                if s == "http" && matches!(port, 443 | 8443) {
                    "https"
                } else {
                    s
                }
            })
            .unwrap_or_else(|| service_for_port(port))
            .to_owned();
        Some(OpenPort {
            target,
            port,
            service,
            banner,
        })
    }

    async fn banner(&self, stream: &mut TcpStream, target: &ResolvedTarget, port: u16) -> String {
        let mut buf = vec![0u8; 1024];
        // Many services (SSH, SMTP, FTP) speak first.
        if let Ok(Ok(n)) = timeout(self.banner_timeout, stream.read(&mut buf)).await {
            if n > 0 {
                return sanitize(&buf[..n]);
            }
            return String::new(); // closed without a word
        }
        // A silent service: ask it as a web server would be asked.
        let host = target
            .hostname
            .clone()
            .unwrap_or_else(|| match target.address {
                std::net::IpAddr::V6(a) => format!("[{a}]"),
                a => a.to_string(),
            });
        let request = format!(
            "HEAD / HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: phantom-scanner\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + self.banner_timeout;
        while got.len() < buf.len() {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                _ => break,
            }
        }
        http_summary(&got).unwrap_or_else(|| sanitize(&got))
    }
}

/// For an HTTP answer: the status line and the `Server` header, the parts that identify it.
fn http_summary(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split("\r\n");
    let status = lines.next().filter(|l| l.starts_with("HTTP/"))?;
    let server = lines.find(|l| l.to_ascii_lowercase().starts_with("server:"));
    Some(sanitize(
        match server {
            Some(s) => format!("{status}\r\n{s}"),
            None => status.to_owned(),
        }
        .as_bytes(),
    ))
}

/// Printable ASCII kept, `\r\n` kept as line breaks, anything else escaped; at most
/// [`MAX_BANNER`] bytes. Banners come from whoever answers and end up in terminals and logs.
fn sanitize(raw: &[u8]) -> String {
    let mut out = String::new();
    for &b in raw {
        if out.len() >= MAX_BANNER {
            break;
        }
        match b {
            b'\n' => out.push('\n'),
            b'\r' => {}
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.trim().to_owned()
}

/// A task that is aborted when its handle is dropped (a spawned task otherwise runs on).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every probe of the chunks of `plan` not done, in order, with its chunk's index and size.
fn probes(plan: &Plan) -> impl Iterator<Item = ((u32, u64), ResolvedTarget, u16)> + Send + '_ {
    plan.chunks().flat_map(|chunk| {
        let size = chunk.probes();
        let per_port = chunk.targets.len() as u64;
        (0..size).map(move |i| {
            let (port, host) = (i / per_port, i % per_port);
            (
                (chunk.index, size),
                chunk.targets[usize::try_from(host).expect("index fits")].clone(),
                chunk.ports[usize::try_from(port).expect("index fits")],
            )
        })
    })
}

#[async_trait]
impl Scanner for BuiltinScanner {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn scan(
        &self,
        plan: &Plan,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), ScanError> {
        // Chunk by chunk, and within one, ports vary fastest... across hosts: probing port p
        // of every host before p+1 spreads the load instead of hammering one host with all
        // its ports at once. Chunks overlap: the next one starts while the last probes of
        // the one before are still waiting on a timeout.
        //
        // Each probe is a task of its own, so that probes run on every worker thread: a
        // connect is mostly system calls (socket, connect, epoll registration, close), and
        // polled from this one task they all ran on one core (the full loopback sweep took
        // 0.78x nmap's wall time; spread over two cores, see docs/benchmarks.md). A probe
        // still running when the scan ends early (cancelled, over its time limit) is
        // aborted with its handle.
        let mut results = stream::iter(probes(plan))
            .map(|(chunk, t, p)| {
                let this = self.clone();
                let probe = AbortOnDrop(tokio::spawn(async move { this.probe(t, p).await }));
                async move { (chunk, probe.await.ok().flatten()) }
            })
            .buffer_unordered(self.max_in_flight);
        // Probes finished per chunk in progress.
        let mut finished: HashMap<u32, u64> = HashMap::new();
        let mut done = 0u64;
        let mut last_report = Instant::now();
        let deadline = tokio::time::sleep(self.time_limit);
        tokio::pin!(deadline);
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = &mut deadline => {
                    return Err(ScanError::Engine(format!("the scan ran over its time limit of {:?}", self.time_limit)));
                }
                next = results.next() => next,
            };
            let Some(((index, size), result)) = next else {
                break;
            };
            done += 1;
            if let Some(open) = result
                && events.send(Event::Open(open)).await.is_err()
            {
                return Ok(());
            }
            let count = finished.entry(index).or_default();
            *count += 1;
            if *count == size {
                finished.remove(&index);
                if events.send(Event::Done(index)).await.is_err() {
                    return Ok(());
                }
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let _ = events.send(Event::Progress(done)).await;
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
    fn banners_are_sanitized_and_bounded() {
        assert_eq!(sanitize(b"SSH-2.0-OpenSSH_9.2\r\n"), "SSH-2.0-OpenSSH_9.2");
        assert_eq!(sanitize(b"\x1b[31mred\x00"), "\\x1b[31mred\\x00");
        assert!(sanitize(&[b'a'; 1000]).len() <= MAX_BANNER);
    }

    #[test]
    fn http_answers_are_summarized() {
        let raw =
            b"HTTP/1.1 200 OK\r\nDate: x\r\nServer: nginx/1.25.3\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            http_summary(raw).unwrap(),
            "HTTP/1.1 200 OK\nServer: nginx/1.25.3"
        );
        assert!(http_summary(b"SSH-2.0").is_none());
    }

    #[tokio::test]
    async fn a_scan_over_its_time_limit_fails_instead_of_running_on() {
        // A service that accepts and never speaks: the banner wait outlasts the limit.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let scanner = BuiltinScanner::new(&ScanConfig {
            banner_timeout: Duration::from_secs(30),
            time_limit: Duration::from_millis(200),
            ..ScanConfig::default()
        });
        let plan = Plan::new(
            vec![ResolvedTarget {
                hostname: None,
                address: "127.0.0.1".parse().unwrap(),
            }],
            vec![port],
        );
        let (tx, _rx) = mpsc::channel(8);
        let err = scanner
            .scan(&plan, tx, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("time limit"), "{err}");
        // The probe, a task of its own, was aborted with the scan: its connection is closed
        // now, not when its 30 s banner wait would have ended.
        let (mut conn, _) = silent.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the probe outlived its scan: {read:?}"
        );
        drop(silent);
    }

    #[tokio::test]
    async fn the_per_host_rate_limits_connections_to_each_host() {
        let scanner = BuiltinScanner::new(&ScanConfig {
            per_host_rate: 20,
            ..ScanConfig::default()
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let plan = Plan::new(
            vec![ResolvedTarget {
                hostname: None,
                address: "127.0.0.1".parse().unwrap(),
            }],
            vec![closed; 40],
        );
        let (tx, mut rx) = mpsc::channel(64);
        let started = Instant::now();
        scanner
            .scan(&plan, tx, CancellationToken::new())
            .await
            .unwrap();
        while rx.recv().await.is_some() {}
        // 40 connections at 20 per second, evenly spaced (no burst): about two seconds.
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn finds_open_ports_reads_banners_and_skips_closed_ones() {
        let speaker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (sp, wp) = (
            speaker.local_addr().unwrap().port(),
            web.local_addr().unwrap().port(),
        );
        tokio::spawn(async move {
            while let Ok((mut s, _)) = speaker.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = web.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 404 Not Found\r\nServer: test/1.0\r\n\r\n")
                    .await;
            }
        });
        let scanner = BuiltinScanner::new(&ScanConfig::default());
        let mut ports = vec![sp, wp, closed];
        ports.sort_unstable();
        // One probe a chunk: each is reported done after its port's finding.
        let plan = Plan::chunked(
            vec![ResolvedTarget {
                hostname: None,
                address: "127.0.0.1".parse().unwrap(),
            }],
            ports.clone(),
            1,
        );
        let (tx, mut rx) = mpsc::channel(16);
        scanner
            .scan(&plan, tx, CancellationToken::new())
            .await
            .unwrap();
        let mut open = Vec::new();
        let mut last_progress = 0;
        let mut done = Vec::new();
        while let Some(e) = rx.recv().await {
            match e {
                Event::Open(o) => {
                    let chunk = ports.iter().position(|p| *p == o.port).unwrap();
                    assert!(!done.contains(&(chunk as u32)), "a finding after its chunk");
                    open.push(o);
                }
                Event::Progress(n) => last_progress = n,
                Event::Done(chunk) => done.push(chunk),
                Event::Finding(f) => panic!("the builtin engine reports ports only: {f:?}"),
            }
        }
        assert_eq!(last_progress, 3);
        done.sort_unstable();
        assert_eq!(done, [0, 1, 2]);
        open.sort_by_key(|o| o.port);
        let by_port = |p: u16| open.iter().find(|o| o.port == p);
        assert_eq!(open.len(), 2);
        assert_eq!(by_port(sp).unwrap().service, "ssh");
        assert!(
            by_port(sp)
                .unwrap()
                .banner
                .starts_with("SSH-2.0-OpenSSH_9.2p1")
        );
        assert_eq!(by_port(wp).unwrap().service, "http");
        assert_eq!(
            by_port(wp).unwrap().banner,
            "HTTP/1.0 404 Not Found\nServer: test/1.0"
        );
        assert!(by_port(closed).is_none());
    }

    #[tokio::test]
    async fn a_resumed_plan_probes_only_the_chunks_not_done() {
        let listeners: Vec<std::net::TcpListener> = (0..6)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        ports.sort_unstable();
        let target = vec![ResolvedTarget {
            hostname: None,
            address: "127.0.0.1".parse().unwrap(),
        }];
        // Three chunks of two ports; the first and the last were done before a crash.
        let mut before = Plan::chunked(target.clone(), ports.clone(), 2);
        before.complete(0);
        before.complete(2);
        let (plan, unusable) = Plan::resume(target, ports.clone(), 2, &before.checkpoint());
        assert_eq!(unusable, None);
        let scanner = BuiltinScanner::new(&ScanConfig {
            banner_timeout: Duration::ZERO,
            ..ScanConfig::default()
        });
        let (tx, mut rx) = mpsc::channel(16);
        scanner
            .scan(&plan, tx, CancellationToken::new())
            .await
            .unwrap();
        let (mut open, mut done, mut progress) = (Vec::new(), Vec::new(), 0);
        while let Some(e) = rx.recv().await {
            match e {
                Event::Open(o) => open.push(o.port),
                Event::Done(chunk) => done.push(chunk),
                Event::Progress(n) => progress = n,
                Event::Finding(f) => panic!("{f:?}"),
            }
        }
        open.sort_unstable();
        assert_eq!(open, ports[2..4]);
        assert_eq!(done, [1]);
        assert_eq!(progress, 2);
        drop(listeners);
    }
}
