//! `phantom bench attacks`: the four attacks that used to take a process down, replayed
//! against a whole system (`phantom up`) running as a separate process, while `/health` is
//! polled every 50 ms and the system's RSS is read from `/proc`.
//!
//! The attacks (one client each, as they were first measured):
//! 1. `CreateScan` with a 4 MB port spec (`"1-65535,"` repeated);
//! 2. `Subscribe` with hundreds of thousands of rooms and `after_sequence` keys;
//! 3. 80 replaying `Subscribe` streams over a room of large notifications, never read, then
//!    cancelled;
//! 4. 20,000 calls to distinct unknown method names.
//!
//! The claims it checks: `/health` answers within 100 ms throughout, and the system's RSS
//! stays within 64 MiB of where it started. `--phantom PATH` runs another build (an older
//! commit's) as the system, for a before/after comparison in the same run.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use phantom_proto::pb::{self, notifier_client::NotifierClient};
use tonic::transport::Channel;

/// What to run.
#[derive(Debug, Clone)]
pub struct AttackArgs {
    /// The `phantom` binary that runs the system (default: this one).
    pub phantom: Option<PathBuf>,
    /// The most `/health` may take at any time.
    pub max_health_latency: Duration,
    /// The most the system's RSS may grow above where it started.
    pub max_rss_growth_mib: u64,
}

/// `/health` latencies and RSS samples taken while one attack runs.
#[derive(Debug, Default)]
struct Samples {
    health: Vec<Duration>,
    health_failed: u32,
    rss: Vec<u64>,
}

/// A system running as a child process.
struct System {
    child: tokio::process::Child,
    pid: u32,
    http: SocketAddr,
    scan_orchestrator: SocketAddr,
    notifier: SocketAddr,
    /// The local admin key the system made, if it authenticates (an older binary does not):
    /// the attacks are replayed as an authenticated caller, the worst case.
    bearer: Option<http::HeaderValue>,
    _data: tempfile::TempDir,
}

/// `binary` as a quiet child process on `data`: logs at warn, no configuration file nor
/// database or Redis from the environment (the embedded defaults), output discarded, killed
/// with its handle. The caller adds the command and its addresses.
pub(crate) fn quiet_child(
    binary: &std::path::Path,
    data: &std::path::Path,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env("PHANTOM_DATA_DIR", data)
        .env("PHANTOM_LOG", "warn")
        .env_remove("PHANTOM_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// `phantom up` as a [`quiet_child`] (after `--config config`, when given) with every
/// listener on port 0: the system binds them itself, so no port can be taken between a pick
/// and its bind. Its stdout is piped: [`printed_addresses`] reads where it listens.
pub(crate) fn up_command(
    binary: &std::path::Path,
    data: &std::path::Path,
    config: Option<&std::path::Path>,
) -> tokio::process::Command {
    let mut command = quiet_child(binary, data);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.arg("up").stdout(Stdio::piped());
    for name in [
        "PHANTOM_SCAN_ORCHESTRATOR_ADDR",
        "PHANTOM_VULN_ANALYZER_ADDR",
        "PHANTOM_NOTIFIER_ADDR",
        "PHANTOM_HEALTH_AGGREGATOR_ADDR",
        "PHANTOM_HTTP_ADDR",
        "PHANTOM_WS_ADDR",
    ] {
        command.env(name, "127.0.0.1:0");
    }
    command
}

/// Where a system started by [`up_command`] listens, as it printed it: the
/// scan-orchestrator's, vuln-analyzer's, notifier's, health-aggregator's, HTTP and WebSocket
/// addresses. The rest of its stdout is drained in the background.
pub(crate) async fn printed_addresses(
    child: &mut tokio::process::Child,
) -> anyhow::Result<[SocketAddr; 6]> {
    use tokio::io::AsyncBufReadExt as _;
    // Longest label first where one starts another ("notifier (WS)", "notifier").
    const LABELS: [(&str, usize); 6] = [
        ("scan-orchestrator", 0),
        ("vuln-analyzer", 1),
        ("notifier (WS)", 5),
        ("notifier", 2),
        ("health-aggregator", 3),
        ("health (HTTP)", 4),
    ];
    let stdout = child.stdout.take().context("stdout is not piped")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut found: [Option<SocketAddr>; 6] = [None; 6];
    let read = async {
        while found.iter().any(Option::is_none) {
            let line = lines
                .next_line()
                .await?
                .context("the system exited at start-up")?;
            let line = line.trim();
            if let Some((rest, i)) = LABELS
                .iter()
                .find_map(|(label, i)| line.strip_prefix(label).map(|rest| (rest, *i)))
            {
                let addr = rest.trim();
                let addr = addr.split_once("://").map_or(addr, |(_, a)| a);
                let addr = addr.split('/').next().unwrap_or(addr);
                found[i] = addr.parse().ok();
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .context("the system did not say where it listens within 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found.map(|a| a.expect("every address was found")))
}

/// A free loopback port (the child process binds it).
pub(crate) fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl System {
    async fn start(binary: PathBuf) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = up_command(&binary, data.path(), None)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let [so, _, no, _, http, _] = printed_addresses(&mut child).await?;
        let pid = child.id().context("the system exited at once")?;
        let system = Self {
            child,
            pid,
            http,
            scan_orchestrator: so,
            notifier: no,
            bearer: None,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while health(http).await.is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the system never answered /health"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut system = system;
        let key = crate::auth::admin_key_path(system._data.path());
        system.bearer = std::fs::read_to_string(key)
            .ok()
            .and_then(|k| phantom_kit::client::bearer_header(k.trim()));
        Ok(system)
    }

    /// A channel to `addr` that sends the system's admin key, if it has one.
    async fn channel(
        &self,
        addr: SocketAddr,
    ) -> anyhow::Result<crate::commands::remote::RemoteChannel> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok(tower_layer::Layer::layer(
            &tower_http::set_header::SetRequestHeaderLayer::overriding(
                http::header::AUTHORIZATION,
                self.bearer.clone(),
            ),
            channel,
        ))
    }

    fn rss(&self) -> u64 {
        rss_of(self.pid)
    }
}

/// The resident set of process `pid`, in bytes (0 once it is gone).
pub(crate) fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One `GET /health`: how long the whole answer took, if it came.
async fn health(addr: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    super::system::get_health(addr)
        .await
        .ok()
        .map(|()| start.elapsed())
}

/// Polls `/health` every 50 ms and samples the system's RSS until `stop`.
fn watch(http: SocketAddr, pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Samples> {
    tokio::spawn(async move {
        let mut samples = Samples::default();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            samples.rss.push(rss_of(pid));
            match health(http).await {
                Some(d) => samples.health.push(d),
                None => samples.health_failed += 1,
            }
        }
        samples
    })
}

async fn port_spec(system: &System) -> anyhow::Result<String> {
    let mut scans = pb::scan_orchestrator_client::ScanOrchestratorClient::new(
        system.channel(system.scan_orchestrator).await?,
    )
    .max_encoding_message_size(8 << 20);
    let ports = "1-65535,".repeat(480_000);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let answer = scans
            .create_scan(pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: ports.clone(),
                scanner: String::new(),
                idempotency_key: String::new(),
            })
            .await;
        codes.push(format!("{:?}", answer.err().map(|s| s.code())));
    }
    Ok(format!("5 calls: {}", codes.join(", ")))
}

/// Attack 2: Subscribe with huge rooms and after_sequence maps.
async fn subscribe_maps(system: &System) -> anyhow::Result<String> {
    let mut notifier = NotifierClient::new(system.channel(system.notifier).await?)
        .max_encoding_message_size(8 << 20);
    let rooms: Vec<String> = (0..350_000).map(|i| format!("{i:x}")).collect();
    let after_sequence = (0..100_000).map(|i| (format!("k{i:x}"), 1)).collect();
    let answer = notifier
        .subscribe(pb::SubscribeRequest {
            rooms,
            after_sequence,
            ..Default::default()
        })
        .await;
    Ok(match answer {
        Ok(_) => "accepted".into(),
        Err(s) => format!(
            "{:?}, message {} B, details {} B",
            s.code(),
            s.message().len(),
            s.details().len()
        ),
    })
}

/// Attack 3: 80 replaying streams over 500 large notifications, never read, then cancelled.
async fn non_reading_streams(system: &System) -> anyhow::Result<String> {
    let ch = system.channel(system.notifier).await?;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let request = pb::SubscribeRequest {
            rooms: vec!["bench/replay".into()],
            after_sequence: [("bench/replay".to_owned(), 0)].into(),
            ..Default::default()
        };
        match NotifierClient::new(ch.clone()).subscribe(request).await {
            Ok(stream) => held.push(stream),
            Err(_) => refused += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n = held.len();
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(format!(
        "{n} streams held 5 s then cancelled, {refused} refused"
    ))
}

/// Attack 4: 20,000 calls to distinct unknown methods.
async fn unknown_methods(system: &System) -> anyhow::Result<String> {
    let ch = system.channel(system.notifier).await?;
    let calls = futures::stream::iter(0..20_000).map(|i| {
        let ch = ch.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(ch);
            grpc.ready().await.ok()?;
            let path = format!("/phantom.v1.Notifier/Unknown{i}").parse().ok()?;
            let codec =
                tonic_prost::ProstCodec::<pb::GetMetricsRequest, pb::GetMetricsResponse>::default();
            grpc.unary(
                tonic::Request::new(pb::GetMetricsRequest::default()),
                path,
                codec,
            )
            .await
            .err()
            .map(|s| s.code())
        }
    });
    let codes: Vec<_> = calls.buffer_unordered(64).collect().await;
    let mut by_code = std::collections::BTreeMap::<String, usize>::new();
    for code in &codes {
        *by_code
            .entry(code.map_or_else(|| "no answer".to_owned(), |c| format!("{c:?}")))
            .or_default() += 1;
    }
    let mut metrics = pb::metrics_client::MetricsClient::new(ch);
    let size = metrics
        .get_metrics(pb::GetMetricsRequest::default())
        .await
        .map(|r| prost_len(&r.into_inner()))
        .unwrap_or(0);
    Ok(format!(
        "20,000 calls: {by_code:?}; GetMetrics now {size} B"
    ))
}

fn prost_len(m: &pb::GetMetricsResponse) -> usize {
    use prost::Message;
    m.encoded_len()
}

/// Runs the four attacks and prints, for each, `/health`'s worst latency and the RSS growth.
pub async fn run(args: AttackArgs) -> anyhow::Result<()> {
    let binary = match args.phantom {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let system = System::start(binary.clone()).await?;
    // The room attack 3 replays: 500 notifications of 30 KB, published before measuring.
    let mut notifier = NotifierClient::new(system.channel(system.notifier).await?);
    let payload = format!("{{\"blob\":\"{}\"}}", "z".repeat(30 * 1024));
    for _ in 0..500 {
        notifier
            .publish(pb::Notification {
                room: "bench/replay".into(),
                r#type: "blob".into(),
                payload: payload.clone(),
                priority: pb::Priority::Normal as i32,
                ..Default::default()
            })
            .await
            .context("publishing the replay room")?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_rss = system.rss();
    println!(
        "system: {} (pid {}), RSS at start {:.1} MiB",
        binary.display(),
        system.pid,
        start_rss as f64 / 1048576.0
    );
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>12} {:>12}  result",
        "attack", "health p50", "health max", "failed", "RSS max +MiB", "RSS end +MiB"
    );
    let pid = system.pid;
    let mut worst_health = Duration::ZERO;
    let mut worst_rss = 0u64;
    let mut failed_total = 0;
    for name in [
        "port spec (4 MB)",
        "Subscribe maps",
        "non-reading streams",
        "unknown methods",
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch(system.http, pid, stop.clone());
        let result = match name {
            "port spec (4 MB)" => port_spec(&system).await,
            "Subscribe maps" => subscribe_maps(&system).await,
            "non-reading streams" => non_reading_streams(&system).await,
            _ => unknown_methods(&system).await,
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let samples = watcher.await?;
        let max_health = samples.health.iter().max().copied().unwrap_or_default();
        let max_rss = samples.rss.iter().max().copied().unwrap_or(start_rss);
        let end_rss = system.rss();
        worst_health = worst_health.max(max_health);
        worst_rss = worst_rss.max(max_rss.saturating_sub(start_rss));
        failed_total += samples.health_failed;
        println!(
            "{name:<28} {:>8.1}ms {:>8.1}ms {:>8} {:>12.1} {:>12.1}  {}",
            super::percentile(&samples.health, 0.5).as_secs_f64() * 1e3,
            max_health.as_secs_f64() * 1e3,
            samples.health_failed,
            max_rss.saturating_sub(start_rss) as f64 / 1048576.0,
            (end_rss as f64 - start_rss as f64) / 1048576.0,
            result.unwrap_or_else(|e| format!("error: {e:#}"))
        );
    }
    let health_ok = worst_health <= args.max_health_latency && failed_total == 0;
    let rss_ok = worst_rss <= args.max_rss_growth_mib * 1048576;
    println!(
        "\n/health worst {:.1} ms ({} unanswered), limit {} ms: {}",
        worst_health.as_secs_f64() * 1e3,
        failed_total,
        args.max_health_latency.as_millis(),
        if health_ok { "met" } else { "NOT MET" }
    );
    println!(
        "RSS worst +{:.1} MiB, limit {} MiB: {}",
        worst_rss as f64 / 1048576.0,
        args.max_rss_growth_mib,
        if rss_ok { "met" } else { "NOT MET" }
    );
    let mut system = system;
    let _ = system.child.start_kill();
    let _ = system.child.wait().await;
    anyhow::ensure!(health_ok && rss_ok, "the system did not hold up");
    Ok(())
}
