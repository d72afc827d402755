//! `phantom bench probes`: one service driven at twice its capacity while the kubelet's
//! liveness probe is asked on the probe port, as Kubernetes would.
//!
//! A `phantom serve vuln-analyzer` runs as a separate process with its probe port (no
//! authentication, no per-caller rate limit: the load is one caller). Its
//! capacity is measured first: `ScoreCvss` calls in a closed loop for a few seconds, the calls
//! per second it answers. Then calls are offered at twice that rate (open loop: a call
//! leaves every `1 / rate` whatever the answers, so the server is really overloaded, and the
//! excess is shed or queued) while `grpc.health.v1/Check(liveness)` is asked every 100 ms
//! on the probe port, from a thread and runtime of the bench's own (the load generator's
//! runtime is itself saturated, and a probe queued behind it would measure the bench). The
//! probe's latency is measured idle first, as the reference, then under the load; the
//! service's RSS before, at its largest during, and after five and fifteen idle seconds.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    bench::attacks::{free_port, quiet_child, rss_of},
    bench::percentile,
};
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// What to run.
#[derive(Debug, Clone)]
pub struct ProbeArgs {
    /// The `phantom` binary that runs the service (default: this one).
    pub phantom: Option<PathBuf>,
    /// How long the overload lasts.
    pub duration: Duration,
}

/// Asks liveness on `addr` every 100 ms from a thread and runtime of its own, until `stop`:
/// each answer's latency (a probe that failed or took over a second counts as a second, the
/// kubelet's default timeout).
fn probe_every_100ms(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let started = Instant::now();
                // A new connection each time, as the kubelet's gRPC probe makes.
                let answered = tokio::time::timeout(Duration::from_secs(1), async {
                    let channel = Channel::from_shared(format!("http://{addr}"))
                        .ok()?
                        .connect()
                        .await
                        .ok()?;
                    HealthClient::new(channel)
                        .check(HealthCheckRequest {
                            service: "liveness".into(),
                        })
                        .await
                        .ok()
                })
                .await;
                latencies.push(match answered {
                    Ok(Some(_)) => started.elapsed(),
                    _ => Duration::from_secs(1),
                });
            }
            latencies
        })
    })
}

/// How many probes, and their p50, p99 and max.
fn summary(latencies: &[Duration]) -> (usize, Duration, Duration, Duration) {
    (
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        percentile(latencies, 1.0),
    )
}

fn request() -> pb::ScoreCvssRequest {
    pb::ScoreCvssRequest {
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
    }
}

/// Calls per second `client` gets answered in a closed loop of 64 callers for `how_long`.
async fn capacity(channel: &Channel, how_long: Duration) -> f64 {
    let answered = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + how_long;
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let (mut client, answered) =
                (VulnAnalyzerClient::new(channel.clone()), answered.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    if client.score_cvss(request()).await.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        let _ = caller.await;
    }
    answered.load(Ordering::Relaxed) as f64 / how_long.as_secs_f64()
}

/// Offers calls at `rate` per second for `how_long`, whatever the answers; returns how many
/// were answered OK and how many were refused or failed.
async fn offer(channel: &Channel, rate: f64, how_long: Duration) -> (u64, u64) {
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let every = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let until = Instant::now() + how_long;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(20_000));
    while Instant::now() < until {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (mut client, ok, refused) = (
            VulnAnalyzerClient::new(channel.clone()),
            ok.clone(),
            refused.clone(),
        );
        tokio::spawn(async move {
            match client.score_cvss(request()).await {
                Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => refused.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        });
    }
    // What is still in flight finishes (or is refused) before the counts are read.
    let _ = in_flight.acquire_many(20_000).await;
    (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let binary = match args.phantom {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let data = tempfile::tempdir()?;
    let (api, probes) = (free_port()?, free_port()?);
    let mut child = quiet_child(&binary, data.path())
        .args(["serve", "vuln-analyzer"])
        .env("PHANTOM_VULN_ANALYZER_ADDR", api.to_string())
        .env("PHANTOM_HEALTH_ADDR", probes.to_string())
        // The subject is the probe port under load, not who may call nor how often one
        // caller may: without the per-caller limit the bench measures the server's capacity,
        // not the limiter's allowance.
        .env("PHANTOM__AUTH__ENABLED", "false")
        .env("PHANTOM__RESILIENCE__SERVER__RATE_LIMIT__ENABLED", "false")
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id().context("the service exited at once")?;
    let channel = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(c) = Channel::from_shared(format!("http://{api}"))?
                .connect()
                .await
                && VulnAnalyzerClient::new(c.clone())
                    .score_cvss(request())
                    .await
                    .is_ok()
            {
                break c;
            }
            anyhow::ensure!(Instant::now() < deadline, "the service never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // The reference: the probe, idle.
    let stop = Arc::new(AtomicBool::new(false));
    let idle = probe_every_100ms(probes, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = summary(&idle.join().expect("the probe thread"));
    let rss_before = rss_of(pid);

    let capacity = capacity(&channel, Duration::from_secs(3)).await;
    let rate = 2.0 * capacity;
    let stop = Arc::new(AtomicBool::new(false));
    let loaded = probe_every_100ms(probes, stop.clone());
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = tokio::spawn({
        let (stop, peak) = (stop.clone(), peak.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (ok, refused) = offer(&channel, rate, args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let loaded = summary(&loaded.join().expect("the probe thread"));
    // jemalloc's background threads give freed pages back over its decay time (10 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss_of(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_later = rss_of(pid);
    let _ = child.kill().await;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("phantom bench probes: vuln-analyzer (ScoreCvss) at twice its capacity");
    println!("  capacity (closed loop, 64 callers)   {capacity:.0} calls/s");
    println!(
        "  offered for {:?}                    {rate:.0} calls/s: {ok} answered, {refused} refused or failed",
        args.duration
    );
    println!(
        "  liveness on the probe port, idle     {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        idle.0,
        ms(idle.1),
        ms(idle.2),
        ms(idle.3)
    );
    println!(
        "  liveness on the probe port, loaded   {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({:.1}x the idle p99)",
        loaded.0,
        ms(loaded.1),
        ms(loaded.2),
        ms(loaded.3),
        ms(loaded.2) / ms(idle.2).max(0.001)
    );
    println!(
        "  RSS                                  {:.1} MiB before, {:.1} MiB at most during, {:.1} MiB 5 s after, {:.1} MiB 15 s after",
        mib(rss_before),
        mib(peak.load(Ordering::Relaxed)),
        mib(rss_after),
        mib(rss_later)
    );
    Ok(())
}
