//! What a process has measured, for `phantom.v1.Metrics/GetMetrics`: its layer registry
//! (breakers, limiters, retries, bulkheads, adaptive limiters, counters, gauges, gRPC
//! histograms) and its caches, as JSON and in the Prometheus text format.
//!
//! Every server serves it; the health-aggregator collects it from every service and merges
//! the expositions (one family per metric name, a `service` label on every sample), so
//! `/metrics` shows all four services whether they run in one process or in four pods.

use std::{collections::BTreeMap, fmt::Write as _, sync::OnceLock};

use phantom_layers::registry;
use phantom_proto::pb::{self, metrics_server::Metrics};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::{ServiceName, cache};

/// Identifies this process in collected metrics (services of one `phantom up` share it).
pub fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "phantom".into()),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        )
    })
}

type Labels = BTreeMap<String, String>;

/// One metric family: its help, type and samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    /// `# HELP`.
    pub help: String,
    /// `# TYPE`: counter, gauge, histogram.
    pub kind: String,
    /// Samples: (sample name, e.g. `…_bucket`; labels; value).
    pub samples: Vec<(String, Labels, f64)>,
}

/// A Prometheus text exposition being built, parsed or merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// Adds a sample of family `name`.
    pub fn add(&mut self, name: &str, help: &str, kind: &str, labels: &[(&str, &str)], value: f64) {
        self.add_sample(name, name, help, kind, labels, value);
    }

    fn add_sample(
        &mut self,
        family: &str,
        sample: &str,
        help: &str,
        kind: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let f = self.families.entry(family.to_owned()).or_default();
        if f.help.is_empty() {
            f.help = help.to_owned();
            f.kind = kind.to_owned();
        }
        f.samples.push((
            sample.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        ));
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", f.help.replace('\n', " "));
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (sample, labels, value) in &f.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{sample} {}", format_value(*value));
                } else {
                    let l: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                        .collect();
                    let _ = writeln!(out, "{sample}{{{}}} {}", l.join(","), format_value(*value));
                }
            }
        }
        out
    }

    /// Parses the text format (what [`Exposition::render`] writes; comments other than
    /// HELP and TYPE, and timestamps, are ignored).
    pub fn parse(text: &str) -> Self {
        let mut e = Self::default();
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                current = name.to_owned();
                e.families.entry(current.clone()).or_default().help = help.to_owned();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
                current = name.to_owned();
                e.families.entry(current.clone()).or_default().kind = kind.to_owned();
            } else if line.is_empty() || line.starts_with('#') {
                continue;
            } else if let Some((sample, labels, value)) = parse_sample(line) {
                let family = if sample.starts_with(&current) && !current.is_empty() {
                    current.clone()
                } else {
                    sample.clone()
                };
                e.families
                    .entry(family)
                    .or_default()
                    .samples
                    .push((sample, labels, value));
            }
        }
        e
    }

    /// Adds every sample of `other`, each with the extra `label`.
    pub fn merge(&mut self, other: Self, label: (&str, &str)) {
        for (name, f) in other.families {
            let mine = self.families.entry(name).or_default();
            if mine.help.is_empty() {
                mine.help = f.help;
                mine.kind = f.kind;
            }
            for (sample, mut labels, value) in f.samples {
                labels.insert(label.0.to_owned(), label.1.to_owned());
                mine.samples.push((sample, labels, value));
            }
        }
    }
}

fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let (head, value) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let name = &line[..open];
            let labels = parse_labels(&line[open + 1..close])?;
            let value = line[close + 1..].split_whitespace().next()?;
            ((name.to_owned(), labels), value)
        }
        None => {
            let mut parts = line.split_whitespace();
            let name = parts.next()?;
            ((name.to_owned(), Labels::new()), parts.next()?)
        }
    };
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((head.0, head.1, value))
}

fn parse_labels(s: &str) -> Option<Labels> {
    let mut labels = Labels::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        rest = rest.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        rest = rest[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Some(labels)
}

/// This process's registry and caches as an exposition.
pub fn process_exposition() -> Exposition {
    let r = registry::global().snapshot();
    let mut e = Exposition::default();
    let state = |s: phantom_layers::circuit_breaker::State| match s {
        phantom_layers::circuit_breaker::State::Closed => 0.0,
        phantom_layers::circuit_breaker::State::HalfOpen => 1.0,
        phantom_layers::circuit_breaker::State::Open => 2.0,
        phantom_layers::circuit_breaker::State::ForcedOpen => 3.0,
        phantom_layers::circuit_breaker::State::Disabled => 4.0,
    };
    for b in &r.circuit_breakers {
        let l = [("breaker", b.name.as_str())];
        e.add(
            "phantom_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled.",
            "gauge",
            &l,
            state(b.state),
        );
        e.add(
            "phantom_circuit_breaker_calls_total",
            "Calls admitted by the breaker.",
            "counter",
            &l,
            b.calls as f64,
        );
        e.add(
            "phantom_circuit_breaker_failures_total",
            "Admitted calls that failed.",
            "counter",
            &l,
            b.failures as f64,
        );
        e.add(
            "phantom_circuit_breaker_rejected_total",
            "Calls rejected by the breaker.",
            "counter",
            &l,
            b.rejected as f64,
        );
    }
    for l in &r.rate_limiters {
        let labels = [("limiter", l.name.as_str())];
        e.add(
            "phantom_rate_limit_rejected_total",
            "Calls rejected by a rate limit.",
            "counter",
            &labels,
            l.rejected as f64,
        );
        e.add(
            "phantom_rate_limit_allowed_total",
            "Calls a rate limit let through.",
            "counter",
            &labels,
            l.allowed as f64,
        );
    }
    for rt in &r.retries {
        let l = [("client", rt.name.as_str())];
        e.add(
            "phantom_retries_total",
            "Retries sent.",
            "counter",
            &l,
            rt.retries as f64,
        );
        e.add(
            "phantom_retry_budget_exhausted_total",
            "Retries refused by the budget.",
            "counter",
            &l,
            rt.budget_exhausted as f64,
        );
    }
    for a in &r.adaptive_limiters {
        e.add(
            "phantom_adaptive_rate_per_second",
            "Current allowed rate of an adaptive limiter.",
            "gauge",
            &[("limiter", a.name.as_str())],
            a.current_rate,
        );
    }
    for b in &r.bulkheads {
        let l = [("bulkhead", b.name.as_str())];
        e.add(
            "phantom_bulkhead_in_flight",
            "Calls in flight.",
            "gauge",
            &l,
            f64::from(b.in_flight),
        );
        e.add(
            "phantom_bulkhead_rejected_total",
            "Calls rejected because the bulkhead was full.",
            "counter",
            &l,
            b.rejected as f64,
        );
    }
    for (name, s) in cache::snapshots() {
        let l = [("cache", name.as_str()), ("backend", s.backend)];
        let metrics: [(&str, &str, &str, f64); 12] = [
            (
                "phantom_cache_hits_total",
                "Cache reads that found a value.",
                "counter",
                s.hits as f64,
            ),
            (
                "phantom_cache_misses_total",
                "Cache reads that did not (including reads skipped while the cache's breaker was open).",
                "counter",
                s.misses as f64,
            ),
            (
                "phantom_cache_hit_ratio",
                "Hits over reads since start.",
                "gauge",
                s.hit_rate,
            ),
            (
                "phantom_cache_evictions_total",
                "Entries the backend dropped to make room.",
                "counter",
                s.evictions as f64,
            ),
            (
                "phantom_cache_invalidations_total",
                "Entries removed by key, tag or dependency invalidation.",
                "counter",
                s.invalidations as f64,
            ),
            (
                "phantom_cache_loads_total",
                "Loads from the source of truth on a miss or a refresh.",
                "counter",
                s.loads as f64,
            ),
            (
                "phantom_cache_load_seconds_total",
                "Time spent in those loads.",
                "counter",
                s.load_seconds_total,
            ),
            (
                "phantom_cache_coalesced_total",
                "Misses served by a concurrent load of the same key.",
                "counter",
                s.coalesced as f64,
            ),
            (
                "phantom_cache_refreshes_total",
                "Background refreshes of entries read near their expiry.",
                "counter",
                s.refreshes as f64,
            ),
            (
                "phantom_cache_errors_total",
                "Cache operations that failed or timed out.",
                "counter",
                s.errors as f64,
            ),
            (
                "phantom_cache_bypassed_total",
                "Cache operations skipped while its breaker was open.",
                "counter",
                s.bypassed as f64,
            ),
            (
                "phantom_cache_bytes_saved_total",
                "Bytes compression saved.",
                "counter",
                s.bytes_saved as f64,
            ),
        ];
        for (metric, help, kind, value) in metrics {
            e.add(metric, help, kind, &l, value);
        }
    }
    for c in &r.counters {
        let l: Vec<(&str, &str)> = c.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        e.add(c.name, c.help, "counter", &l, c.value as f64);
    }
    for g in &r.gauges {
        let l: Vec<(&str, &str)> = g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        e.add(g.name, g.help, "gauge", &l, g.value);
    }
    for h in &r.histograms {
        let base: Vec<(&str, &str)> = h.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (bound, count) in &h.buckets {
            let le = format_value(*bound);
            let mut l = base.clone();
            l.push(("le", &le));
            e.add_sample(
                h.name,
                &format!("{}_bucket", h.name),
                h.help,
                "histogram",
                &l,
                *count as f64,
            );
        }
        let mut l = base.clone();
        l.push(("le", "+Inf"));
        e.add_sample(
            h.name,
            &format!("{}_bucket", h.name),
            h.help,
            "histogram",
            &l,
            h.count as f64,
        );
        e.add_sample(
            h.name,
            &format!("{}_sum", h.name),
            h.help,
            "histogram",
            &base,
            h.sum,
        );
        e.add_sample(
            h.name,
            &format!("{}_count", h.name),
            h.help,
            "histogram",
            &base,
            h.count as f64,
        );
    }
    e
}

/// This process's registry and caches as JSON.
pub fn process_json() -> serde_json::Value {
    let r = registry::global().snapshot();
    json!({
        "circuit_breakers": r.circuit_breakers,
        "rate_limiters": r.rate_limiters,
        "retries": r.retries,
        "bulkheads": r.bulkheads,
        "adaptive_limiters": r.adaptive_limiters,
        "counters": r.counters,
        "gauges": r.gauges,
        "histograms": r.histograms,
        "caches": cache::snapshots().into_iter().collect::<BTreeMap<_, _>>(),
    })
}

/// `phantom.v1.Metrics`, served by every server.
#[derive(Debug, Clone, Copy)]
pub struct MetricsService {
    service: ServiceName,
}

impl MetricsService {
    /// The metrics service of `service`.
    pub fn new(service: ServiceName) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl Metrics for MetricsService {
    async fn get_metrics(
        &self,
        _request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        Ok(Response::new(pb::GetMetricsResponse {
            service: self.service.as_str().to_owned(),
            instance: instance().to_owned(),
            snapshot_json: process_json().to_string(),
            prometheus: process_exposition().render(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expositions_round_trip_and_merge_with_a_label() {
        let mut e = Exposition::default();
        e.add("a_total", "As.", "counter", &[("x", "1")], 3.0);
        e.add("a_total", "As.", "counter", &[("x", "q\"uote\\d")], 4.0);
        e.add_sample("h", "h_bucket", "H.", "histogram", &[("le", "+Inf")], 2.0);
        e.add_sample("h", "h_sum", "H.", "histogram", &[], 0.5);
        let text = e.render();
        let parsed = Exposition::parse(&text);
        assert_eq!(parsed, e, "{text}");
        let mut all = Exposition::default();
        all.merge(parsed.clone(), ("service", "notifier"));
        all.merge(parsed, ("service", "vuln-analyzer"));
        let text = all.render();
        assert_eq!(text.matches("# TYPE a_total counter").count(), 1, "{text}");
        assert!(
            text.contains(r#"a_total{service="notifier",x="1"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"h_bucket{le="+Inf",service="vuln-analyzer"} 2"#),
            "{text}"
        );
    }
}
