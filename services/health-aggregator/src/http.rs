//! The HTTP side: `/health` and `/health/metrics` in the JSON shapes of the original design,
//! and `/metrics` in the Prometheus text format.

use std::{collections::BTreeMap, fmt::Write, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use phantom_proto::pb;
use serde_json::{Value, json};

use crate::{checks::status_name, service::Aggregator};

/// The router of the HTTP listener.
pub fn router(aggregator: Arc<Aggregator>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/metrics", get(metrics_json))
        .route("/metrics", get(metrics_prometheus))
        .with_state(aggregator)
}

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    let ts = ts.cloned().unwrap_or_default();
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            ts.seconds.max(0).unsigned_abs(),
            ts.nanos.max(0).unsigned_abs(),
        );
    humantime::format_rfc3339_millis(t).to_string()
}

/// The `/health` body of a report.
pub fn health_json(h: &pb::SystemHealth) -> Value {
    let checks: serde_json::Map<String, Value> = h
        .checks
        .iter()
        .map(|c| {
            let mut v = json!({
                "status": status_name(c.status),
                "response_time_ms": c.response_time_ms,
                "critical": c.critical,
                "endpoint": c.endpoint,
            });
            if !c.message.is_empty() {
                v["message"] = json!(c.message);
            }
            (c.name.clone(), v)
        })
        .collect();
    json!({
        "status": status_name(h.status),
        "timestamp": rfc3339(h.timestamp.as_ref()),
        "total_checks": h.total_checks,
        "successful_checks": h.successful_checks,
        "failed_checks": h.failed_checks,
        "checks": checks,
    })
}

async fn health(State(agg): State<Arc<Aggregator>>) -> impl IntoResponse {
    let report = agg.current().await;
    // Load balancers and uptime checks read the code: 503 only when the system is down.
    let code = if report.status == pb::HealthStatus::Unhealthy as i32 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(health_json(&report)))
}

async fn metrics_json(State(agg): State<Arc<Aggregator>>) -> impl IntoResponse {
    let stats = agg.checker().stats();
    let resilience = phantom_layers::registry::global().snapshot();
    Json(json!({
        "health_checks": stats,
        "circuit_breakers": resilience.circuit_breakers,
        "rate_limiters": resilience.rate_limiters,
        "retries": resilience.retries,
        "bulkheads": resilience.bulkheads,
        "adaptive_limiters": resilience.adaptive_limiters,
        "counters": resilience.counters,
        "caches": phantom_runtime::cache::snapshots()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        "uptime_seconds": agg.uptime().as_secs(),
    }))
}

async fn metrics_prometheus(State(agg): State<Arc<Aggregator>>) -> impl IntoResponse {
    let stats = agg.checker().stats();
    let report = agg.current().await;
    let mut out = String::new();
    let series =
        |out: &mut String, name: &str, help: &str, kind: &str, values: &BTreeMap<String, f64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (component, v) in values {
                let _ = writeln!(out, "{name}{{component=\"{component}\"}} {v}");
            }
        };
    let pick = |f: &dyn Fn(&crate::checks::CheckStats) -> f64| -> BTreeMap<String, f64> {
        stats.iter().map(|(k, s)| (k.clone(), f(s))).collect()
    };
    series(
        &mut out,
        "phantom_health_checks_total",
        "Health checks run.",
        "counter",
        &pick(&|s| s.checks_total as f64),
    );
    series(
        &mut out,
        "phantom_health_check_failures_total",
        "Health checks that found the component unhealthy.",
        "counter",
        &pick(&|s| s.failures_total as f64),
    );
    series(
        &mut out,
        "phantom_health_check_duration_ms",
        "Duration of the last health check.",
        "gauge",
        &pick(&|s| s.last_response_time_ms),
    );
    let up: BTreeMap<String, f64> = report
        .checks
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                if c.status == pb::HealthStatus::Unhealthy as i32 {
                    0.0
                } else {
                    1.0
                },
            )
        })
        .collect();
    series(
        &mut out,
        "phantom_component_up",
        "1 when the component's last check passed.",
        "gauge",
        &up,
    );
    let r = phantom_layers::registry::global().snapshot();
    let by_name = |f: &dyn Fn(usize) -> (String, f64), n: usize| -> BTreeMap<String, f64> {
        (0..n).map(f).collect()
    };
    let cb = &r.circuit_breakers;
    let state_value = |s: phantom_layers::circuit_breaker::State| match s {
        phantom_layers::circuit_breaker::State::Closed => 0.0,
        phantom_layers::circuit_breaker::State::HalfOpen => 1.0,
        phantom_layers::circuit_breaker::State::Open => 2.0,
        phantom_layers::circuit_breaker::State::ForcedOpen => 3.0,
        phantom_layers::circuit_breaker::State::Disabled => 4.0,
    };
    let labelled = |out: &mut String,
                    name: &str,
                    help: &str,
                    kind: &str,
                    label: &str,
                    values: &BTreeMap<String, f64>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (k, v) in values {
            let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
        }
    };
    labelled(
        &mut out,
        "phantom_circuit_breaker_state",
        "0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled.",
        "gauge",
        "breaker",
        &by_name(
            &|i| (cb[i].name.clone(), state_value(cb[i].state)),
            cb.len(),
        ),
    );
    labelled(
        &mut out,
        "phantom_circuit_breaker_calls_total",
        "Calls admitted by the breaker.",
        "counter",
        "breaker",
        &by_name(&|i| (cb[i].name.clone(), cb[i].calls as f64), cb.len()),
    );
    labelled(
        &mut out,
        "phantom_circuit_breaker_failures_total",
        "Admitted calls that failed.",
        "counter",
        "breaker",
        &by_name(&|i| (cb[i].name.clone(), cb[i].failures as f64), cb.len()),
    );
    labelled(
        &mut out,
        "phantom_circuit_breaker_rejected_total",
        "Calls rejected by the breaker.",
        "counter",
        "breaker",
        &by_name(&|i| (cb[i].name.clone(), cb[i].rejected as f64), cb.len()),
    );
    let rl = &r.rate_limiters;
    labelled(
        &mut out,
        "phantom_rate_limit_rejected_total",
        "Calls rejected by a rate limit.",
        "counter",
        "limiter",
        &by_name(&|i| (rl[i].name.clone(), rl[i].rejected as f64), rl.len()),
    );
    labelled(
        &mut out,
        "phantom_rate_limit_allowed_total",
        "Calls a rate limit let through.",
        "counter",
        "limiter",
        &by_name(&|i| (rl[i].name.clone(), rl[i].allowed as f64), rl.len()),
    );
    let rt = &r.retries;
    labelled(
        &mut out,
        "phantom_retries_total",
        "Retries sent.",
        "counter",
        "client",
        &by_name(&|i| (rt[i].name.clone(), rt[i].retries as f64), rt.len()),
    );
    labelled(
        &mut out,
        "phantom_retry_budget_exhausted_total",
        "Retries refused by the budget.",
        "counter",
        "client",
        &by_name(
            &|i| (rt[i].name.clone(), rt[i].budget_exhausted as f64),
            rt.len(),
        ),
    );
    let caches = phantom_runtime::cache::snapshots();
    let per_cache =
        |f: &dyn Fn(&phantom_runtime::cache::CacheSnapshot) -> f64| -> BTreeMap<String, f64> {
            caches.iter().map(|(n, s)| (n.clone(), f(s))).collect()
        };
    type CacheMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&phantom_runtime::cache::CacheSnapshot) -> f64,
    );
    let cache_metrics: [CacheMetric; 12] = [
        (
            "phantom_cache_hits_total",
            "Cache reads that found a value.",
            "counter",
            |s| s.hits as f64,
        ),
        (
            "phantom_cache_misses_total",
            "Cache reads that did not (including reads skipped while the cache's breaker was open).",
            "counter",
            |s| s.misses as f64,
        ),
        (
            "phantom_cache_hit_ratio",
            "Hits over reads since start.",
            "gauge",
            |s| s.hit_rate,
        ),
        (
            "phantom_cache_evictions_total",
            "Entries the backend dropped to make room.",
            "counter",
            |s| s.evictions as f64,
        ),
        (
            "phantom_cache_invalidations_total",
            "Entries removed by key, tag or dependency invalidation.",
            "counter",
            |s| s.invalidations as f64,
        ),
        (
            "phantom_cache_loads_total",
            "Loads from the source of truth on a miss or a refresh.",
            "counter",
            |s| s.loads as f64,
        ),
        (
            "phantom_cache_load_seconds_total",
            "Time spent in those loads.",
            "counter",
            |s| s.load_seconds_total,
        ),
        (
            "phantom_cache_coalesced_total",
            "Misses served by a concurrent load of the same key.",
            "counter",
            |s| s.coalesced as f64,
        ),
        (
            "phantom_cache_refreshes_total",
            "Background refreshes of entries read near their expiry.",
            "counter",
            |s| s.refreshes as f64,
        ),
        (
            "phantom_cache_errors_total",
            "Cache operations that failed or timed out.",
            "counter",
            |s| s.errors as f64,
        ),
        (
            "phantom_cache_bypassed_total",
            "Cache operations skipped while its breaker was open.",
            "counter",
            |s| s.bypassed as f64,
        ),
        (
            "phantom_cache_bytes_saved_total",
            "Bytes compression saved.",
            "counter",
            |s| s.bytes_saved as f64,
        ),
    ];
    for (name, help, kind, value) in cache_metrics {
        labelled(&mut out, name, help, kind, "cache", &per_cache(&value));
    }
    let mut last_name = "";
    for c in &r.counters {
        if c.name != last_name {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                c.name, c.help, c.name
            );
            last_name = c.name;
        }
        let labels: Vec<String> = c
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let _ = writeln!(out, "{}{{{}}} {}", c.name, labels.join(","), c.value);
    }
    let ad = &r.adaptive_limiters;
    labelled(
        &mut out,
        "phantom_adaptive_rate_per_second",
        "Current allowed rate of an adaptive limiter.",
        "gauge",
        "limiter",
        &by_name(&|i| (ad[i].name.clone(), ad[i].current_rate), ad.len()),
    );
    let bh = &r.bulkheads;
    labelled(
        &mut out,
        "phantom_bulkhead_in_flight",
        "Calls in flight.",
        "gauge",
        "bulkhead",
        &by_name(
            &|i| (bh[i].name.clone(), f64::from(bh[i].in_flight)),
            bh.len(),
        ),
    );
    labelled(
        &mut out,
        "phantom_bulkhead_rejected_total",
        "Calls rejected because the bulkhead was full.",
        "counter",
        "bulkhead",
        &by_name(&|i| (bh[i].name.clone(), bh[i].rejected as f64), bh.len()),
    );
    let _ = writeln!(
        out,
        "# HELP phantom_system_status Overall status: 1 healthy, 2 degraded, 3 unhealthy.\n# TYPE phantom_system_status gauge\nphantom_system_status {}",
        report.status
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
