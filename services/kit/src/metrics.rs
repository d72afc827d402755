//! What a service has measured, for `phantom.v1.Metrics/GetMetrics`: its own
//! [`Registry`] (breakers, limiters, retries, bulkheads, adaptive limiters, caches, counters,
//! gauges, gRPC histograms) as structured samples and as JSON, plus its process's metrics.
//!
//! Every server serves it; the health-aggregator collects it from every service and merges
//! the samples (one family per metric name, a `service` label on every sample), so
//! `/metrics` shows each of the four services' own components whether they run in one
//! process or in four pods. Text is written once, at that edge, by the `prometheus` crate's
//! encoder ([`render`]).

use std::{collections::BTreeMap, sync::OnceLock};

use phantom_layers::{
    exposition::{Families, Family, HistogramValue, Kind, Sample},
    registry::Registry,
};
use phantom_proto::pb::{self, metrics_server::Metrics};
use serde_json::json;
use tonic::{Request, Response, Status};

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

/// `families` as `phantom.v1` messages.
pub fn to_pb(families: &Families) -> Vec<pb::MetricFamily> {
    families
        .0
        .iter()
        .map(|(name, f)| pb::MetricFamily {
            name: name.clone(),
            help: f.help.clone(),
            r#type: match f.kind {
                Kind::Counter => pb::MetricType::Counter,
                Kind::Gauge => pb::MetricType::Gauge,
                Kind::Histogram => pb::MetricType::Histogram,
            } as i32,
            samples: f
                .samples
                .iter()
                .map(|s| pb::MetricSample {
                    labels: s.labels.iter().cloned().collect(),
                    value: s.value,
                    buckets: s
                        .histogram
                        .iter()
                        .flat_map(|h| &h.buckets)
                        .map(|(upper_bound, count)| pb::HistogramBucket {
                            upper_bound: *upper_bound,
                            count: *count,
                        })
                        .collect(),
                    sum: s.histogram.as_ref().map_or(0.0, |h| h.sum),
                })
                .collect(),
        })
        .collect()
}

/// `phantom.v1` messages as families (a family of an unknown type is dropped).
pub fn from_pb(families: Vec<pb::MetricFamily>) -> Families {
    let mut out = Families::default();
    for f in families {
        let kind = match f.r#type() {
            pb::MetricType::Counter => Kind::Counter,
            pb::MetricType::Gauge => Kind::Gauge,
            pb::MetricType::Histogram => Kind::Histogram,
            pb::MetricType::Unspecified => continue,
        };
        let samples = f
            .samples
            .into_iter()
            .map(|s| {
                let mut labels: Vec<(String, String)> = s.labels.into_iter().collect();
                labels.sort();
                Sample {
                    labels,
                    value: s.value,
                    histogram: (kind == Kind::Histogram).then(|| HistogramValue {
                        buckets: s.buckets.iter().map(|b| (b.upper_bound, b.count)).collect(),
                        count: s.value as u64,
                        sum: s.sum,
                    }),
                }
            })
            .collect();
        out.0.insert(
            f.name,
            Family {
                help: f.help,
                kind,
                samples,
            },
        );
    }
    out
}

/// `families` in the Prometheus text exposition format (0.0.4), written by the `prometheus`
/// crate's encoder.
pub fn render(families: &Families) -> String {
    use prometheus::proto;
    let label = |(k, v): &(String, String)| {
        let mut l = proto::LabelPair::default();
        l.set_name(k.clone());
        l.set_value(v.clone());
        l
    };
    let encoded: Vec<proto::MetricFamily> = families
        .0
        .iter()
        .filter(|(_, f)| !f.samples.is_empty())
        .map(|(name, f)| {
            let mut family = proto::MetricFamily::default();
            family.set_name(name.clone());
            family.set_help(f.help.replace('\n', " "));
            family.set_field_type(match f.kind {
                Kind::Counter => proto::MetricType::COUNTER,
                Kind::Gauge => proto::MetricType::GAUGE,
                Kind::Histogram => proto::MetricType::HISTOGRAM,
            });
            family.set_metric(
                f.samples
                    .iter()
                    .map(|s| {
                        let mut m = proto::Metric::from_label(s.labels.iter().map(label).collect());
                        match (f.kind, &s.histogram) {
                            (Kind::Counter, _) => {
                                let mut c = proto::Counter::default();
                                c.set_value(s.value);
                                m.set_counter(c);
                            }
                            (Kind::Histogram, Some(h)) => {
                                let mut hist = proto::Histogram::default();
                                hist.set_sample_count(h.count);
                                hist.set_sample_sum(h.sum);
                                hist.set_bucket(
                                    h.buckets
                                        .iter()
                                        .map(|(bound, count)| {
                                            let mut b = proto::Bucket::default();
                                            b.set_upper_bound(*bound);
                                            b.set_cumulative_count(*count);
                                            b
                                        })
                                        .collect(),
                                );
                                m.set_histogram(hist);
                            }
                            _ => {
                                let mut g = proto::Gauge::default();
                                g.set_value(s.value);
                                m.set_gauge(g);
                            }
                        }
                        m
                    })
                    .collect(),
            );
            family
        })
        .collect();
    let mut out = Vec::new();
    if let Err(err) =
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &encoded, &mut out)
    {
        tracing::warn!(error = %err, "Metrics could not be encoded");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The state of `registry`'s components and sources, as JSON.
pub fn state_json(registry: &Registry) -> serde_json::Value {
    let r = registry.snapshot();
    json!({
        "circuit_breakers": r.circuit_breakers,
        "rate_limiters": r.rate_limiters,
        "retries": r.retries,
        "bulkheads": r.bulkheads,
        "adaptive_limiters": r.adaptive_limiters,
        "adaptive_concurrency": r.adaptive_concurrency,
        "counters": r.counters,
        "gauges": r.gauges,
        "histograms": r.histograms,
        "caches": sources_of_kind(registry, "cache"),
        "balancers": sources_of_kind(registry, "balancer"),
    })
}

/// The state of `registry`'s sources of `kind`, by name.
fn sources_of_kind(registry: &Registry, kind: &str) -> BTreeMap<String, serde_json::Value> {
    registry
        .sources()
        .into_iter()
        .filter(|(_, source)| source.kind() == kind)
        .map(|(name, source)| (name, source.state()))
        .collect()
}

/// `phantom.v1.Metrics`, served by every server.
#[derive(Debug, Clone)]
pub struct MetricsService {
    service: &'static str,
    registry: Registry,
    process: Registry,
}

impl MetricsService {
    /// The metrics service of `service`, reporting `registry` as its own and `process` as
    /// its process's.
    pub fn new(service: &'static str, registry: Registry, process: Registry) -> Self {
        Self {
            service,
            registry,
            process,
        }
    }
}

#[tonic::async_trait]
impl Metrics for MetricsService {
    async fn get_metrics(
        &self,
        _request: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let families = self.registry.families();
        #[allow(deprecated)]
        Ok(Response::new(pb::GetMetricsResponse {
            service: self.service.to_owned(),
            instance: instance().to_owned(),
            snapshot_json: state_json(&self.registry).to_string(),
            prometheus: render(&families),
            families: to_pb(&families),
            process_families: to_pb(&self.process.families()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use phantom_layers::exposition::HistogramValue;

    use super::*;

    #[test]
    fn families_survive_the_wire_and_render_as_prometheus_text() {
        let mut f = Families::default();
        f.counter("a_total", "As.", &[("x", "1")], 3.0);
        f.counter("a_total", "As.", &[("x", "q\"uote\\d")], 4.0);
        f.gauge("g", "G.", &[], 0.5);
        f.histogram(
            "h_seconds",
            "H.",
            &[("m", "x")],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 2)],
                count: 3,
                sum: 2.5,
            },
        );
        let back = from_pb(to_pb(&f));
        assert_eq!(back, f);
        let mut all = Families::default();
        all.merge(back, ("service", "notifier"));
        let text = render(&all);
        assert_eq!(text.matches("# TYPE a_total counter").count(), 1, "{text}");
        for line in [
            r#"a_total{service="notifier",x="1"} 3"#,
            r#"a_total{service="notifier",x="q\"uote\\d"} 4"#,
            r#"g{service="notifier"} 0.5"#,
            r#"h_seconds_bucket{m="x",service="notifier",le="1"} 2"#,
            r#"h_seconds_bucket{m="x",service="notifier",le="+Inf"} 3"#,
            r#"h_seconds_sum{m="x",service="notifier"} 2.5"#,
            r#"h_seconds_count{m="x",service="notifier"} 3"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
