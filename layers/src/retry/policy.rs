use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::Backoff;

/// The retry budget: how many retries the traffic pays for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// How long a request's deposit stays in the budget (1-60 s).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries allowed per second whatever the traffic (for quiet clients).
    pub min_per_sec: u32,
    /// Retries allowed per request on top (0.2: one retry per five requests).
    pub retry_ratio: f32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

/// How a client retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Off: every call is made once.
    pub enabled: bool,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delays between attempts when the server does not say.
    pub backoff: Backoff,
    /// Methods safe to call twice: `/package.Service/Method` or `/package.Service/*`.
    pub idempotent_methods: Vec<String>,
    /// The retry budget.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
            backoff: Backoff::default(),
            idempotent_methods: Vec::new(),
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        self.backoff
            .validate()
            .map_err(|e| format!("backoff.{e}"))?;
        let b = &self.budget;
        if b.ttl < Duration::from_secs(1) || b.ttl > Duration::from_secs(60) {
            return Err("budget.ttl must be between 1s and 60s".into());
        }
        if !(0.0..=1000.0).contains(&b.retry_ratio) {
            return Err("budget.retry_ratio must be between 0 and 1000".into());
        }
        for m in &self.idempotent_methods {
            if !m.starts_with('/') || m.matches('/').count() != 2 {
                return Err(format!(
                    "idempotent_methods: {m:?} is not /package.Service/Method or /package.Service/*"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) deadline_stops: AtomicU64,
    pub(crate) pushbacks: AtomicU64,
    pub(crate) gave_up: AtomicU64,
}

/// A retry policy shared by every clone of a client: config, budget, counters.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<RetryConfig>,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rng: Arc<Mutex<fastrand::Rng>>,
}

/// What a retry policy has done, for metrics.
#[derive(Debug, Clone, Serialize)]
pub struct RetrySnapshot {
    /// The policy's name (the dependency).
    pub name: String,
    /// Calls made through it.
    pub requests: u64,
    /// Retries sent.
    pub retries: u64,
    /// Retries refused by the budget.
    pub budget_exhausted: u64,
    /// Retries not made because the deadline would pass.
    pub deadline_stops: u64,
    /// Delays set by the server (`RetryInfo`, `grpc-retry-pushback-ms`).
    pub server_pushbacks: u64,
    /// Calls that failed after their last attempt.
    pub gave_up: u64,
}

impl RetryPolicy {
    /// A policy named after the dependency it retries.
    pub fn new(name: &str, config: RetryConfig) -> Self {
        let b = config.budget;
        Self {
            name: name.into(),
            budget: Arc::new(TpsBudget::new(
                b.ttl.clamp(Duration::from_secs(1), Duration::from_secs(60)),
                b.min_per_sec,
                b.retry_ratio.clamp(0.0, 1000.0),
            )),
            config: Arc::new(config),
            counters: Arc::default(),
            rng: Arc::new(Mutex::new(fastrand::Rng::new())),
        }
    }

    /// Whether calls to `path` may be retried.
    pub fn is_idempotent(&self, path: &str) -> bool {
        self.config.enabled
            && self
                .config
                .idempotent_methods
                .iter()
                .any(|m| match m.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => m == path,
                })
    }

    pub(crate) fn deposit(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.budget.deposit();
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.budget.withdraw()
    }

    pub(crate) fn backoff(&self, attempt: u32, previous: Duration) -> Duration {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.config.backoff.delay(attempt, previous, &mut rng)
    }

    /// What the policy has done.
    pub fn snapshot(&self) -> RetrySnapshot {
        let c = &self.counters;
        RetrySnapshot {
            name: self.name.to_string(),
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            budget_exhausted: c.budget_exhausted.load(Ordering::Relaxed),
            deadline_stops: c.deadline_stops.load(Ordering::Relaxed),
            server_pushbacks: c.pushbacks.load(Ordering::Relaxed),
            gave_up: c.gave_up.load(Ordering::Relaxed),
        }
    }
}

impl crate::exposition::Describe for RetrySnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        let l = [("client", self.name.as_str())];
        out.counter(
            "phantom_retries_total",
            "Retries sent.",
            &l,
            self.retries as f64,
        );
        out.counter(
            "phantom_retry_budget_exhausted_total",
            "Retries refused by the budget.",
            &l,
            self.budget_exhausted as f64,
        );
    }
}
