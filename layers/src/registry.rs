//! Every breaker, limiter, retry policy, bulkhead and adaptive limit of one service, by name,
//! for metrics.
//!
//! Components register when they are built, in the [`Registry`] handed to whoever builds
//! them; [`Registry::snapshot`] and [`Registry::families`] are what `/health/metrics` and
//! `/metrics` show. There is no process-wide registry: `phantom up` runs four services in
//! one process, each with its own, so each reports its own components (and tests their own).
//!
//! Every map is bounded, because whatever grows here is kept for the life of the process and
//! rendered on every scrape: at most [`MAX_COMPONENTS`] components of each kind, and at most
//! [`MAX_SERIES_PER_METRIC`] label sets per metric name. Beyond that a new component is not
//! registered, and a new label set is counted in the metric's one overflow series (every
//! label `overflow`), with a warning: a metric that reaches the bound has labels that are not
//! a closed set, which is a bug to fix where the metric is recorded.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

use crate::{
    adaptive::{
        AdaptiveConcurrencySnapshot, AdaptiveLimiter, AdaptiveSnapshot, ConcurrencyLimiter,
    },
    bulkhead::{Bulkhead, BulkheadSnapshot},
    circuit_breaker::{Breaker, BreakerSnapshot},
    exposition::{Describe, Families, HistogramValue, Source},
    rate_limit::{LimiterSnapshot, RateLimiter},
    retry::{RetryPolicy, RetrySnapshot},
};

/// Components of one kind (breakers, limiters…) a registry keeps at most. Components are
/// named by configuration (a service, a dependency, a webhook), so a real deployment has
/// tens; the bound is for the bug or the configuration that would make them unbounded.
pub const MAX_COMPONENTS: usize = 1_024;

/// Label sets one metric name keeps at most. The largest closed set PHANTOM records is the
/// gRPC server's: (known methods + `unknown`) × 17 codes, a few hundred.
pub const MAX_SERIES_PER_METRIC: usize = 2_048;

/// The value of every label of a metric's overflow series.
pub const OVERFLOW: &str = "overflow";

/// The registered components of one service. Cloning it is cheap and shares it.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    sources: RwLock<BTreeMap<String, Arc<dyn Source>>>,
    breakers: RwLock<BTreeMap<String, Breaker>>,
    limiters: RwLock<BTreeMap<String, RateLimiter>>,
    retries: RwLock<BTreeMap<String, RetryPolicy>>,
    bulkheads: RwLock<BTreeMap<String, Bulkhead>>,
    adaptive: RwLock<BTreeMap<String, AdaptiveLimiter>>,
    concurrency: RwLock<BTreeMap<String, ConcurrencyLimiter>>,
    counters: RwLock<Series<AtomicU64>>,
    histograms: RwLock<Series<Histogram>>,
    gauges: RwLock<Series<Gauge>>,
}

/// The series of one kind of metric, by name and labels.
#[derive(Debug)]
struct Series<T> {
    by_key: BTreeMap<CounterKey, (&'static str, Arc<T>)>,
    /// How many label sets each name has (for [`MAX_SERIES_PER_METRIC`]).
    per_name: BTreeMap<&'static str, usize>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Self {
            by_key: BTreeMap::new(),
            per_name: BTreeMap::new(),
        }
    }
}

/// A value that goes up and down (an `f64`, stored as bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets it.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Reads it.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One gauge's value, as `/metrics` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GaugeSnapshot {
    /// Prometheus name.
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Its labels.
    pub labels: BTreeMap<&'static str, String>,
    /// Its value.
    pub value: f64,
}

/// Upper bounds (seconds) of the latency histograms' buckets: 1 ms to 30 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram (Prometheus-style cumulative buckets), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// One histogram's state, as `/metrics` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramSnapshot {
    /// Prometheus name.
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Its labels.
    pub labels: BTreeMap<&'static str, String>,
    /// Cumulative counts per upper bound of [`LATENCY_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

/// A counter's name and its labels (sorted).
type CounterKey = (&'static str, Vec<(&'static str, String)>);

/// One counter's value, as `/metrics` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CounterSnapshot {
    /// Prometheus name (`…_total`).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Its labels.
    pub labels: BTreeMap<&'static str, String>,
    /// Its value.
    pub value: u64,
}

/// Every component's state, as `/health/metrics` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrySnapshot {
    /// Circuit breakers.
    pub circuit_breakers: Vec<BreakerSnapshot>,
    /// Rate limiters.
    pub rate_limiters: Vec<LimiterSnapshot>,
    /// Retry policies.
    pub retries: Vec<RetrySnapshot>,
    /// Bulkheads and load shedders.
    pub bulkheads: Vec<BulkheadSnapshot>,
    /// Adaptive (AIMD) limiters, with their current rates.
    pub adaptive_limiters: Vec<AdaptiveSnapshot>,
    /// Adaptive concurrency limits, with their current limits and latencies.
    pub adaptive_concurrency: Vec<AdaptiveConcurrencySnapshot>,
    /// Counters of components without a snapshot type of their own (notifier, webhooks,
    /// gRPC servers).
    pub counters: Vec<CounterSnapshot>,
    /// Latency histograms (gRPC servers).
    pub histograms: Vec<HistogramSnapshot>,
    /// Gauges (scans by state, connection pools).
    pub gauges: Vec<GaugeSnapshot>,
}

fn put<T>(map: &RwLock<BTreeMap<String, T>>, name: &str, item: T) {
    let mut map = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= MAX_COMPONENTS && !map.contains_key(name) {
        tracing::warn!(
            component = name,
            bound = MAX_COMPONENTS,
            "Registry full: component not registered"
        );
        return;
    }
    map.insert(name.to_owned(), item);
}

fn all<T: Clone>(map: &RwLock<BTreeMap<String, T>>) -> Vec<T> {
    map.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .cloned()
        .collect()
}

/// The metric `name` with `labels` in `map`, created on first use (or its overflow series,
/// once `name` has [`MAX_SERIES_PER_METRIC`] label sets). Metrics are looked up on every call
/// of a hot path (one per RPC), so a present one is found under the read lock.
fn handle<T: Default>(
    map: &RwLock<Series<T>>,
    name: &'static str,
    help: &'static str,
    labels: &[(&'static str, &str)],
) -> Arc<T> {
    let mut labels: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    labels.sort();
    let key = (name, labels);
    if let Some((_, found)) = map
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .by_key
        .get(&key)
    {
        return found.clone();
    }
    let mut map = map
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Series { by_key, per_name } = &mut *map;
    if let Some((_, found)) = by_key.get(&key) {
        return found.clone();
    }
    let count = per_name.entry(name).or_insert(0);
    let key = if *count < MAX_SERIES_PER_METRIC {
        *count += 1;
        key
    } else {
        let (name, labels) = key;
        let overflow = (
            name,
            labels
                .into_iter()
                .map(|(k, _)| (k, OVERFLOW.to_owned()))
                .collect(),
        );
        if !by_key.contains_key(&overflow) {
            tracing::warn!(
                metric = name,
                bound = MAX_SERIES_PER_METRIC,
                "Metric has too many label sets: new ones are counted as overflow"
            );
        }
        overflow
    };
    by_key
        .entry(key)
        .or_insert_with(|| (help, Arc::default()))
        .1
        .clone()
}

impl Registry {
    /// Registers a breaker under its name (replacing an earlier one of that name).
    pub fn breaker(&self, b: &Breaker) {
        put(&self.0.breakers, b.name(), b.clone());
    }

    /// Registers a limiter.
    pub fn limiter(&self, name: &str, l: &RateLimiter) {
        put(&self.0.limiters, name, l.clone());
    }

    /// Registers a retry policy.
    pub fn retry(&self, name: &str, r: &RetryPolicy) {
        put(&self.0.retries, name, r.clone());
    }

    /// Registers a bulkhead.
    pub fn bulkhead(&self, name: &str, b: &Bulkhead) {
        put(&self.0.bulkheads, name, b.clone());
    }

    /// Registers an adaptive limiter.
    pub fn adaptive(&self, name: &str, a: &AdaptiveLimiter) {
        put(&self.0.adaptive, name, a.clone());
    }

    /// Registers an adaptive concurrency limit.
    pub fn adaptive_concurrency(&self, name: &str, l: &ConcurrencyLimiter) {
        put(&self.0.concurrency, name, l.clone());
    }

    /// The counter `name` with `labels`, created at 0 on first use; every caller asking for
    /// the same name and labels shares it.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<AtomicU64> {
        handle(&self.0.counters, name, help, labels)
    }

    /// The gauge `name` with `labels`, created at 0 on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Gauge> {
        handle(&self.0.gauges, name, help, labels)
    }

    /// The histogram `name` with `labels`, created empty on first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Histogram> {
        handle(&self.0.histograms, name, help, labels)
    }

    /// Registers `source` (a cache, a pool) under `name` (replacing an earlier one).
    pub fn source(&self, name: &str, source: Arc<dyn Source>) {
        put(&self.0.sources, name, source);
    }

    /// The registered sources, by name.
    pub fn sources(&self) -> Vec<(String, Arc<dyn Source>)> {
        self.0
            .sources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every metric of every component and source, now.
    pub fn families(&self) -> Families {
        let mut out = Families::default();
        self.snapshot().describe(&mut out);
        for (_, source) in self.sources() {
            source.describe(&mut out);
        }
        out
    }

    /// A breaker by name, for operators (force open, disable, reset).
    pub fn find_breaker(&self, name: &str) -> Option<Breaker> {
        self.0
            .breakers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Everything, now.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            circuit_breakers: all(&self.0.breakers)
                .iter()
                .map(Breaker::snapshot)
                .collect(),
            adaptive_limiters: all(&self.0.adaptive)
                .iter()
                .map(AdaptiveLimiter::snapshot)
                .collect(),
            adaptive_concurrency: all(&self.0.concurrency)
                .iter()
                .map(ConcurrencyLimiter::snapshot)
                .collect(),
            rate_limiters: all(&self.0.limiters)
                .iter()
                .map(RateLimiter::snapshot)
                .collect(),
            retries: all(&self.0.retries)
                .iter()
                .map(RetryPolicy::snapshot)
                .collect(),
            bulkheads: all(&self.0.bulkheads)
                .iter()
                .map(Bulkhead::snapshot)
                .collect(),
            counters: self
                .0
                .counters
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .by_key
                .iter()
                .map(|((name, labels), (help, value))| CounterSnapshot {
                    name,
                    help,
                    labels: labels.iter().cloned().collect(),
                    value: value.load(Ordering::Relaxed),
                })
                .collect(),
            histograms: self
                .0
                .histograms
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .by_key
                .iter()
                .map(|((name, labels), (help, h))| HistogramSnapshot {
                    name,
                    help,
                    labels: labels.iter().cloned().collect(),
                    buckets: LATENCY_BUCKETS
                        .iter()
                        .zip(&h.buckets)
                        .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
                        .collect(),
                    count: h.count.load(Ordering::Relaxed),
                    sum: h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                })
                .collect(),
            gauges: self
                .0
                .gauges
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .by_key
                .iter()
                .map(|((name, labels), (help, g))| GaugeSnapshot {
                    name,
                    help,
                    labels: labels.iter().cloned().collect(),
                    value: g.get(),
                })
                .collect(),
        }
    }
}

impl Describe for RegistrySnapshot {
    fn describe(&self, out: &mut Families) {
        for b in &self.circuit_breakers {
            b.describe(out);
        }
        for l in &self.rate_limiters {
            l.describe(out);
        }
        for r in &self.retries {
            r.describe(out);
        }
        for a in &self.adaptive_limiters {
            a.describe(out);
        }
        for a in &self.adaptive_concurrency {
            a.describe(out);
        }
        for b in &self.bulkheads {
            b.describe(out);
        }
        for c in &self.counters {
            let l: Vec<(&str, &str)> = c.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.counter(c.name, c.help, &l, c.value as f64);
        }
        for g in &self.gauges {
            let l: Vec<(&str, &str)> = g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.gauge(g.name, g.help, &l, g.value);
        }
        for h in &self.histograms {
            let l: Vec<(&str, &str)> = h.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            out.histogram(
                h.name,
                h.help,
                &l,
                HistogramValue {
                    buckets: h.buckets.clone(),
                    count: h.count,
                    sum: h.sum,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulkhead::BulkheadConfig;

    #[test]
    fn registries_are_separate_and_a_clone_shares_one() {
        let a = Registry::default();
        let b = Registry::default();
        a.counter("c_total", "C.", &[])
            .fetch_add(1, Ordering::Relaxed);
        assert_eq!(a.clone().families().len(), 1);
        assert!(b.families().is_empty(), "b has nothing of a's");
    }

    #[test]
    fn every_map_of_the_registry_is_bounded() {
        let r = Registry::default();
        for i in 0..5_000 {
            let i = i.to_string();
            r.counter("c_total", "C.", &[("k", &i)]);
            r.gauge("g", "G.", &[("k", &i)]);
            r.histogram("h_seconds", "H.", &[("k", &i)]);
            r.bulkhead(&i, &Bulkhead::new(&i, BulkheadConfig::default()));
        }
        let s = r.snapshot();
        for (what, n) in [
            ("counters", s.counters.len()),
            ("gauges", s.gauges.len()),
            ("histograms", s.histograms.len()),
        ] {
            assert_eq!(
                n,
                MAX_SERIES_PER_METRIC + 1,
                "{what}: the bound and the overflow"
            );
        }
        assert_eq!(s.bulkheads.len(), MAX_COMPONENTS);
        // What went past the bound is still counted, in the overflow series.
        let overflow = s
            .counters
            .iter()
            .find(|c| c.labels["k"] == OVERFLOW)
            .expect("overflow series");
        assert_eq!(
            overflow.value, 0,
            "handles are created, not incremented, above"
        );
        r.counter("c_total", "C.", &[("k", "another")])
            .fetch_add(1, Ordering::Relaxed);
        let value = |r: &Registry| {
            r.snapshot()
                .counters
                .into_iter()
                .find(|c| c.labels["k"] == OVERFLOW)
                .unwrap()
                .value
        };
        assert_eq!(value(&r), 1);
        // A series that existed before the bound keeps its own value.
        r.counter("c_total", "C.", &[("k", "0")])
            .fetch_add(5, Ordering::Relaxed);
        assert_eq!(value(&r), 1);
    }
}
