//! `phantom bench`: the benchmark runner, and the benchmarks it runs (never by `make test`:
//! each suite has a smoke test with a tiny duration).
//!
//! # The runner
//! `phantom bench --all` (or some of `--layers --database --cache --health --websocket
//! --notifier --scan --load`, and `--chaos`) runs suites, each a set of named metrics
//! ([`model`]), `--repeat` times, and prints them. `--save NAME` keeps the run as JSON under
//! the results directory, with the machine, the commit and the configuration; `--compare A
//! B` prints each metric's change with a verdict that accounts for noise (the spread of the
//! repeats); `--report FILE.html` draws the run ([`report`]).
//!
//! # Suites
//! - [`layers`]: `VulnAnalyzer/ScoreCvss` served by tonic alone (a tiny server, the
//!   reference), by `phantom serve vuln-analyzer` in its default configuration, at `warn`,
//!   and with the resilience layers off, each a separate process on its own core
//!   ([`reference`] is tonic alone; [`load`] the load generator the suites share);
//! - [`rpc`]: the same RPC in process, layers on and off, and twice the saturating load
//!   (`--load`); the scanners against `nmap -sT -T5` (`--scan`);
//! - [`stores`]: the database and the cache, in process (`--database`, `--cache`);
//! - [`system`]: `/health` and gRPC health, the WebSocket gateway, against `phantom up`
//!   (`--health`, `--websocket`);
//! - [`notify`]: the notifier's delivery latency, CRITICAL alone and under a LOW flood
//!   (`--notifier`, and `phantom bench notify`);
//! - [`chaos`]: the same workload with the layers on and off under injected faults
//!   (`--chaos`);
//! - [`attacks`], [`probes`], [`hedging`]: their own subcommands (see `phantom bench --help`).
//!
//! Figures and the commands that made them: `docs/benchmarks.md`.

pub mod attacks;
pub mod chaos;
pub mod hedging;
pub mod layers;
pub mod load;
pub mod model;
pub mod notify;
pub mod probes;
pub mod reference;
pub mod report;
pub mod rpc;
pub mod stores;
pub mod system;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;

use model::{Results, Suite};

/// The `p` quantile (0 to 1) of `v`, nearest rank; zero for no samples.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Adds `m`'s throughput (`<prefix>_per_s`, in `unit`) and p50 and p99 latency to `suite`,
/// and a note when some of its calls failed.
pub(crate) fn push_measured(suite: &mut Suite, prefix: &str, unit: &str, m: &load::Measured) {
    use model::{Better, Metric};

    suite.metrics.push(Metric::new(
        &format!("{prefix}_per_s"),
        unit,
        Better::Higher,
        m.throughput(),
    ));
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        suite.metrics.push(Metric::new(
            &format!("{prefix}_{name}_ms"),
            "ms",
            Better::Lower,
            m.quantile_ms(q),
        ));
    }
    let failed = m.total() - m.ok();
    if failed > 0 {
        suite
            .notes
            .push(format!("{prefix}: {failed} failed: {:?}", m.outcomes));
    }
}

/// The suites of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SuiteName {
    /// The server stack against tonic alone.
    Layers,
    /// Reads and writes through the storage the services use.
    Database,
    /// The cache: hits, misses, the breaker's pass-through.
    Cache,
    /// `/health` and the gRPC health checks.
    Health,
    /// The notifier's WebSocket gateway.
    Websocket,
    /// The notifier's delivery, CRITICAL under a LOW flood.
    Notifier,
    /// The scanners against nmap.
    Scan,
    /// Twice the saturating load.
    Load,
    /// The chaos scenario, layers on and off.
    Chaos,
}

impl SuiteName {
    /// Every suite `--all` runs (not chaos: it has its own flag and takes minutes).
    pub const ALL: [SuiteName; 8] = [
        SuiteName::Layers,
        SuiteName::Database,
        SuiteName::Cache,
        SuiteName::Health,
        SuiteName::Websocket,
        SuiteName::Notifier,
        SuiteName::Scan,
        SuiteName::Load,
    ];

    /// Its name in results.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteName::Layers => "layers",
            SuiteName::Database => "database",
            SuiteName::Cache => "cache",
            SuiteName::Health => "health",
            SuiteName::Websocket => "websocket",
            SuiteName::Notifier => "notifier",
            SuiteName::Scan => "scan",
            SuiteName::Load => "load",
            SuiteName::Chaos => "chaos",
        }
    }
}

/// What every suite is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of each measurement (a suite with phases measures each this long).
    pub duration: Duration,
    /// Warm-up before each measurement, excluded from the figures.
    pub warmup: Duration,
    /// Concurrent callers of closed-loop measurements.
    pub concurrency: usize,
    /// The phantom binary that runs servers as separate processes (this one by default).
    pub phantom: PathBuf,
    /// A smoke run: tiny durations and sizes, to check that the suite works, not to measure.
    pub smoke: bool,
}

impl Options {
    /// Options for a smoke run of the binary at `phantom`.
    pub fn smoke(phantom: PathBuf) -> Self {
        Self {
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            concurrency: 4,
            phantom,
            smoke: true,
        }
    }
}

/// Runs one suite once.
pub async fn run_suite(name: SuiteName, options: &Options) -> anyhow::Result<Suite> {
    match name {
        SuiteName::Layers => layers::run(options).await,
        SuiteName::Database => stores::database(options).await,
        SuiteName::Cache => stores::cache(options).await,
        SuiteName::Health => system::health(options).await,
        SuiteName::Websocket => system::websocket(options).await,
        SuiteName::Notifier => notify::suite(options).await,
        SuiteName::Scan => rpc::scan_suite(options).await,
        SuiteName::Load => rpc::load_suite(options).await,
        SuiteName::Chaos => chaos::run(options).await,
    }
}

/// Runs `suites`, each `repeat` times, merging the repeats: a metric's samples are one per
/// repeat; series and events are the last repeat's. Prints each suite's table as it ends.
pub async fn run(
    suites: &[SuiteName],
    repeat: usize,
    options: &Options,
) -> anyhow::Result<Results> {
    let mut results = Results {
        format: model::FORMAT,
        name: String::new(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        machine: machine(),
        commit: commit(),
        config: BTreeMap::from([
            (
                "duration".to_owned(),
                humantime::format_duration(options.duration).to_string(),
            ),
            (
                "warmup".to_owned(),
                humantime::format_duration(options.warmup).to_string(),
            ),
            ("concurrency".to_owned(), options.concurrency.to_string()),
            ("repeat".to_owned(), repeat.to_string()),
            ("smoke".to_owned(), options.smoke.to_string()),
        ]),
        suites: Vec::new(),
        failed: Vec::new(),
    };
    for &name in suites {
        let mut merged: Option<Suite> = None;
        for i in 0..repeat.max(1) {
            let suite = match run_suite(name, options).await {
                Ok(suite) => suite,
                Err(err) => {
                    // The other suites still run, and the run is still saved: a failure is
                    // part of the record, and the exit status says it.
                    let failure = format!("repeat {} failed: {err:#}", i + 1);
                    eprintln!("phantom bench: suite {}: {failure}", name.as_str());
                    let suite = merged.get_or_insert_with(|| Suite {
                        name: name.as_str().to_owned(),
                        ..Default::default()
                    });
                    suite.notes.push(failure);
                    results.failed.push(name.as_str().to_owned());
                    continue;
                }
            };
            merged = Some(match merged {
                None => suite,
                Some(mut m) => {
                    for metric in suite.metrics {
                        match m.metrics.iter_mut().find(|x| x.name == metric.name) {
                            Some(x) => x.samples.extend(metric.samples),
                            None => m.metrics.push(metric),
                        }
                    }
                    m.series = suite.series;
                    m.events = suite.events;
                    for note in suite.notes {
                        if !m.notes.contains(&note) {
                            m.notes.push(note);
                        }
                    }
                    m
                }
            });
        }
        let suite = merged.expect("at least one repeat");
        print!("{}", table(&suite));
        results.suites.push(suite);
    }
    results.failed.dedup();
    Ok(results)
}

/// A suite's metrics as a table: median, spread, target.
pub fn table(suite: &Suite) -> String {
    let mut out = format!("\n{}\n", suite.name);
    for m in &suite.metrics {
        let (lo, hi) = m.spread();
        let spread = if m.samples.len() > 1 {
            format!("[{} .. {}]", fmt_value(lo), fmt_value(hi))
        } else {
            String::new()
        };
        let target = m.target.map_or(String::new(), |t| {
            format!(
                "target {t}: {}",
                if t.met(m.median()) { "met" } else { "NOT met" }
            )
        });
        out.push_str(&format!(
            "  {:<34} {:>12} {:<8} {:<24} {target}\n",
            m.name,
            fmt_value(m.median()),
            m.unit,
            spread
        ));
    }
    for note in &suite.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// A figure with about four significant digits.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.3}")
    } else if a >= 0.001 || a == 0.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.6}")
    }
}

/// Where `NAME` is saved: `<dir>/NAME.json`; a path ending in `.json` is taken as it is.
pub fn results_path(dir: &Path, name: &str) -> PathBuf {
    if name.ends_with(".json") {
        PathBuf::from(name)
    } else {
        dir.join(format!("{name}.json"))
    }
}

/// Saves `results` as `name` under `dir`; returns the file.
pub fn save(results: &mut Results, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    results.name = name.trim_end_matches(".json").to_owned();
    let path = results_path(dir, name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads a saved run.
pub fn load(dir: &Path, name: &str) -> anyhow::Result<Results> {
    let path = results_path(dir, name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: Results = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a saved benchmark run", path.display()))?;
    anyhow::ensure!(
        results.format == model::FORMAT,
        "{} is of format {}, this phantom reads format {}",
        path.display(),
        results.format,
        model::FORMAT
    );
    Ok(results)
}

/// The comparison of B against A as a table.
pub fn comparison_table(a: &Results, b: &Results) -> String {
    let (deltas, alone) = model::compare(a, b, MIN_CHANGE);
    let mut out = format!(
        "{} ({}, {}) -> {} ({}, {})\n",
        label(a),
        a.commit,
        a.started,
        label(b),
        b.commit,
        b.started
    );
    if a.machine != b.machine {
        out.push_str("note: the two runs are from different machines\n");
    }
    out.push_str(&format!(
        "  {:<44} {:>12} {:>12} {:>9}  {}\n",
        "metric", "A", "B", "change", "verdict"
    ));
    for d in &deltas {
        out.push_str(&format!(
            "  {:<44} {:>12} {:>12} {:>8.1}%  {}\n",
            format!("{} ({})", d.metric, d.unit),
            fmt_value(d.a.0),
            fmt_value(d.b.0),
            d.change_pct,
            d.verdict
        ));
    }
    for (metric, only) in alone {
        out.push_str(&format!("  {metric}: only in {only}\n"));
    }
    out
}

/// A change of a single-sample metric smaller than this share is "no change".
pub const MIN_CHANGE: f64 = 0.05;

fn label(r: &Results) -> &str {
    if r.name.is_empty() {
        "(unsaved)"
    } else {
        &r.name
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The machine this runs on.
pub fn machine() -> model::Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let meminfo = read("/proc/meminfo");
    let os_release = read("/etc/os-release");
    let pretty = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"');
    model::Machine {
        host: read("/proc/sys/kernel/hostname").trim().to_owned(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        memory_mib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024),
        os: format!(
            "{} (Linux {})",
            pretty,
            read("/proc/sys/kernel/osrelease").trim()
        ),
    }
}

/// The commit of the working tree this runs from (`git describe --always --dirty`), or
/// `unknown` outside a repository.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
