//! `phantom bench`: one real RPC over loopback, with every resilience layer on and then off,
//! in the same run; then twice the saturating load (twice the callers that saturate the
//! server, against a server shedding beyond its bound), to see the excess shed fast.
//!
//! The RPC is `VulnAnalyzer/ScoreCvss` (no storage on its path), served by an in-process
//! vuln-analyzer. Every call's gRPC status is checked, not only the HTTP status: a call
//! counts as good only when it returns OK.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use phantom_kit::{CancellationToken, Listeners, client, config::ClientPolicy};
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};

use super::percentile;
use crate::config::{Config, ServiceName};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct BenchArgs {
    /// Length of each measurement.
    pub duration: Duration,
    /// Concurrent callers of the closed-loop runs.
    pub concurrency: usize,
}

/// One run's figures.
#[derive(Debug, Default, Clone)]
struct Run {
    ok: u64,
    shed: u64,
    deadline: u64,
    other: u64,
    latencies: Vec<Duration>,
    shed_latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<26} {:>9.0} ok/s   p50 {:>7.2} ms   p99 {:>7.2} ms   shed {:>6}   deadline {:>5}   other {:>4}",
            self.throughput(),
            ms(percentile(&self.latencies, 0.5)),
            ms(percentile(&self.latencies, 0.99)),
            self.shed,
            self.deadline,
            self.other,
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn layers_off(config: &mut Config) {
    let s = &mut config.resilience.server;
    s.rate_limit.enabled = false;
    s.load_shed.enabled = false;
}

fn client_policy(on: bool) -> ClientPolicy {
    let mut p = ClientPolicy::default();
    // The client's own bounds out of the way: the run measures the layers' cost and the
    // server's shedding, not the client's limits (the adaptive one still counts its calls).
    p.bulkhead.max_concurrent = 100_000;
    p.adaptive_concurrency.enabled = false;
    if !on {
        p.retry.enabled = false;
        p.bulkhead.enabled = false;
        p.circuit_breaker.enabled = false;
    }
    p
}

/// Starts a vuln-analyzer on a free port; returns its address and the token that stops it.
/// Its rate limit is set out of reach: the run measures the layers' cost, not their limits.
async fn analyzer(
    mut config: Config,
    data: &std::path::Path,
) -> anyhow::Result<(String, CancellationToken)> {
    // A database of its own: SQLite offers no migration lock between separate pools.
    config.storage.data_dir = tempfile::tempdir_in(data)?.keep();
    // The subject is the layers' cost, not who may call (`phantom bench attacks` replays as
    // an authenticated caller): with auth on and no credential, every call would be refused.
    config.auth.enabled = false;
    config.resilience.server.rate_limit.default = phantom_layers::rate_limit::QuotaConfig {
        per_second: 1e9,
        burst: 1_000_000_000,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(phantom_vuln_analyzer::run(
        config.vuln_analyzer(),
        Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        shutdown.clone(),
    ));
    let url = format!("http://{addr}");
    // Wait until it answers.
    let probe = client::channel(
        "bench",
        ServiceName::VulnAnalyzer.as_str(),
        &url,
        &client_policy(false),
        None,
        None,
        &Default::default(),
    )?;
    let mut c = VulnAnalyzerClient::new(probe);
    for _ in 0..200 {
        if c.score_cvss(request()).await.is_ok() {
            return Ok((url, shutdown));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the benchmark server did not start")
}

fn request() -> pb::ScoreCvssRequest {
    pb::ScoreCvssRequest {
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
    }
}

fn record(
    run: &Mutex<Run>,
    started: Instant,
    result: Result<tonic::Response<pb::ScoreCvssResponse>, tonic::Status>,
) {
    let took = started.elapsed();
    let mut r = run.lock().expect("run lock");
    match result {
        Ok(resp) if resp.get_ref().base_score == 9.8 => {
            r.ok += 1;
            r.latencies.push(took);
        }
        Ok(_) => r.other += 1,
        Err(s) => match s.code() {
            tonic::Code::ResourceExhausted => {
                r.shed += 1;
                r.shed_latencies.push(took);
            }
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => r.deadline += 1,
            _ => r.other += 1,
        },
    }
}

/// Closed loop: `concurrency` callers, each calling as fast as answers come.
async fn closed_loop(url: &str, on: bool, args: BenchArgs) -> anyhow::Result<Run> {
    let channel = client::channel(
        "bench",
        ServiceName::VulnAnalyzer.as_str(),
        url,
        &client_policy(on),
        None,
        None,
        &Default::default(),
    )?;
    let run = Arc::new(Mutex::new(Run::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let mut c = VulnAnalyzerClient::new(channel.clone());
        let (run, stop) = (run.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let result = c.score_cvss(request()).await;
                let refused = result.is_err();
                record(&run, t, result);
                if refused {
                    // A refusal can be ready at once: without a yield, callers refused in a
                    // loop keep every worker busy and the run's own timer never fires.
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let mut r = run.lock().expect("run lock").clone();
    r.elapsed = start.elapsed();
    Ok(r)
}

/// Wall times of one sweep of `ports` on 127.0.0.1: the built-in engine without banners,
/// with banners, and `nmap -sT -T5` (None when nmap is not installed); each with the open
/// ports it found.
#[derive(Debug)]
pub struct Sweeps {
    /// Built-in connect sweep.
    pub builtin: (Duration, usize),
    /// Built-in with banner grabbing (500 ms).
    pub banners: (Duration, usize),
    /// nmap.
    pub nmap: Option<(Duration, usize)>,
}

/// The built-in engine and `nmap -sT -T5` on the same loopback ports, one after the other.
pub async fn sweeps(ports: std::ops::RangeInclusive<u16>) -> anyhow::Result<Sweeps> {
    use phantom_scan_orchestrator::scanner::{BuiltinScanner, Event, Plan, Scanner};

    let (first, last) = (*ports.start(), *ports.end());
    let plan = Plan::new(
        vec![phantom_scan_orchestrator::repository::ResolvedTarget {
            hostname: None,
            address: "127.0.0.1".parse()?,
        }],
        ports.collect(),
    );
    let sweep = |banner_timeout: Duration| {
        BuiltinScanner::new(&phantom_scan_orchestrator::settings::ScanConfig {
            banner_timeout,
            ..Default::default()
        })
    };
    let mut results = Vec::new();
    for engine in [sweep(Duration::ZERO), sweep(Duration::from_millis(500))] {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let counter = tokio::spawn(async move {
            let mut open = 0;
            while let Some(e) = rx.recv().await {
                if matches!(e, Event::Open(_)) {
                    open += 1;
                }
            }
            open
        });
        let t = Instant::now();
        engine.scan(&plan, tx, CancellationToken::new()).await?;
        let took = t.elapsed();
        results.push((took, counter.await?));
    }
    let nmap = match phantom_scan_orchestrator::scanner::find_binary("nmap") {
        Some(nmap) => {
            let t = Instant::now();
            let out = tokio::process::Command::new(nmap)
                .args([
                    "-sT",
                    "-T5",
                    "-Pn",
                    "-n",
                    &format!("-p{first}-{last}"),
                    "-oX",
                    "-",
                    "127.0.0.1",
                ])
                .output()
                .await?;
            let took = t.elapsed();
            let open = String::from_utf8_lossy(&out.stdout)
                .matches("state=\"open\"")
                .count();
            Some((took, open))
        }
        None => None,
    };
    Ok(Sweeps {
        builtin: results[0],
        banners: results[1],
        nmap,
    })
}

/// The scan suite: a TCP sweep of 127.0.0.1 (every port; the first 2048 in a smoke run) by
/// the built-in engine, with and without banners, and by `nmap -sT -T5`.
pub async fn scan_suite(options: &super::Options) -> anyhow::Result<super::model::Suite> {
    use super::model::{Better, Metric, Suite, Target};

    let last = if options.smoke { 2048 } else { u16::MAX };
    let s = sweeps(1..=last).await?;
    let mut suite = Suite {
        name: "scan".into(),
        ..Default::default()
    };
    suite
        .notes
        .push(format!("ports 1-{last} of 127.0.0.1, one sweep each"));
    suite.metrics.push(Metric::new(
        "builtin_sweep_ms",
        "ms",
        Better::Lower,
        ms(s.builtin.0),
    ));
    suite.metrics.push(Metric::new(
        "builtin_banners_ms",
        "ms",
        Better::Lower,
        ms(s.banners.0),
    ));
    suite.metrics.push(Metric::new(
        "open_ports",
        "ports",
        Better::Neither,
        s.builtin.1 as f64,
    ));
    match s.nmap {
        Some((took, open)) => {
            suite
                .metrics
                .push(Metric::new("nmap_ms", "ms", Better::Lower, ms(took)));
            suite.metrics.push(
                Metric::new(
                    "builtin_vs_nmap_wall",
                    "x",
                    Better::Lower,
                    s.builtin.0.as_secs_f64() / took.as_secs_f64().max(1e-9),
                )
                .target(Target::AtMost(0.7)),
            );
            if open != s.builtin.1 {
                suite.notes.push(format!(
                    "nmap found {open} open ports, the built-in engine {}",
                    s.builtin.1
                ));
            }
        }
        None => suite
            .notes
            .push("nmap is not installed: no reference".into()),
    }
    Ok(suite)
}

async fn scanners(_args: BenchArgs) -> anyhow::Result<()> {
    let s = sweeps(1..=u16::MAX).await?;
    println!("full TCP sweep of 127.0.0.1 (65535 ports):");
    for (label, (took, open)) in [
        ("builtin, connect sweep", s.builtin),
        ("builtin, with banners", s.banners),
    ] {
        println!("  {label:<24} {:>8.0} ms   {open} open", ms(took));
    }
    match s.nmap {
        Some((took, open)) => {
            println!(
                "  {:<24} {:>8.0} ms   {open} open",
                "nmap -sT -T5",
                ms(took)
            );
            println!(
                "  builtin connect sweep / nmap wall time: {:.2}x",
                s.builtin.0.as_secs_f64() / took.as_secs_f64()
            );
        }
        None => println!("  nmap not installed: no comparison"),
    }
    Ok(())
}

/// The load suite: `ScoreCvss` in process (layers on), closed loop at `concurrency` callers
/// for the peak; then twice as many callers against a server that sheds beyond
/// `concurrency` calls in flight: the excess must be refused at once, not queued.
pub async fn load_suite(options: &super::Options) -> anyhow::Result<super::model::Suite> {
    use super::model::{Better, Metric, Suite, Target};

    let data = tempfile::tempdir()?;
    let args = BenchArgs {
        duration: options.duration,
        concurrency: options.concurrency,
    };
    let (url, stop) = analyzer(Config::default(), data.path()).await?;
    closed_loop(
        &url,
        true,
        BenchArgs {
            duration: options.warmup,
            ..args
        },
    )
    .await?;
    let peak = closed_loop(&url, true, args).await?;
    stop.cancel();
    let mut shedding = Config::default();
    shedding.resilience.server.load_shed.max_concurrent =
        u32::try_from(options.concurrency).unwrap_or(u32::MAX);
    let (shed_url, shed_stop) = analyzer(shedding, data.path()).await?;
    let over = closed_loop(
        &shed_url,
        false,
        BenchArgs {
            concurrency: options.concurrency * 2,
            ..args
        },
    )
    .await?;
    shed_stop.cancel();
    let mut suite = Suite {
        name: "load".into(),
        ..Default::default()
    };
    suite.notes.push(format!(
        "ScoreCvss in process; peak with {} callers, overload with {} against a server shedding beyond {}",
        options.concurrency,
        options.concurrency * 2,
        options.concurrency
    ));
    let m = |name: &str, unit: &str, better, v| Metric::new(name, unit, better, v);
    suite.metrics.extend([
        m(
            "peak_calls_per_s",
            "calls/s",
            Better::Higher,
            peak.throughput(),
        ),
        m(
            "peak_p99_ms",
            "ms",
            Better::Lower,
            ms(percentile(&peak.latencies, 0.99)),
        ),
        m(
            "overload_goodput_calls_per_s",
            "calls/s",
            Better::Higher,
            over.throughput(),
        ),
        m(
            "goodput_vs_peak",
            "x",
            Better::Higher,
            over.throughput() / peak.throughput().max(1e-9),
        )
        .target(Target::AtLeast(0.9)),
        m(
            "shed_p50_ms",
            "ms",
            Better::Lower,
            ms(percentile(&over.shed_latencies, 0.5)),
        ),
        m(
            "shed_p99_ms",
            "ms",
            Better::Lower,
            ms(percentile(&over.shed_latencies, 0.99)),
        ),
        m("shed_calls", "calls", Better::Neither, over.shed as f64),
        m(
            "deadline_exceeded",
            "calls",
            Better::Lower,
            over.deadline as f64,
        ),
        m(
            "other_errors",
            "calls",
            Better::Lower,
            (over.other + peak.other) as f64,
        ),
    ]);
    Ok(suite)
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut off_config = Config::default();
    layers_off(&mut off_config);
    let (on_url, on_stop) = analyzer(Config::default(), data.path()).await?;
    let (off_url, off_stop) = analyzer(off_config, data.path()).await?;

    println!(
        "phantom bench: ScoreCvss over loopback, {} callers, {:?} per run",
        args.concurrency, args.duration
    );
    // Warm both paths (connections, allocator) before measuring.
    closed_loop(
        &on_url,
        true,
        BenchArgs {
            duration: Duration::from_millis(500),
            ..args
        },
    )
    .await?;
    closed_loop(
        &off_url,
        false,
        BenchArgs {
            duration: Duration::from_millis(500),
            ..args
        },
    )
    .await?;
    let off = closed_loop(&off_url, false, args).await?;
    let on = closed_loop(&on_url, true, args).await?;
    println!("{}", off.line("layers off"));
    println!("{}", on.line("layers on"));
    let p99 = |r: &Run| percentile(&r.latencies, 0.99).as_secs_f64();
    println!(
        "on/off: throughput {:.2}x (aim >= 0.85x), p99 {:.2}x (aim <= 1.25x)",
        on.throughput() / off.throughput(),
        p99(&on) / p99(&off)
    );

    // Twice the saturating load: `concurrency` callers saturate the server; twice as many
    // call a server that sheds beyond `concurrency` calls in flight. The excess must be
    // refused at once (RESOURCE_EXHAUSTED), not queued into timeouts.
    let peak = on.throughput();
    let mut shedding = Config::default();
    shedding.resilience.server.load_shed.max_concurrent =
        u32::try_from(args.concurrency).unwrap_or(u32::MAX);
    let (shed_url, shed_stop) = analyzer(shedding, data.path()).await?;
    let doubled = BenchArgs {
        concurrency: args.concurrency * 2,
        ..args
    };
    let over = closed_loop(&shed_url, false, doubled).await?;
    println!("{}", over.line("2x saturating load"));
    println!(
        "goodput {:.2}x peak (aim >= 0.9x); shed calls answered in p50 {:.2} ms / p99 {:.2} ms; {} ran into their deadline",
        over.throughput() / peak,
        ms(percentile(&over.shed_latencies, 0.5)),
        ms(percentile(&over.shed_latencies, 0.99)),
        over.deadline
    );
    scanners(args).await?;
    for stop in [on_stop, off_stop, shed_stop] {
        stop.cancel();
    }
    Ok(())
}
