//! `phantom bench hedging`: three `phantom serve vuln-analyzer` processes behind one client,
//! one of them stalled 40 ms of every 200 ms (SIGSTOP/SIGCONT: a replica with pauses, a noisy
//! neighbour), called through PHANTOM's own client stack (balancer, retries, hedging) with
//! hedging off and then on, in the same run: latency p50, p99, p99.9 and max of each, and the
//! hedges sent, won and cancelled.
//!
//! A slow replica is what the balancer steers around by its latency estimate; a replica that
//! is fast most of the time and stalls now and then is what it cannot foresee, and what a
//! hedge sent to another replica after a short delay cuts from the tail.

use std::{
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use phantom_kit::{client, config::ClientPolicy};
use phantom_layers::{registry::Registry, retry::HedgingConfig};
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};

use crate::{
    bench::attacks::{free_port, quiet_child},
    bench::percentile,
};

/// The method hedged and called.
const METHOD: &str = "/phantom.v1.VulnAnalyzer/ScoreCvss";

/// What to run.
#[derive(Debug, Clone)]
pub struct HedgeArgs {
    /// The `phantom` binary that runs the replicas (default: this one).
    pub phantom: Option<PathBuf>,
    /// Length of each run (hedging off, then on).
    pub duration: Duration,
    /// Concurrent callers.
    pub concurrency: usize,
    /// How long a call waits before its hedge is sent.
    pub delay: Duration,
}

fn request() -> pb::ScoreCvssRequest {
    pb::ScoreCvssRequest {
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

/// Calls through `client` from `concurrency` callers for `duration`: the latencies of the
/// calls answered OK, and how many failed.
async fn closed_loop(
    client: &VulnAnalyzerClient<client::GrpcChannel>,
    concurrency: usize,
    duration: Duration,
) -> (Vec<Duration>, u64) {
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0u64);
                while Instant::now() < until {
                    let started = Instant::now();
                    match client.score_cvss(request()).await {
                        Ok(_) => latencies.push(started.elapsed()),
                        Err(_) => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, f)) = t.await {
            all.extend(l);
            failed += f;
        }
    }
    (all, failed)
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: HedgeArgs) -> anyhow::Result<()> {
    let binary = match args.phantom.clone() {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let data = tempfile::tempdir()?;
    let mut replicas = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let addr = free_port()?;
        let child = quiet_child(&binary, &data.path().join(i.to_string()))
            .args(["serve", "vuln-analyzer"])
            .env("PHANTOM_VULN_ANALYZER_ADDR", addr.to_string())
            // The subject is the client's tail latency, not who may call nor how often.
            .env("PHANTOM__AUTH__ENABLED", "false")
            .env("PHANTOM__RESILIENCE__SERVER__RATE_LIMIT__ENABLED", "false")
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        replicas.push(child);
        urls.push(format!("http://{addr}"));
    }
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = VulnAnalyzerClient::connect(url.clone()).await
                && c.score_cvss(request()).await.is_ok()
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{url} never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stalled = replicas[0].id().context("a replica exited at once")?;
    let stalling = Arc::new(AtomicBool::new(true));
    let staller = std::thread::spawn({
        let stalling = stalling.clone();
        move || {
            while stalling.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(160));
                signal(stalled, "STOP");
                std::thread::sleep(Duration::from_millis(40));
                signal(stalled, "CONT");
            }
        }
    });

    println!(
        "phantom bench hedging: ScoreCvss over 3 replicas, one stalled 40 ms of every 200 ms, \
         {} callers, {:?} per run",
        args.concurrency, args.duration
    );
    let url = urls.join(",");
    let mut tails = Vec::new();
    for hedged in [false, true] {
        let mut policy = ClientPolicy::default();
        if hedged {
            policy.retry.hedging = HedgingConfig {
                enabled: true,
                max_attempts: 2,
                delay: args.delay,
                methods: vec![METHOD.to_owned()],
                ..HedgingConfig::default()
            };
        }
        let registry = Registry::default();
        let channel = client::channel(
            "bench",
            "vuln-analyzer",
            &url,
            &policy,
            None,
            None,
            &registry,
        )?;
        let client = VulnAnalyzerClient::new(channel);
        // Connections and estimates warm first.
        closed_loop(&client, args.concurrency, Duration::from_millis(500)).await;
        let (latencies, failed) = closed_loop(&client, args.concurrency, args.duration).await;
        let hedging = registry
            .snapshot()
            .retries
            .into_iter()
            .find(|r| r.name == "bench->vuln-analyzer")
            .map(|r| r.hedging)
            .context("the client's retry policy is registered")?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p99 = percentile(&latencies, 0.99);
        tails.push((p99, percentile(&latencies, 0.999)));
        println!(
            "  hedging {:<26} {:>7} calls ({:.0}/s), {failed} failed: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; hedges sent {}, won {}, cancelled {}",
            if hedged {
                format!("on (after {:?})", args.delay)
            } else {
                "off".to_owned()
            },
            latencies.len(),
            latencies.len() as f64 / args.duration.as_secs_f64(),
            ms(percentile(&latencies, 0.5)),
            ms(p99),
            ms(percentile(&latencies, 0.999)),
            ms(latencies.iter().max().copied().unwrap_or_default()),
            hedging.sent,
            hedging.won,
            hedging.cancelled,
        );
    }
    let ratio = |on: Duration, off: Duration| on.as_secs_f64() / off.as_secs_f64().max(1e-9);
    println!(
        "  with hedging / without: p99 {:.2}x, p99.9 {:.2}x",
        ratio(tails[1].0, tails[0].0),
        ratio(tails[1].1, tails[0].1)
    );
    stalling.store(false, Ordering::Relaxed);
    let _ = staller.join();
    signal(stalled, "CONT");
    Ok(())
}
