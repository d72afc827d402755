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
    /// Counters of components without a snapshot type of their own (notifier, webhooks).
    pub counters: Vec<CounterSnapshot>,
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
        let mut labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        labels.sort();
        self.counters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((name, labels))
            .or_insert_with(|| (help, Arc::default()))
            .1
            .clone()
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
        }
    }
}
