use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tonic::Code;
use tower::retry::budget::{Budget, TpsBudget};

use super::throttle::{Throttle, ThrottlingConfig};
use crate::{backoff::Backoff, classify::GrpcClassifier};

pub(crate) use crate::status::CODE_NAMES;

/// The code named `name` (`UNAVAILABLE`), as gRPC service configs spell it.
pub(crate) fn code_named(name: &str) -> Option<Code> {
    CODE_NAMES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The codes `names` name, or a message naming the first unknown one.
fn codes(field: &str, names: &[String]) -> Result<Vec<Code>, String> {
    names
        .iter()
        .map(|n| {
            code_named(n).ok_or_else(|| {
                format!("{field}: {n:?} is not a gRPC status code name (UNAVAILABLE, ABORTED…)")
            })
        })
        .collect()
}

/// The codes the classification table calls retryable: what is retried unless configured
/// narrower.
fn table_retryable() -> Vec<String> {
    CODE_NAMES
        .iter()
        .filter(|(c, _)| GrpcClassifier::verdict(*c).retryable)
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

fn default_throttling() -> Option<ThrottlingConfig> {
    Some(ThrottlingConfig::default())
}

fn default_non_fatal() -> Vec<String> {
    vec!["UNAVAILABLE".into()]
}

/// Default delay before a hedge.
const DEFAULT_HEDGING_DELAY: Duration = Duration::from_millis(100);

/// How a client hedges reads (gRFC A6 `hedgingPolicy`): after `delay` without an answer it
/// sends the same call again, and keeps the first answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgingConfig {
    /// Off (the default): no call is hedged.
    pub enabled: bool,
    /// Attempts in flight at most, the first included (2-5, as gRFC A6 caps it).
    pub max_attempts: u32,
    /// How long to wait for an answer before sending the next hedge.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Status names (`UNAVAILABLE`) that do not end the call: the next hedge goes at once.
    /// Any other status, and OK, is the answer.
    pub non_fatal_codes: Vec<String>,
    /// Methods hedged, `/package.Service/Method` or `/package.Service/*`; only those that
    /// are also idempotent are. A hedged method is never retried (gRFC A6: one or the other).
    pub methods: Vec<String>,
}

impl Default for HedgingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_attempts: 2,
            delay: DEFAULT_HEDGING_DELAY,
            non_fatal_codes: default_non_fatal(),
            methods: Vec::new(),
        }
    }
}

pub(super) fn matches(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|m| match m.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => m == path,
    })
}

fn check_methods(field: &str, methods: &[String]) -> Result<(), String> {
    for m in methods {
        if !m.starts_with('/') || m.matches('/').count() != 2 {
            return Err(format!(
                "{field}: {m:?} is not /package.Service/Method or /package.Service/*"
            ));
        }
    }
    Ok(())
}

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
    /// Status names retried (`UNAVAILABLE`…): the classification table's retryable codes by
    /// default; it can be narrowed, never widened. A transport error counts as `UNAVAILABLE`.
    pub retryable_codes: Vec<String>,
    /// The gRFC A6 retry throttle (on by default); no key in TOML keeps the default.
    #[serde(default = "default_throttling")]
    pub throttling: Option<ThrottlingConfig>,
    /// Hedging of reads, for methods listed there.
    pub hedging: HedgingConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
            backoff: Backoff::default(),
            idempotent_methods: Vec::new(),
            budget: BudgetConfig::default(),
            retryable_codes: table_retryable(),
            throttling: default_throttling(),
            hedging: HedgingConfig::default(),
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
        check_methods("idempotent_methods", &self.idempotent_methods)?;
        for code in codes("retryable_codes", &self.retryable_codes)? {
            if !GrpcClassifier::verdict(code).retryable {
                return Err(format!(
                    "retryable_codes: {code:?} is not retryable in the classification table"
                ));
            }
        }
        if let Some(t) = &self.throttling {
            t.validate().map_err(|e| format!("throttling.{e}"))?;
        }
        let h = &self.hedging;
        if !(2..=5).contains(&h.max_attempts) {
            return Err(format!(
                "hedging.max_attempts must be between 2 and 5, not {}",
                h.max_attempts
            ));
        }
        codes("hedging.non_fatal_codes", &h.non_fatal_codes)?;
        check_methods("hedging.methods", &h.methods)
    }
}

#[derive(Debug, Default)]
pub(crate) struct HedgeCounters {
    pub(crate) calls: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) won: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) deadline_stops: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) deadline_stops: AtomicU64,
    pub(crate) pushbacks: AtomicU64,
    pub(crate) gave_up: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) hedges: HedgeCounters,
}

/// A retry policy shared by every clone of a client: config, budget, throttle, counters.
/// The hedging layer of the client takes the same policy, so both draw on one throttle.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<RetryConfig>,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) throttle: Option<Throttle>,
    /// `retryable_codes`, parsed.
    pub(crate) retryable: Arc<[Code]>,
    /// `hedging.non_fatal_codes`, parsed.
    pub(crate) non_fatal: Arc<[Code]>,
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
    /// Tokens in the gRFC A6 throttle's bucket (absent when throttling is off).
    pub throttle_tokens: Option<f64>,
    /// Retries refused by the throttle.
    pub throttled: u64,
    /// What hedging has done.
    pub hedging: HedgeSnapshot,
}

/// What the hedging of a client has done, for metrics.
#[derive(Debug, Clone, Serialize)]
pub struct HedgeSnapshot {
    /// Calls hedged (their first attempt included).
    pub calls: u64,
    /// Hedges sent (attempts after the first).
    pub sent: u64,
    /// Calls whose answer came from a hedge, not the first attempt.
    pub won: u64,
    /// Attempts still in flight when another answered, cancelled.
    pub cancelled: u64,
    /// Hedges refused by the throttle.
    pub throttled: u64,
    /// Hedges not sent because the deadline had passed.
    pub deadline_stops: u64,
}

impl RetryPolicy {
    /// A policy named after the dependency it retries.
    pub fn new(name: &str, config: RetryConfig) -> Self {
        let b = config.budget;
        // Validation refuses unknown names; here they are skipped, as the table would.
        let parse = |names: &[String]| -> Arc<[Code]> {
            names.iter().filter_map(|n| code_named(n)).collect()
        };
        Self {
            name: name.into(),
            throttle: config.throttling.map(Throttle::new),
            retryable: parse(&config.retryable_codes),
            non_fatal: parse(&config.hedging.non_fatal_codes),
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

    /// Whether calls to `path` may be sent more than once (retried or hedged).
    pub fn is_idempotent(&self, path: &str) -> bool {
        self.config.enabled && matches(&self.config.idempotent_methods, path)
    }

    /// Whether calls to `path` are hedged (and therefore not retried).
    pub fn is_hedged(&self, path: &str) -> bool {
        let h = &self.config.hedging;
        h.enabled && matches(&h.methods, path) && self.is_idempotent(path)
    }

    /// Whether calls to `path` are retried.
    pub fn is_retried(&self, path: &str) -> bool {
        self.is_idempotent(path) && !self.is_hedged(path)
    }

    /// The gRFC A6 throttle this policy (and the hedging layer given it) draws on.
    pub fn throttle(&self) -> Option<&Throttle> {
        self.throttle.as_ref()
    }

    /// Whether the throttle lets one more attempt go (always, when it is off).
    pub(crate) fn throttle_allows(&self) -> bool {
        self.throttle.as_ref().is_none_or(Throttle::allows)
    }

    /// Tells the throttle how an attempt ended: `Some(true)` a success, `Some(false)` a
    /// failure that counts against it, `None` neither.
    pub(crate) fn throttle_record(&self, success: Option<bool>) {
        match (&self.throttle, success) {
            (Some(t), Some(true)) => t.on_success(),
            (Some(t), Some(false)) => t.on_failure(),
            _ => {}
        }
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
            throttle_tokens: self.throttle.as_ref().map(Throttle::tokens),
            throttled: c.throttled.load(Ordering::Relaxed),
            hedging: HedgeSnapshot {
                calls: c.hedges.calls.load(Ordering::Relaxed),
                sent: c.hedges.sent.load(Ordering::Relaxed),
                won: c.hedges.won.load(Ordering::Relaxed),
                cancelled: c.hedges.cancelled.load(Ordering::Relaxed),
                throttled: c.hedges.throttled.load(Ordering::Relaxed),
                deadline_stops: c.hedges.deadline_stops.load(Ordering::Relaxed),
            },
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
        out.counter(
            "phantom_retry_throttled_total",
            "Retries refused by the gRFC A6 throttle.",
            &l,
            self.throttled as f64,
        );
        if let Some(tokens) = self.throttle_tokens {
            out.gauge(
                "phantom_retry_throttle_tokens",
                "Tokens in the gRFC A6 retry throttle (retries stop at half the bucket).",
                &l,
                tokens,
            );
        }
        let h = &self.hedging;
        for (name, help, value) in [
            ("phantom_hedges_total", "Hedges sent.", h.sent),
            (
                "phantom_hedges_won_total",
                "Calls answered by a hedge rather than their first attempt.",
                h.won,
            ),
            (
                "phantom_hedges_cancelled_total",
                "Attempts cancelled because another attempt of the call answered.",
                h.cancelled,
            ),
            (
                "phantom_hedges_throttled_total",
                "Hedges refused by the gRFC A6 throttle.",
                h.throttled,
            ),
        ] {
            out.counter(name, help, &l, value as f64);
        }
    }
}
