//! The layers suite: what PHANTOM's server stack costs against tonic alone, on the same RPC
//! shape, in the same run.
//!
//! Four servers, one after the other, each a process of its own:
//! - `tonic`: tonic alone, no middleware, a fixed answer ([`super::reference`]);
//! - `default`: `phantom serve vuln-analyzer` in its default configuration (logs at `info`,
//!   one JSON `api.response` line per call, to a file), authenticated with the services'
//!   token. One change: the per-caller rate limit (1000/s by default) is out of reach, or
//!   the suite would measure the limit and not the stack;
//! - `warn`: the same with logging at `warn`;
//! - `off`: the same at `warn` with every server layer that can be switched off switched
//!   off (rate limit, load shedding, adaptive concurrency); spans, correlation ids, metrics
//!   and authentication stay: they have no switch.
//!
//! Each is measured closed-loop (`concurrency` calls in flight on one HTTP/2 connection, as
//! one gRPC channel would) for its throughput, then at a constant rate (half tonic's
//! throughput) for its latency without coordinated omission. The load generator
//! ([`super::load::RawGrpc`]) runs on core 0, the server on core 1 (`taskset -c 1`), when
//! the machine has two cores; the server's CPU time per call is read from
//! `/proc/<pid>/stat`, a figure the other core's noise barely moves.

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::Context as _;
use prost::Message as _;
use tokio::io::AsyncBufReadExt as _;

use super::{
    Options,
    load::{self, Load, Mode, RawGrpc},
    model::{Better, Metric, Series, SeriesKind, Suite, Target},
};
use crate::bench::attacks::free_port;

/// The path measured.
const PATH: &str = "/phantom.v1.VulnAnalyzer/ScoreCvss";
/// The service the calls come from (a real caller of ScoreCvss).
const CALLER: &str = "scan-orchestrator";

/// One server under measurement.
struct Subject {
    key: &'static str,
    label: &'static str,
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

/// The encoded request every call sends.
fn message() -> Vec<u8> {
    phantom_proto::pb::ScoreCvssRequest {
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
    }
    .encode_to_vec()
}

/// `binary` with `args`, on `core` when given (through `taskset`, which every Linux has).
fn pinned_command(binary: &Path, core: Option<usize>) -> tokio::process::Command {
    let mut command = match core {
        Some(core) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(binary);
            c
        }
        None => tokio::process::Command::new(binary),
    };
    command
        .env_remove("PHANTOM_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The secrets of the `phantom serve` subjects: the key secret `serve` requires, and the
/// services' token the calls carry.
const KEY_SECRET: &str = "bench-key-secret-bench-key-secret-0123456789";
const SERVICE_TOKEN: &str = "bench-service-token-bench-service-token-0123";

async fn start_phantom(
    key: &'static str,
    label: &'static str,
    options: &Options,
    core: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Subject> {
    let addr = free_port()?;
    let data = dir.join(key);
    std::fs::create_dir_all(&data)?;
    let config = if key == "off" {
        "[resilience.server.rate_limit]\nenabled = false\n\
         [resilience.server.load_shed]\nenabled = false\n\
         [resilience.server.adaptive_concurrency]\nenabled = false\n"
    } else {
        "[resilience.server.rate_limit]\ndefault = { per_second = 1e9, burst = 1000000000 }\n"
    };
    let file = data.join("phantom.toml");
    std::fs::write(&file, config)?;
    let log = std::fs::File::create(data.join("stderr.log"))?;
    let child = pinned_command(&options.phantom, core)
        .arg("--config")
        .arg(&file)
        .args(["serve", "vuln-analyzer"])
        .env("PHANTOM_VULN_ANALYZER_ADDR", addr.to_string())
        .env("PHANTOM_DATA_DIR", &data)
        .env(
            "PHANTOM_LOG",
            if key == "default" { "info" } else { "warn" },
        )
        .env("PHANTOM_AUTH_KEY_SECRET", KEY_SECRET)
        .env("PHANTOM_AUTH_SERVICE_TOKEN", SERVICE_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", options.phantom.display()))?;
    Ok(Subject {
        key,
        label,
        child,
        addr,
    })
}

async fn start_reference(options: &Options, core: Option<usize>) -> anyhow::Result<Subject> {
    let mut child = pinned_command(&options.phantom, core)
        .args(["bench", "reference", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", options.phantom.display()))?;
    let stdout = child.stdout.take().context("the reference's stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("the reference server never said where it listens")??;
    Ok(Subject {
        key: "tonic",
        label: "tonic alone",
        child,
        addr: line.trim().parse().context("the reference's address")?,
    })
}

fn bearer() -> http::HeaderValue {
    let value = format!("Bearer phs_{CALLER}_{SERVICE_TOKEN}");
    http::HeaderValue::from_str(&value).expect("an ASCII header value")
}

/// A caller of `subject`, once it answers OK.
async fn ready(subject: &Subject) -> anyhow::Result<RawGrpc> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match RawGrpc::connect(subject.addr, PATH, &message(), 1, Some(bearer())).await {
            Ok(c) => match c.call().await {
                Ok(()) => return Ok(c),
                Err(code) => last = code.to_owned(),
            },
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} never answered OK (last: {last})", subject.label)
}

/// CPU time (user + system) of `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) : state is field 3, utime 14,
    // stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture PHANTOM runs on.
    Some(ticks / 100.0)
}

/// Closed loop on `subject`: its throughput, and its CPU time per call.
async fn closed_loop(
    subject: &Subject,
    caller: &RawGrpc,
    options: &Options,
    client_core: Option<usize>,
) -> anyhow::Result<(load::Measured, Option<f64>)> {
    let closed = Load {
        mode: Mode::Closed {
            concurrency: options.concurrency,
        },
        duration: options.duration,
        warmup: options.warmup,
    };
    let pid = subject.child.id();
    let before = pid.and_then(cpu_seconds);
    let measured = offer(caller, closed, client_core).await?;
    let after = pid.and_then(cpu_seconds);
    let cpu_us_per_call = match (before, after) {
        (Some(b), Some(a)) if measured.made > 0 => Some((a - b) * 1e6 / measured.made as f64),
        _ => None,
    };
    Ok((measured, cpu_us_per_call))
}

/// `per_second` calls to `caller` at a constant rate.
async fn constant_rate(
    caller: &RawGrpc,
    per_second: f64,
    options: &Options,
    client_core: Option<usize>,
) -> anyhow::Result<load::Measured> {
    let load = Load {
        mode: Mode::Rate {
            per_second,
            max_in_flight: 10_000,
        },
        duration: options.duration,
        warmup: options.warmup,
    };
    offer(caller, load, client_core).await
}

/// `load` offered to `caller` from the load generator's thread, pinned to `core`.
async fn offer(
    caller: &RawGrpc,
    load: Load,
    core: Option<usize>,
) -> anyhow::Result<load::Measured> {
    let c = caller.clone();
    Ok(load::pinned(core, move || async move {
        load::run(load, move || {
            let c = c.clone();
            async move { c.call().await }
        })
        .await
    })
    .await?
    .0)
}

/// Runs the suite once.
pub async fn run(options: &Options) -> anyhow::Result<Suite> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (client_core, server_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let dir = tempfile::tempdir()?;
    let mut suite = Suite {
        name: "layers".into(),
        ..Default::default()
    };
    suite.notes.push(match server_core {
        Some(_) => "load generator pinned to core 0 (sched_setaffinity), each server to core 1 \
                    (taskset -c 1)"
            .into(),
        None => "one core: load generator and server share it".into(),
    });
    suite.notes.push(format!(
        "closed loop: {} calls in flight on one HTTP/2 connection; latency at a constant rate \
         of half the slowest server's throughput, timed from when each call was due",
        options.concurrency
    ));
    // All four run at once (idle but the one measured), so that the constant rate, chosen
    // after every throughput is known, is the same for all.
    let mut subjects = vec![start_reference(options, server_core).await?];
    for (key, label) in [
        ("default", "phantom, default configuration"),
        ("warn", "phantom, logging at warn"),
        ("off", "phantom, layers off (warn)"),
    ] {
        subjects.push(start_phantom(key, label, options, server_core, dir.path()).await?);
    }
    let mut callers = Vec::new();
    for subject in &subjects {
        callers.push(ready(subject).await?);
    }
    let mut throughput = std::collections::BTreeMap::new();
    let mut cpu_per_call = std::collections::BTreeMap::new();
    for (subject, caller) in subjects.iter().zip(&callers) {
        let (closed, cpu) = closed_loop(subject, caller, options, client_core).await?;
        let ok = closed.throughput();
        throughput.insert(subject.key, ok);
        suite.metrics.push(Metric::new(
            &format!("{}_calls_per_s", subject.key),
            "calls/s",
            Better::Higher,
            ok,
        ));
        if let Some(cpu) = cpu {
            cpu_per_call.insert(subject.key, cpu);
            suite.metrics.push(Metric::new(
                &format!("{}_server_cpu_us_per_call", subject.key),
                "us",
                Better::Lower,
                cpu,
            ));
        }
        let failed = closed.total() - closed.ok();
        if failed > 0 {
            suite.notes.push(format!(
                "{}: {failed} calls did not return OK: {:?}",
                subject.label, closed.outcomes
            ));
        }
        suite.series.push(Series {
            name: subject.label.into(),
            chart: "ScoreCvss throughput, closed loop".into(),
            kind: SeriesKind::Timeline,
            x_label: "s".into(),
            y_label: "calls/s".into(),
            points: closed.timeline_points(),
        });
    }
    // Half the slowest server's throughput: a load every one of them carries.
    let rate = (throughput.values().copied().fold(f64::INFINITY, f64::min) / 2.0).max(10.0);
    suite
        .notes
        .push(format!("constant rate: {rate:.0} calls/s"));
    for (subject, caller) in subjects.iter().zip(&callers) {
        let r = constant_rate(caller, rate, options, client_core).await?;
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
            suite.metrics.push(Metric::new(
                &format!("{}_{name}_ms", subject.key),
                "ms",
                Better::Lower,
                r.quantile_ms(q),
            ));
        }
        suite.series.push(Series {
            name: subject.label.into(),
            chart: "ScoreCvss latency at a constant rate".into(),
            kind: SeriesKind::Cdf,
            x_label: "latency (ms)".into(),
            y_label: "share of calls".into(),
            points: r.cdf(),
        });
    }
    for mut subject in subjects {
        let _ = subject.child.kill().await;
    }
    let tonic = throughput["tonic"].max(1e-9);
    suite.metrics.push(
        Metric::new(
            "default_vs_tonic",
            "x",
            Better::Higher,
            throughput["default"] / tonic,
        )
        .target(Target::AtLeast(0.8)),
    );
    suite.metrics.push(
        Metric::new(
            "warn_vs_tonic",
            "x",
            Better::Higher,
            throughput["warn"] / tonic,
        )
        .target(Target::AtLeast(0.85)),
    );
    // The same ratios from the servers' CPU time per call: what throughput would be with
    // the server's core to itself, whatever the load generator or the other core's noise.
    if let Some(&tonic_cpu) = cpu_per_call.get("tonic") {
        for key in ["default", "warn"] {
            if let Some(&cpu) = cpu_per_call.get(key) {
                suite.metrics.push(Metric::new(
                    &format!("{key}_vs_tonic_by_cpu"),
                    "x",
                    Better::Higher,
                    tonic_cpu / cpu.max(1e-9),
                ));
            }
        }
    }
    suite.metrics.push(Metric::new(
        "off_vs_tonic",
        "x",
        Better::Higher,
        throughput["off"] / tonic,
    ));
    suite.metrics.push(Metric::new(
        "layers_on_vs_off",
        "x",
        Better::Higher,
        throughput["warn"] / throughput["off"].max(1e-9),
    ));
    Ok(suite)
}
