//! Every breaker, limiter, retry policy and bulkhead of the process, by name, for metrics.
//!
//! Components register when they are built; [`Registry::snapshot`] is what
//! `/health/metrics` and `/metrics` show. One process-wide registry, like a Prometheus
//! default registry: `phantom up` runs four services in one process and reports them all.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

use crate::{
    adaptive::{AdaptiveLimiter, AdaptiveSnapshot},
    bulkhead::{Bulkhead, BulkheadSnapshot},
    circuit_breaker::{Breaker, BreakerSnapshot},
    rate_limit::{LimiterSnapshot, RateLimiter},
    retry::{RetryPolicy, RetrySnapshot},
};

/// The registered components.
#[derive(Debug, Default)]
pub struct Registry {
    breakers: RwLock<BTreeMap<String, Breaker>>,
    limiters: RwLock<BTreeMap<String, RateLimiter>>,
    retries: RwLock<BTreeMap<String, RetryPolicy>>,
    bulkheads: RwLock<BTreeMap<String, Bulkhead>>,
    adaptive: RwLock<BTreeMap<String, AdaptiveLimiter>>,
    counters: RwLock<BTreeMap<CounterKey, (&'static str, Arc<AtomicU64>)>>,
    histograms: RwLock<BTreeMap<CounterKey, (&'static str, Arc<Histogram>)>>,
    gauges: RwLock<BTreeMap<CounterKey, (&'static str, Arc<Gauge>)>>,
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
    /// Counters of components without a snapshot type of their own (notifier, webhooks,
    /// gRPC servers).
    pub counters: Vec<CounterSnapshot>,
    /// Latency histograms (gRPC servers).
    pub histograms: Vec<HistogramSnapshot>,
    /// Gauges (scans by state, connection pools).
    pub gauges: Vec<GaugeSnapshot>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

fn put<T>(map: &RwLock<BTreeMap<String, T>>, name: &str, item: T) {
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_owned(), item);
}

fn all<T: Clone>(map: &RwLock<BTreeMap<String, T>>) -> Vec<T> {
    map.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .cloned()
        .collect()
}

/// The metric `name` with `labels` in `map`, created on first use. Metrics are looked up on
/// every call of a hot path (one per RPC), so a present one is found under the read lock.
fn handle<T: Default>(
    map: &RwLock<BTreeMap<CounterKey, (&'static str, Arc<T>)>>,
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
        .get(&key)
    {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_insert_with(|| (help, Arc::default()))
        .1
        .clone()
}

impl Registry {
    /// Registers a breaker under its name (replacing an earlier one of that name).
    pub fn breaker(&self, b: &Breaker) {
        put(&self.breakers, b.name(), b.clone());
    }

    /// Registers a limiter.
    pub fn limiter(&self, name: &str, l: &RateLimiter) {
        put(&self.limiters, name, l.clone());
    }

    /// Registers a retry policy.
    pub fn retry(&self, name: &str, r: &RetryPolicy) {
        put(&self.retries, name, r.clone());
    }

    /// Registers a bulkhead.
    pub fn bulkhead(&self, name: &str, b: &Bulkhead) {
        put(&self.bulkheads, name, b.clone());
    }

    /// Registers an adaptive limiter.
    pub fn adaptive(&self, name: &str, a: &AdaptiveLimiter) {
        put(&self.adaptive, name, a.clone());
    }

    /// The counter `name` with `labels`, created at 0 on first use; every caller asking for
    /// the same name and labels shares it.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<AtomicU64> {
        handle(&self.counters, name, help, labels)
    }

    /// The gauge `name` with `labels`, created at 0 on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Gauge> {
        handle(&self.gauges, name, help, labels)
    }

    /// The histogram `name` with `labels`, created empty on first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Arc<Histogram> {
        handle(&self.histograms, name, help, labels)
    }

    /// A breaker by name, for operators (force open, disable, reset).
    pub fn find_breaker(&self, name: &str) -> Option<Breaker> {
        self.breakers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Everything, now.
    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            circuit_breakers: all(&self.breakers).iter().map(Breaker::snapshot).collect(),
            adaptive_limiters: all(&self.adaptive)
                .iter()
                .map(AdaptiveLimiter::snapshot)
                .collect(),
            rate_limiters: all(&self.limiters)
                .iter()
                .map(RateLimiter::snapshot)
                .collect(),
            retries: all(&self.retries)
                .iter()
                .map(RetryPolicy::snapshot)
                .collect(),
            bulkheads: all(&self.bulkheads)
                .iter()
                .map(Bulkhead::snapshot)
                .collect(),
            counters: self
                .counters
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|((name, labels), (help, value))| CounterSnapshot {
                    name,
                    help,
                    labels: labels.iter().cloned().collect(),
                    value: value.load(Ordering::Relaxed),
                })
                .collect(),
            histograms: self
                .histograms
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
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
                .gauges
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
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
