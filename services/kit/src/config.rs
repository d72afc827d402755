//! Settings every PHANTOM server shares, whichever service it runs: tenancy, the server's
//! resilience layers and shutdown, the client policy of a call to a peer, the cache,
//! telemetry. Each service's own settings live in its crate, and the binary composes them
//! into one TOML file.
//!
//! Every struct refuses unknown keys, so a typo fails start-up with a message naming the key;
//! what the types cannot check, `validate` does, with an [`Invalid`] naming the key relative
//! to the section (the binary prefixes it).

use std::time::Duration;

use phantom_layers::{
    adaptive::AdaptiveConcurrencyConfig, bulkhead::BulkheadConfig,
    circuit_breaker::CircuitBreakerConfig, rate_limit::RateLimitConfig, retry::RetryConfig,
};
use serde::{Deserialize, Serialize};

pub use crate::http::HttpLimits;
pub use phantom_layers::settings::Invalid;
pub use phantom_storage::{StorageConfig, cache::CacheConfig};

/// Default tenant of single-tenant deployments.
pub const DEFAULT_TENANT: &str = "default";

/// What every PHANTOM server is built with, whichever service it runs.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// Which tenant calls act for.
    pub tenancy: TenancyConfig,
    /// The server's rate limits and load shedding.
    pub resilience: ServerResilience,
    /// Draining and the grace period.
    pub shutdown: ShutdownConfig,
    /// The limits of the service's HTTP port, if it has one.
    pub http: HttpLimits,
    /// How long one check of a dependency the server's readiness follows (its database)
    /// may take.
    pub probe_timeout: Duration,
    /// Authentication of calls: `None` serves anyone, acting for `tenancy` (a development
    /// set-up the binary warns about).
    pub auth: Option<ServerAuth>,
    /// TLS of the gRPC and HTTP ports (built from `[tls]` by [`crate::tls::Tls::if_enabled`]);
    /// `None`: plaintext. The probe port is plaintext either way.
    pub tls: Option<crate::tls::Tls>,
}

/// How a server authenticates its callers (see [`phantom_layers::auth`]).
#[derive(Clone)]
pub struct ServerAuth {
    /// Checks bearer credentials (API keys, JWTs, the services' token).
    pub authenticator: std::sync::Arc<dyn phantom_layers::auth::Authenticate>,
    /// Whether reflection needs credentials too; off, grpcurl lists and describes the API
    /// without a key (it shows the API, no data).
    pub reflection_requires_auth: bool,
    /// Calls per peer address that carry no credential the server can check from memory.
    pub unauthenticated: phantom_layers::rate_limit::QuotaConfig,
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAuth")
            .field("reflection_requires_auth", &self.reflection_requires_auth)
            .field("unauthenticated", &self.unauthenticated)
            .finish_non_exhaustive()
    }
}

/// Tenancy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Tenant of calls that name none (`[a-z0-9-]`, 1-63 characters): checked when the
    /// configuration is read, never parsed again.
    pub default_tenant: phantom_layers::Tenant,
    /// Take the tenant from `x-phantom-tenant` metadata. Only for servers that solely trusted
    /// PHANTOM peers can reach; never expose such a server to users.
    pub trust_tenant_header: bool,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            default_tenant: phantom_layers::Tenant::parse(DEFAULT_TENANT)
                .expect("the default tenant is a tenant id"),
            trust_tenant_header: false,
        }
    }
}

/// Shutdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time between reporting NOT_SERVING and closing the listeners, so that load balancers
    /// (Kubernetes endpoints) stop sending new calls first.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Most time in-flight calls get to finish after the listeners close.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            grace_period: Duration::from_secs(20),
        }
    }
}

/// A server's incoming side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerResilience {
    /// Rate limits per caller and method (health probes and reflection are exempt).
    pub rate_limit: RateLimitConfig,
    /// Load shedding: calls in flight beyond this are rejected at once.
    pub load_shed: BulkheadConfig,
    /// An adaptive bound on unary calls in flight (Gradient2 by default): it follows the
    /// server's latency, below `load_shed`'s fixed one. Streams are not counted (their
    /// lifetime says nothing of the server's latency; `load_shed` bounds them).
    pub adaptive_concurrency: AdaptiveConcurrencyConfig,
}

impl Default for ServerResilience {
    fn default() -> Self {
        Self {
            rate_limit: RateLimitConfig::default(),
            load_shed: BulkheadConfig {
                enabled: true,
                max_concurrent: 1024,
            },
            adaptive_concurrency: AdaptiveConcurrencyConfig {
                initial_limit: 64,
                min_limit: 16,
                max_limit: 1024,
                ..AdaptiveConcurrencyConfig::default()
            },
        }
    }
}

/// Resolutions of a peer's name never come closer than this.
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_secs(1);

/// How a client spreads its calls and takes failing endpoints out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    /// How often a name is resolved again (also soon after an endpoint is ejected).
    #[serde(with = "humantime_serde")]
    pub resolve_every: Duration,
    /// Failures in a row that eject an endpoint (a refused connection ejects at once).
    pub consecutive_failures: u32,
    /// Share of failed calls over `window` that ejects an endpoint (0-1]…
    pub failure_rate: f64,
    /// …once it had at least this many calls in the window.
    pub min_calls: u32,
    /// The window of `failure_rate`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long a first ejection lasts; each further one in a row lasts this much longer.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Share of the endpoints that may be ejected at once (one always may).
    pub max_ejected_share: f64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        Self {
            resolve_every: Duration::from_secs(5),
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(60),
            max_ejected_share: 0.5,
        }
    }
}

impl BalanceConfig {
    /// Checks what the types cannot; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.resolve_every < MIN_RESOLVE_INTERVAL {
            return Err("resolve_every must be at least 1s".into());
        }
        if self.consecutive_failures == 0 {
            return Err("consecutive_failures must be at least 1".into());
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return Err("failure_rate must be in (0, 1]".into());
        }
        if self.window.is_zero() || self.base_ejection.is_zero() {
            return Err("window and base_ejection must be more than 0s".into());
        }
        if self.max_ejection < self.base_ejection {
            return Err("max_ejection must be at least base_ejection".into());
        }
        if !(0.0..=1.0).contains(&self.max_ejected_share) {
            return Err("max_ejected_share must be in [0, 1]".into());
        }
        Ok(())
    }
}

/// How a client calls one dependency (outermost first: deadline, retry, bulkhead, breaker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientPolicy {
    /// Deadline of a unary call that has none from its caller.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries. Methods the API defines as idempotent are always eligible; list more in
    /// `retry.idempotent_methods`.
    pub retry: RetryConfig,
    /// A gRPC service config (JSON: `methodConfig` with `retryPolicy` or `hedgingPolicy`,
    /// `retryThrottling`) that replaces `retry`: the same file other gRPC clients of PHANTOM
    /// read. Read when the configuration is loaded.
    pub service_config: Option<std::path::PathBuf>,
    /// Calls in flight at most.
    pub bulkhead: BulkheadConfig,
    /// The circuit breaker: open when no endpoint of the dependency is usable.
    pub circuit_breaker: CircuitBreakerConfig,
    /// How calls spread over the dependency's endpoints, and when one is taken out.
    pub balance: BalanceConfig,
    /// An adaptive bound on this client's calls in flight to the dependency (Gradient2 by
    /// default), below the bulkhead's fixed one: it shrinks as the dependency slows down.
    pub adaptive_concurrency: AdaptiveConcurrencyConfig,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            service_config: None,
            bulkhead: BulkheadConfig {
                enabled: true,
                max_concurrent: 64,
            },
            circuit_breaker: CircuitBreakerConfig::default(),
            balance: BalanceConfig::default(),
            adaptive_concurrency: AdaptiveConcurrencyConfig::default(),
        }
    }
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directives (`PHANTOM_LOG`), e.g. `info,phantom_scan_orchestrator=debug`.
    pub log_filter: String,
    /// `auto` (text on a terminal, JSON lines otherwise: what `phantom up` in a terminal and a
    /// `phantom serve` pod each want), `text` or `json` (`PHANTOM_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// OTLP/gRPC collector that spans are exported to (`OTEL_EXPORTER_OTLP_ENDPOINT`), e.g.
    /// `http://otel-collector:4317`. Empty: nothing is exported; trace context still crosses
    /// services and appears in logs.
    pub otlp_endpoint: String,
    /// Fraction of new traces recorded, 0 to 1. A call continues its caller's decision, so a
    /// trace is recorded whole or not at all.
    pub sampling_ratio: f64,
    /// How often finished spans are sent to the collector.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
    /// Finished spans kept while the collector is slow or down; beyond, spans are dropped
    /// (exporting never holds up a request).
    pub export_queue: usize,
    /// Log lines waiting for the log writer thread, at most; beyond, lines are dropped and
    /// counted (`phantom_log_lines_dropped_total`): a slow stderr never holds up a request.
    pub log_buffer_lines: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Auto,
            otlp_endpoint: String::new(),
            sampling_ratio: 1.0,
            export_interval: Duration::from_secs(5),
            export_queue: 2048,
            log_buffer_lines: 16_384,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
    /// Human-readable, one line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// `url` without its password, fit for logs, health reports and `phantom config`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl TelemetryConfig {
    /// Checks what the types cannot; keys are relative to `[telemetry]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return Err(Invalid::new("log_filter", err.to_string()));
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(Invalid::new("sampling_ratio", "must be between 0 and 1"));
        }
        if self.export_interval.is_zero() || self.export_queue == 0 {
            return Err(Invalid::new(
                "",
                "export_interval and export_queue must be more than 0",
            ));
        }
        if self.log_buffer_lines == 0 {
            return Err(Invalid::new("log_buffer_lines", "must be more than 0"));
        }
        if !self.otlp_endpoint.is_empty()
            && !self
                .otlp_endpoint
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.scheme_str().map(|s| s == "http" || s == "https"))
                .unwrap_or(false)
        {
            return Err(Invalid::new(
                "otlp_endpoint",
                "must be an http:// or https:// URL such as http://otel-collector:4317",
            ));
        }
        Ok(())
    }
}

impl ServerResilience {
    /// Checks the rate limits, knowing whether a Redis is configured for distributed limits;
    /// keys are relative to `[resilience.server]`.
    pub fn validate(&self, redis_configured: bool) -> Result<(), Invalid> {
        let d = &self.rate_limit.distributed;
        if d.enabled && d.redis_url.is_empty() && !redis_configured {
            return Err(Invalid::new(
                "rate_limit.distributed.redis_url",
                "is required when the limits are distributed (or set REDIS_URL)",
            ));
        }
        self.adaptive_concurrency
            .validate()
            .map_err(|e| e.within("adaptive_concurrency"))?;
        self.rate_limit
            .validate()
            .map_err(|m| Invalid::new("rate_limit", m))
    }
}

impl ClientPolicy {
    /// The retry policy calls follow: the service config file's when one is named, else
    /// `retry`. The message names the file and what is wrong in it.
    pub fn retry_config(&self) -> Result<RetryConfig, String> {
        let Some(path) = &self.service_config else {
            return Ok(self.retry.clone());
        };
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        RetryConfig::from_service_config(&json).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks what the types cannot; keys are relative to the policy's section.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.retry
            .validate()
            .map_err(|m| Invalid::new("retry", m))?;
        self.retry_config()
            .map_err(|m| Invalid::new("service_config", m))?;
        self.circuit_breaker
            .validate()
            .map_err(|m| Invalid::new("circuit_breaker", m))?;
        self.balance
            .validate()
            .map_err(|m| Invalid::new("balance", m))?;
        self.adaptive_concurrency
            .validate()
            .map_err(|e| e.within("adaptive_concurrency"))?;
        if self.timeout.is_zero() {
            return Err(Invalid::new("timeout", "must be more than 0s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_reports() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/phantom"),
            "postgres://app:***@db:5432/phantom"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(
            redact("postgres://app@db/phantom"),
            "postgres://app@db/phantom"
        );
    }

    #[test]
    fn a_refusal_is_named_under_its_section() {
        assert_eq!(Invalid::new("lease", "x").within("scan").key, "scan.lease");
        assert_eq!(Invalid::new("", "x").within("notifier").key, "notifier");
        assert_eq!(Invalid::new("a", "x").within("").key, "a");
    }

    #[test]
    fn a_grpc_service_config_file_replaces_the_retry_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retry.json");
        std::fs::write(
            &file,
            r#"{"methodConfig": [{"name": [{"service": "phantom.v1.VulnAnalyzer", "method": "ScoreCvss"}],
                "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
              "retryThrottling": {"maxTokens": 50, "tokenRatio": 0.2}}"#,
        )
        .unwrap();
        let policy = ClientPolicy {
            service_config: Some(file.clone()),
            ..ClientPolicy::default()
        };
        policy.validate().unwrap();
        let retry = policy.retry_config().unwrap();
        assert_eq!(retry.max_attempts, 4);
        assert_eq!(
            retry.idempotent_methods,
            vec!["/phantom.v1.VulnAnalyzer/ScoreCvss".to_owned()]
        );
        assert_eq!(retry.throttling.map(|t| t.max_tokens), Some(50));

        std::fs::write(
            &file,
            r#"{"methodConfig": [{"retryPolicy": {"maxAttempts": 1}}]}"#,
        )
        .unwrap();
        let refused = policy.validate().unwrap_err().to_string();
        assert!(refused.contains("service_config"), "{refused}");
        assert!(refused.contains("retry.json"), "{refused}");
    }
}
