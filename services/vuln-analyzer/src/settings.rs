//! The vuln-analyzer's settings: the `[analyzer]` section (the LLM and the enrichment queue)
//! and what the service is given to run. Parsed once, when the configuration is loaded;
//! [`AnalyzerConfig::validate`] checks what the types cannot.

use std::time::Duration;

use phantom_kit::config::{CacheConfig, Invalid, ServerSettings};
use phantom_layers::{adaptive::AdaptiveConfig, circuit_breaker::CircuitBreakerConfig};
use phantom_storage::{Migrator, StorageConfig};
use serde::{Deserialize, Serialize};

/// What the vuln-analyzer runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every PHANTOM server shares (tenancy, limits, shutdown).
    pub server: ServerSettings,
    /// The database.
    pub storage: StorageConfig,
    /// The migrations applied when the database is opened.
    pub migrations: Vec<&'static Migrator>,
    /// The cache of analyses.
    pub cache: CacheConfig,
    /// The LLM and the enrichment queue.
    pub analyzer: AnalyzerConfig,
}

/// The vuln-analyzer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzerConfig {
    /// LLM triage; off while `api_key` is empty (analysis is then rule-based).
    pub llm: LlmConfig,
    /// Later enrichment of analyses the LLM could not make in time.
    pub enrichment: EnrichmentConfig,
}

/// The enrichment queue: findings whose analysis was degraded (rules answering for an LLM
/// that failed, was slow, out of budget or behind an open breaker) are triaged again in the
/// background, and their analysis upgraded, once the LLM answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    /// How often the queue is looked at (a newly queued finding wakes it sooner).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Findings triaged per round, one at a time.
    pub batch: u32,
    /// How long a claimed finding is held by this replica before another may take it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// First wait after a failed attempt; doubled per attempt up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            batch: 16,
            lease: Duration::from_secs(120),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
        }
    }
}

/// LLM triage through an OpenAI-compatible API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// API base URL (`OPENAI_BASE_URL`), e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// API key (`OPENAI_API_KEY`). Empty: no LLM, rules only.
    pub api_key: String,
    /// Model name.
    pub model: String,
    /// Longest wait for one triage (shortened to the caller's deadline when that is sooner).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of one request on 429/5xx, after the provider's `Retry-After`.
    pub max_retries: u32,
    /// Tokens (prompt and completion, estimated before the call) spent per minute at most;
    /// past it, rules answer (degraded) and the finding waits for enrichment. 0: no budget.
    pub tokens_per_minute: u32,
    /// The breaker in front of the provider: while it is open, rules answer at once.
    pub circuit_breaker: CircuitBreakerConfig,
    /// The rate towards the provider, adapting to its health (AIMD).
    pub adaptive_rate: AdaptiveConfig,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".to_owned(),
            api_key: String::new(),
            model: "gpt-4o-mini".to_owned(),
            timeout: Duration::from_secs(20),
            max_retries: 1,
            tokens_per_minute: 100_000,
            circuit_breaker: CircuitBreakerConfig {
                window: phantom_layers::circuit_breaker::WindowConfig::Count { size: 20 },
                minimum_calls: 5,
                open_duration: Duration::from_secs(30),
                half_open_permits: 1,
                success_threshold: 1,
                slow_call_duration: Duration::from_secs(15),
                ..CircuitBreakerConfig::default()
            },
            adaptive_rate: AdaptiveConfig::default(),
        }
    }
}

impl AnalyzerConfig {
    /// Checks what the types cannot; keys are relative to `[analyzer]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let llm = &self.llm;
        let no_url = |url: &str| {
            url.parse::<http::Uri>()
                .map(|u| u.scheme().is_none())
                .unwrap_or(true)
        };
        if !llm.api_key.is_empty() {
            if no_url(&llm.base_url) {
                return Err(Invalid::new(
                    "llm.base_url",
                    "is not a URL such as https://host/v1",
                ));
            }
            if llm.model.is_empty() {
                return Err(Invalid::new("llm.model", "must name a model"));
            }
        }
        llm.circuit_breaker
            .validate()
            .map_err(|m| Invalid::new("llm.circuit_breaker", m))?;
        let e = &self.enrichment;
        if e.interval.is_zero() || e.lease.is_zero() || e.backoff.is_zero() || e.batch == 0 {
            return Err(Invalid::new(
                "enrichment",
                "interval, lease, backoff and batch must be more than 0",
            ));
        }
        if e.backoff > e.max_backoff {
            return Err(Invalid::new(
                "enrichment.backoff",
                "must not exceed analyzer.enrichment.max_backoff",
            ));
        }
        llm.adaptive_rate
            .validate()
            .map_err(|m| Invalid::new("llm.adaptive_rate", m))?;
        Ok(())
    }
}
