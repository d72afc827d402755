//! Smoke tests of the benchmark runner: each suite once with a tiny duration (they check
//! that a suite runs and reports its metrics, not how fast anything is: benchmarks never
//! run in `make test`), and the runner's command line: --save, --compare, --report.

use std::path::PathBuf;

use phantom::bench::{self, Options, SuiteName, model::Suite};

fn options() -> Options {
    Options::smoke(PathBuf::from(env!("CARGO_BIN_EXE_phantom")))
}

async fn smoke(name: SuiteName) -> Suite {
    let suite = bench::run_suite(name, &options())
        .await
        .unwrap_or_else(|e| panic!("suite {}: {e:#}", name.as_str()));
    assert_eq!(suite.name, name.as_str());
    for m in &suite.metrics {
        assert!(
            m.samples.len() == 1 && m.samples[0].is_finite(),
            "{}/{}: {:?}",
            suite.name,
            m.name,
            m.samples
        );
    }
    suite
}

fn value(suite: &Suite, metric: &str) -> f64 {
    suite
        .metrics
        .iter()
        .find(|m| m.name == metric)
        .unwrap_or_else(|| panic!("{} has no {metric}: {:?}", suite.name, suite.metrics))
        .samples[0]
}

#[tokio::test]
async fn the_layers_suite_measures_every_server_against_tonic_alone() {
    let s = smoke(SuiteName::Layers).await;
    for key in ["tonic", "default", "warn", "off"] {
        assert!(value(&s, &format!("{key}_calls_per_s")) > 0.0, "{key}");
        assert!(value(&s, &format!("{key}_p99_ms")) > 0.0, "{key}");
    }
    assert!(value(&s, "default_vs_tonic") > 0.0);
    assert!(
        !s.notes.iter().any(|n| n.contains("did not return OK")),
        "every call must be OK: {:?}",
        s.notes
    );
    assert_eq!(
        s.series
            .iter()
            .filter(|x| x.kind == bench::model::SeriesKind::Cdf)
            .count(),
        4
    );
}

#[tokio::test]
async fn the_database_suite_writes_then_reads() {
    let s = smoke(SuiteName::Database).await;
    assert!(value(&s, "insert_per_s") > 0.0);
    assert!(value(&s, "select_per_s") > 0.0);
    assert!(
        s.notes.iter().all(|n| !n.contains("failed")),
        "{:?}",
        s.notes
    );
}

#[tokio::test]
async fn the_cache_suite_hits_misses_and_writes() {
    let s = smoke(SuiteName::Cache).await;
    for m in [
        "get_hit_per_s",
        "get_miss_per_s",
        "set_per_s",
        "get_compressed_6k_per_s",
    ] {
        assert!(value(&s, m) > 0.0, "{m}");
    }
    assert!(
        s.notes.iter().all(|n| !n.contains("failed")),
        "{:?}",
        s.notes
    );
}

#[tokio::test]
async fn the_health_suite_asks_http_and_grpc_health() {
    let s = smoke(SuiteName::Health).await;
    assert!(value(&s, "http_health_per_s") > 0.0);
    assert!(value(&s, "grpc_health_check_per_s") > 0.0);
}

#[tokio::test]
async fn the_websocket_suite_delivers_every_notification() {
    let s = smoke(SuiteName::Websocket).await;
    assert_eq!(value(&s, "delivered_share"), 100.0, "{:?}", s.notes);
    assert!(value(&s, "delivery_p99_ms") > 0.0);
}

#[tokio::test]
async fn the_scan_suite_sweeps_loopback() {
    let s = smoke(SuiteName::Scan).await;
    assert!(value(&s, "builtin_sweep_ms") > 0.0);
}

#[tokio::test]
async fn the_load_suite_sheds_the_excess() {
    let s = smoke(SuiteName::Load).await;
    assert!(value(&s, "peak_calls_per_s") > 0.0);
    assert!(value(&s, "overload_goodput_calls_per_s") > 0.0);
}

/// The faults of the chaos suite, by the key its events and notes name them with.
const CHAOS_FAULTS: [&str; 4] = ["llm_errors", "llm_429", "redis_down", "db_latency"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_suite_measures_both_phases_and_injects_and_lifts_every_fault_it_can() {
    let s = smoke(SuiteName::Chaos).await;
    for phase in ["on", "off"] {
        let rate = value(&s, &format!("{phase}/success_rate"));
        assert!((0.0..=100.0).contains(&rate), "{phase}: {rate}");
        assert!(value(&s, &format!("{phase}/calls")) > 0.0);
        for name in ["p50_ms", "p99_ms", "goodput", "wasted_calls"] {
            value(&s, &format!("{phase}/{name}"));
        }
        let label = format!("layers {phase}");
        for chart in ["goodput over time", "latency CDF"] {
            assert!(
                s.series
                    .iter()
                    .any(|x| x.name.contains(&label) && x.chart.contains(chart)),
                "no {chart} of {label}"
            );
        }
    }
    value(&s, "on_vs_off/success_rate");
    // Every fault was injected and lifted in both phases, or the notes say why not; with the
    // backends the test runner provides, none may be skipped.
    let required = std::env::var_os("PHANTOM_REQUIRE_BACKENDS").is_some();
    for fault in CHAOS_FAULTS {
        if s.notes
            .iter()
            .any(|n| n.starts_with(&format!("{fault} skipped")))
        {
            assert!(!required, "{fault} skipped: {:#?}", s.notes);
            continue;
        }
        for (key, phase) in [("on", "layers on"), ("off", "layers off")] {
            for kind in ["fault", "lifted"] {
                assert!(
                    s.events
                        .iter()
                        .any(|e| e.phase == phase && e.kind == kind && e.what.starts_with(fault)),
                    "no {kind} event of {fault} in {phase}: {:#?}",
                    s.events
                );
            }
            assert!(value(&s, &format!("{key}/recovery_s/{fault}")) >= 0.0);
        }
    }
}

/// The command line end to end: two short saved runs, their comparison, and a report a
/// browser opens.
#[test]
fn runs_are_saved_compared_and_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let phantom = env!("CARGO_BIN_EXE_phantom");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(phantom)
            .arg("bench")
            .args(args)
            .arg("--results-dir")
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .output()
            .expect("phantom runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "phantom bench {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let short = [
        "--cache",
        "--repeat",
        "2",
        "--duration",
        "200ms",
        "--warmup",
        "50ms",
    ];
    for name in ["a", "b"] {
        let mut args = short.to_vec();
        args.extend(["--save", name]);
        let out = run(&args);
        assert!(out.contains("get_hit_per_s"), "{out}");
    }
    let saved: bench::model::Results =
        serde_json::from_slice(&std::fs::read(dir.path().join("a.json")).expect("a.json saved"))
            .expect("a saved run");
    assert_eq!(saved.name, "a");
    assert!(saved.machine.cpus >= 1);
    assert_eq!(
        saved.suites[0].metrics[0].samples.len(),
        2,
        "one sample per repeat"
    );
    let report = dir.path().join("cmp.html");
    let out = run(&[
        "--compare",
        "a",
        "b",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("cache/get_hit_per_s"), "{out}");
    assert!(
        ["better", "worse", "no change"]
            .iter()
            .any(|v| out.contains(v)),
        "{out}"
    );
    let html = std::fs::read_to_string(&report).expect("the report");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("get_hit_per_s"));
    assert!(html.contains("</html>"));
}

#[tokio::test]
async fn the_notifier_suite_measures_critical_alone_and_under_the_flood() {
    let s = smoke(SuiteName::Notifier).await;
    assert!(value(&s, "critical_alone_p99_ms") > 0.0);
    assert!(value(&s, "critical_flood_p99_ms") > 0.0);
    assert!(value(&s, "low_published_per_s") > 0.0);
    assert!(
        !s.notes.iter().any(|n| n.contains("failed;")),
        "{:?}",
        s.notes
    );
}
