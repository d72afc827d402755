//! The health-aggregator's settings: the `[health]` section (intervals, thresholds,
//! overrides) and what the service is given to run: the components it checks, as the
//! composing binary lists them. Parsed once, when the configuration is loaded;
//! [`HealthConfig::validate`] checks what the types cannot.

use std::{collections::BTreeMap, time::Duration};

use phantom_kit::config::{Invalid, ServerSettings};
use phantom_storage::StorageConfig;
use serde::{Deserialize, Serialize};

/// What the health-aggregator runs with. `Config::default()` watches no service.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// What every PHANTOM server shares (tenancy, limits, shutdown, the HTTP port's limits).
    pub server: ServerSettings,
    /// Intervals, thresholds, overrides.
    pub health: HealthConfig,
    /// The services it watches, in the order reports list them.
    pub services: Vec<ServiceTarget>,
    /// The database it checks (opened without migrating).
    pub storage: StorageConfig,
    /// The Redis it checks, if any.
    pub redis_url: String,
    /// The LLM endpoint it checks, if one is configured.
    pub llm: Option<LlmTarget>,
    /// Its own credential (`Bearer …`, the services' token), sent when it collects the
    /// services' metrics: `GetMetrics` is for operators and services only.
    pub bearer: Option<http::HeaderValue>,
}

/// A PHANTOM service to watch (its `grpc.health.v1` Watch stream) and collect metrics from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    /// Its name, e.g. `scan-orchestrator`: the check's name.
    pub name: String,
    /// Its URL, e.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// Whether the system is down while it is (unless `[health.checks.<name>]` says otherwise).
    pub critical: bool,
}

/// An OpenAI-compatible endpoint to check (`GET <base>/models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmTarget {
    /// Its base URL.
    pub base_url: String,
    /// The key to present.
    pub api_key: String,
}

/// The health-aggregator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often every component is checked.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one check may take before its component counts as unhealthy.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A check slower than this marks its component DEGRADED.
    #[serde(with = "humantime_serde")]
    pub slow_threshold: Duration,
    /// Attempts of a failing check within one round before it counts as failed.
    pub retries: u32,
    /// Results kept per check (history, success rate, mean and p95 latency).
    pub history: usize,
    /// Per-check overrides, by check name (`database`, `cache`, `llm`, `system`,
    /// `network`, `scan-orchestrator`, ...): `critical`, `timeout`, `retries`.
    pub checks: BTreeMap<String, CheckOverride>,
    /// `host:port` endpoints whose reachability is checked (the `network` check).
    pub network_targets: Vec<String>,
    /// CPU use (percent of all cores) above which the `system` check is DEGRADED.
    pub cpu_threshold_percent: f64,
    /// Memory use (percent) above which the `system` check is DEGRADED.
    pub memory_threshold_percent: f64,
    /// Use of the disk holding the data directory (percent) above which it is DEGRADED.
    pub disk_threshold_percent: f64,
    /// Host names the HTTP port (`/health`, `/metrics`) answers for, with or without port;
    /// other `Host`s get 421, so a DNS-rebinding web page cannot read it. `*`: any (behind
    /// a Service or an ingress, where the name is not known in advance).
    pub http_allowed_hosts: Vec<String>,
}

/// Host names the HTTP port answers for by default: loopback's.
pub const DEFAULT_HTTP_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// How one health check differs from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckOverride {
    /// Whether its failure makes the system UNHEALTHY (rather than DEGRADED).
    pub critical: Option<bool>,
    /// Its own timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Its own attempts per round.
    pub retries: Option<u32>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            slow_threshold: Duration::from_millis(500),
            retries: 1,
            history: 50,
            checks: BTreeMap::new(),
            network_targets: Vec::new(),
            cpu_threshold_percent: 95.0,
            memory_threshold_percent: 90.0,
            disk_threshold_percent: 90.0,
            http_allowed_hosts: DEFAULT_HTTP_ALLOWED_HOSTS.map(str::to_owned).to_vec(),
        }
    }
}

impl HealthConfig {
    /// Checks what the types cannot; keys are relative to `[health]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.history == 0 || self.interval.is_zero() || self.timeout.is_zero() {
            return Err(Invalid::new(
                "",
                "interval, timeout and history must be more than 0",
            ));
        }
        for target in &self.network_targets {
            if target
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(Invalid::new(
                    "network_targets",
                    format!("{target:?} is not host:port"),
                ));
            }
        }
        if self.http_allowed_hosts.is_empty()
            || self
                .http_allowed_hosts
                .iter()
                .any(|h| h.trim().is_empty() || h.contains(['/', ' ']))
        {
            return Err(Invalid::new(
                "http_allowed_hosts",
                "must list host names (`*` for any)",
            ));
        }
        Ok(())
    }
}
