//! Concurrent health checks of every PHANTOM component and what it depends on.
//!
//! Each kind of component has its check, a [`Check`], in a module of its own:
//! - [`service`]: each PHANTOM service, through a `grpc.health.v1.Health/Watch` stream kept
//!   open to it, so a service stopping or turning NOT_SERVING is seen at once, not at the
//!   next poll; the aggregator is woken on every change ([`Checker::changed`]).
//! - [`database`]: connection, a timed query, and the pool's size/idle/in-use.
//! - [`redis`]: the cache (when configured): PING latency, memory used, connected clients.
//! - [`llm`]: the LLM provider (when an API key is configured): `GET /models`, no paid
//!   completion.
//! - [`system`]: CPU and memory use against thresholds (`sysinfo`).
//! - [`disk`]: the data directory's disk, critical with the embedded database.
//! - [`network`]: TCP reachability of the configured `host:port` targets.
//!
//! This module holds what is not kind-specific: the [`Checker`] (which components, named
//! how, how critical, with which timeout and retries), the statistics and the aggregation.
//! All checks of a round run at once, each with its own timeout and retries, so a hung
//! dependency costs one timeout, never the sum. Each check keeps a history (success rate,
//! mean and p95 latency) and a recovery (failing, then passing) is logged and counted.

pub mod database;
pub mod disk;
pub mod llm;
pub mod network;
pub mod redis;
pub mod service;
pub mod system;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use phantom_kit::{
    CancellationToken, Context, config::redact, telemetry::Secrets, time::timestamp_now,
};
use phantom_proto::pb::{self, HealthStatus};
use serde::Serialize;
use tokio::sync::Notify;

use crate::settings::Config;
pub use service::Watched;

/// How one kind of component is checked. Object-safe: the [`Checker`] holds one boxed
/// `Check` per component.
#[tonic::async_trait]
pub trait Check: Send + Sync + std::fmt::Debug {
    /// Probes the component once. `timeout` is the check's own (the checker also bounds
    /// the whole call by it), for probes that pass it on to a client.
    async fn check(&self, timeout: Duration) -> Result<Found, CheckError>;

    /// Whether an answer slower than the slow threshold degrades the component (it does,
    /// but for checks whose duration says nothing of the component's health).
    fn slow_degrades(&self) -> bool {
        true
    }
}

/// What a passing check found.
#[derive(Debug, Default)]
pub struct Found {
    /// Why the component is degraded, if it is (it answers, but not well).
    pub degraded: Option<String>,
    /// What the check measured, shown in the report.
    pub details: BTreeMap<String, String>,
}

/// Why a check failed: the component is unhealthy. The text (`Display`) is the report's
/// message; texts that quote a driver or a URL have its password removed already, and the
/// whole report is scrubbed of secrets as it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The check did not finish within its timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A watched service has not answered yet.
    #[error("no health answer yet")]
    NoAnswerYet,
    /// A watched service answers, but is not serving (starting, draining, a dependency
    /// missing).
    #[error("{reason}")]
    NotServing {
        /// What its Watch stream said.
        reason: String,
    },
    /// A watched service is unreachable, or its Watch stream broke.
    #[error("{reason}")]
    Down {
        /// The gRPC status, or how the stream ended.
        reason: String,
    },
    /// The component's client failed (connecting, querying): the database, the cache.
    #[error("{reason}")]
    Failed {
        /// The client's error, without the password of a URL it quotes.
        reason: String,
    },
    /// What was dialled did not answer: the LLM provider (the client's error), network
    /// targets (those that did not connect).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The LLM provider refuses the API key.
    #[error("the API key is refused (HTTP {status})")]
    KeyRefused {
        /// 401 or 403.
        status: reqwest::StatusCode,
    },
    /// The LLM provider answered with another error status.
    #[error("HTTP {status}")]
    Http {
        /// What it answered.
        status: reqwest::StatusCode,
    },
}

/// One thing to check.
#[derive(Debug)]
struct Component {
    name: String,
    endpoint: String,
    critical: bool,
    timeout: Duration,
    retries: u32,
    check: Box<dyn Check>,
}

/// Running statistics and recent history of one check, for `/health/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStats {
    /// Checks run.
    pub checks_total: u64,
    /// Checks that found the component unhealthy.
    pub failures_total: u64,
    /// Consecutive failures up to now.
    pub consecutive_failures: u64,
    /// Duration of the last check.
    pub last_response_time_ms: f64,
    /// Mean duration over the history.
    pub avg_response_time_ms: f64,
    /// 95th percentile duration over the history.
    pub p95_response_time_ms: f64,
    /// Share of the history that passed (0-1).
    pub success_rate: f64,
    /// Results kept.
    pub history_len: usize,
    /// Last status, lowercase.
    pub last_status: String,
    /// Times the check passed again after failing.
    pub recoveries: u64,
    /// When it last did (RFC 3339).
    pub last_recovery: Option<String>,
    #[serde(skip)]
    history: VecDeque<(bool, f64)>,
}

/// Checks every component.
#[derive(Debug)]
pub struct Checker {
    components: Vec<Component>,
    slow: Duration,
    history: usize,
    stats: Mutex<BTreeMap<String, CheckStats>>,
    /// Woken when a watched service changes state.
    pub changed: Arc<Notify>,
    /// One channel per service, for the Watch streams and whatever else asks them.
    channels: Vec<(String, tonic::transport::Channel)>,
    /// The health-aggregator's registry (recoveries are counted there).
    registry: phantom_layers::registry::Registry,
    /// What every text of a report is scrubbed of.
    secrets: Secrets,
}

impl Checker {
    /// The checker of the system described by `config`, counting in the context's registry
    /// and scrubbing its reports of the context's secrets. Watches start at once and run
    /// until `shutdown`.
    pub fn new(
        config: &Config,
        context: &Context,
        shutdown: &CancellationToken,
    ) -> Result<Self, tonic::transport::Error> {
        let h = &config.health;
        let changed = Arc::new(Notify::new());
        let mut components = Vec::new();
        let mut channels = Vec::new();
        // `critical` unless `[health.checks.<name>]` says otherwise.
        let mut add = |name: &str, critical: bool, endpoint: String, check: Box<dyn Check>| {
            let o = h.checks.get(name).cloned().unwrap_or_default();
            components.push(Component {
                name: name.to_owned(),
                endpoint,
                critical: o.critical.unwrap_or(critical),
                timeout: o.timeout.unwrap_or(h.timeout),
                retries: o.retries.unwrap_or(h.retries).max(1),
                check,
            });
        };
        for service in &config.services {
            // A list of replicas (`phantom up`, tests): the first stands for the service.
            // A name is resolved by the channel, as a ClusterIP Service is.
            let endpoint = service
                .endpoint
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            // Over TLS when the services serve it; connect timeout only: a Watch stream
            // lasts as long as the service does.
            let channel =
                phantom_kit::client::lazy(&endpoint, config.server.tls.as_ref(), |url| {
                    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
                        .connect_timeout(h.timeout)
                        .tcp_nodelay(true))
                })?;
            channels.push((service.name.clone(), channel.clone()));
            add(
                &service.name,
                service.critical,
                endpoint,
                Box::new(service::ServiceCheck::watch(
                    channel,
                    changed.clone(),
                    shutdown.clone(),
                )),
            );
        }
        let db = &config.storage;
        add(
            "database",
            true,
            if db.database_url.is_empty() {
                format!("sqlite://{}", db.data_dir.join("phantom.db").display())
            } else {
                redact(&db.database_url)
            },
            Box::new(database::DatabaseCheck::new(db)),
        );
        let url = &config.redis_url;
        if !url.is_empty()
            && let Some(check) = redis::RedisCheck::new(url)
        {
            add("cache", false, redact(url), Box::new(check));
        }
        if let Some(llm) = &config.llm {
            add(
                "llm",
                false,
                llm.base_url.clone(),
                Box::new(llm::LlmCheck::new(&llm.base_url, &llm.api_key, h.timeout)),
            );
        }
        add(
            "system",
            false,
            "localhost".into(),
            Box::new(system::SystemCheck::new(
                h.cpu_threshold_percent,
                h.memory_threshold_percent,
            )),
        );
        // The data directory's disk: critical when the database lives there (SQLite), as a
        // full disk then fails every write.
        add(
            "data-disk",
            db.database_url.is_empty(),
            db.data_dir.display().to_string(),
            Box::new(disk::DiskCheck::new(&db.data_dir, h.disk_threshold_percent)),
        );
        if !h.network_targets.is_empty() {
            add(
                "network",
                false,
                h.network_targets.join(","),
                Box::new(network::NetworkCheck::new(&h.network_targets)),
            );
        }
        Ok(Self {
            components,
            slow: h.slow_threshold,
            history: h.history,
            stats: Mutex::new(BTreeMap::new()),
            changed,
            channels,
            registry: context.registry.clone(),
            secrets: context.secrets.clone(),
        })
    }

    /// The channel to each service (HTTP/2 multiplexes the Watch stream and other calls).
    pub fn channels(&self) -> &[(String, tonic::transport::Channel)] {
        &self.channels
    }

    /// Runs every check at once and aggregates the results.
    pub async fn check_all(&self) -> pb::SystemHealth {
        let checks = futures::future::join_all(self.components.iter().map(|c| self.check(c))).await;
        self.record(&checks);
        aggregate(checks)
    }

    fn record(&self, checks: &[pb::ComponentHealth]) {
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for check in checks {
            let s = stats.entry(check.name.clone()).or_default();
            let failed = check.status == HealthStatus::Unhealthy as i32;
            let was_failing = s.consecutive_failures > 0;
            s.checks_total += 1;
            if failed {
                s.failures_total += 1;
                s.consecutive_failures += 1;
            } else {
                s.consecutive_failures = 0;
                if was_failing {
                    s.recoveries += 1;
                    s.last_recovery = Some(
                        humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                    );
                    tracing::info!(target: "health", check = %check.name, "Component recovered");
                    self.registry
                        .counter(
                            "phantom_health_recoveries_total",
                            "Times a failing health check passed again.",
                            &[("check", &check.name)],
                        )
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            s.history.push_back((!failed, check.response_time_ms));
            while s.history.len() > self.history {
                s.history.pop_front();
            }
            let n = s.history.len();
            let mut latencies: Vec<f64> = s.history.iter().map(|(_, ms)| *ms).collect();
            latencies.sort_by(f64::total_cmp);
            s.history_len = n;
            s.success_rate = s.history.iter().filter(|(ok, _)| *ok).count() as f64 / n as f64;
            s.avg_response_time_ms = latencies.iter().sum::<f64>() / n as f64;
            s.p95_response_time_ms = latencies[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1];
            s.last_response_time_ms = check.response_time_ms;
            s.last_status = status_name(check.status).to_owned();
        }
    }

    /// Statistics and history per check.
    pub fn stats(&self) -> BTreeMap<String, CheckStats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn check(&self, c: &Component) -> pb::ComponentHealth {
        let started = Instant::now();
        let mut attempt = 0;
        let outcome = loop {
            let outcome = match tokio::time::timeout(c.timeout, c.check.check(c.timeout)).await {
                Err(_) => Err(CheckError::Timeout(c.timeout)),
                Ok(r) => r,
            };
            attempt += 1;
            if outcome.is_ok() || attempt >= c.retries {
                break outcome;
            }
        };
        let elapsed = started.elapsed();
        let (status, message, details) = match outcome {
            Err(why) => (HealthStatus::Unhealthy, why.to_string(), BTreeMap::new()),
            Ok(Found {
                degraded: Some(why),
                details,
            }) => (HealthStatus::Degraded, why, details),
            Ok(found) if elapsed > self.slow && c.check.slow_degrades() => (
                HealthStatus::Degraded,
                format!("slow: {} ms", elapsed.as_millis()),
                found.details,
            ),
            Ok(found) => (HealthStatus::Healthy, String::new(), found.details),
        };
        let shown = |text: &str| self.secrets.scrub(text).into_owned();
        // Every report is built here, and every text of it goes through the scrubber: an
        // endpoint configured with credentials (`http://user:pass@llm/v1`, `?api_key=`), or a
        // driver's error quoting the URL it dialled, shows `***` in `/health`,
        // `GetSystemHealth` and `phantom health` alike.
        pb::ComponentHealth {
            name: c.name.clone(),
            status: status as i32,
            response_time_ms: (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            message: shown(&message),
            critical: c.critical,
            checked_at: Some(timestamp_now()),
            endpoint: shown(&c.endpoint),
            details: details
                .into_iter()
                .map(|(k, v)| (shown(&k), shown(&v)))
                .collect(),
        }
    }
}

/// The system's verdict: UNHEALTHY when a critical component is, DEGRADED when any other
/// component is not healthy or a check was slow, HEALTHY otherwise.
pub fn aggregate(mut checks: Vec<pb::ComponentHealth>) -> pb::SystemHealth {
    checks.sort_by(|a, b| a.name.cmp(&b.name));
    let failed = checks
        .iter()
        .filter(|c| c.status == HealthStatus::Unhealthy as i32)
        .count();
    let critical_down = checks
        .iter()
        .any(|c| c.critical && c.status == HealthStatus::Unhealthy as i32);
    let any_not_healthy = checks
        .iter()
        .any(|c| c.status != HealthStatus::Healthy as i32);
    let status = if critical_down {
        HealthStatus::Unhealthy
    } else if any_not_healthy {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let total = u32::try_from(checks.len()).unwrap_or(u32::MAX);
    let failed = u32::try_from(failed).unwrap_or(u32::MAX);
    pb::SystemHealth {
        status: status as i32,
        timestamp: Some(timestamp_now()),
        total_checks: total,
        successful_checks: total - failed,
        failed_checks: failed,
        checks,
    }
}

/// Lowercase name of a status, as the JSON endpoints show it.
pub fn status_name(status: i32) -> &'static str {
    match HealthStatus::try_from(status) {
        Ok(HealthStatus::Healthy) => "healthy",
        Ok(HealthStatus::Degraded) => "degraded",
        Ok(HealthStatus::Unhealthy) => "unhealthy",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str, critical: bool, status: HealthStatus) -> pb::ComponentHealth {
        pb::ComponentHealth {
            name: name.into(),
            status: status as i32,
            critical,
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_critical_component_makes_the_system_unhealthy() {
        let h = aggregate(vec![
            component("database", true, HealthStatus::Unhealthy),
            component("cache", false, HealthStatus::Healthy),
        ]);
        assert_eq!(h.status, HealthStatus::Unhealthy as i32);
        assert_eq!(
            (h.total_checks, h.successful_checks, h.failed_checks),
            (2, 1, 1)
        );
    }

    #[test]
    fn a_failed_non_critical_component_degrades_it() {
        let h = aggregate(vec![
            component("database", true, HealthStatus::Healthy),
            component("cache", false, HealthStatus::Unhealthy),
        ]);
        assert_eq!(h.status, HealthStatus::Degraded as i32);
        assert_eq!(h.checks[0].name, "cache", "sorted by name");
    }

    #[test]
    fn passwords_never_reach_the_report() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/phantom"),
            "postgres://app:***@db:5432/phantom"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }

    #[tokio::test]
    async fn urls_in_reports_carry_no_credentials() {
        // Nothing listens on port 9 of loopback: every check fails within its 1 s, quoting
        // what it can of what it dialled.
        let config = Config {
            health: crate::settings::HealthConfig {
                timeout: Duration::from_secs(1),
                ..Default::default()
            },
            llm: Some(crate::settings::LlmTarget {
                base_url: "http://llmuser:llmpass@127.0.0.1:9/v1?api_key=qkey123".to_owned(),
                api_key: "sk-test-0123456789abcdef".to_owned(),
            }),
            storage: phantom_kit::config::StorageConfig {
                database_url: "postgres://app:dbpass@127.0.0.1:9/phantom?password=qpass456"
                    .to_owned(),
                ..Default::default()
            },
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let checker = Checker::new(&config, &Default::default(), &shutdown).unwrap();
        let report = checker.check_all().await;
        assert!(report.checks.iter().any(|c| c.name == "llm"), "{report:?}");
        let shown = [
            format!("{report:?}"),
            crate::http::health_json(&report).to_string(),
        ];
        for text in shown {
            for secret in [
                "llmpass",
                "qkey123",
                "dbpass",
                "qpass456",
                "0123456789abcdef",
            ] {
                assert!(!text.contains(secret), "{secret} shown in {text}");
            }
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn history_gives_success_rate_percentiles_and_recoveries() {
        let config = Config::default();
        let shutdown = CancellationToken::new();
        let checker = Checker::new(&config, &Default::default(), &shutdown).unwrap();
        let round = |ok: bool, ms: f64| {
            vec![pb::ComponentHealth {
                name: "x".into(),
                status: if ok {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                } as i32,
                response_time_ms: ms,
                ..Default::default()
            }]
        };
        for i in 0..19 {
            checker.record(&round(true, f64::from(i)));
        }
        checker.record(&round(false, 100.0));
        checker.record(&round(true, 1.0));
        let s = &checker.stats()["x"];
        assert_eq!(s.checks_total, 21);
        assert_eq!(s.recoveries, 1);
        assert!(s.last_recovery.is_some());
        assert!((s.success_rate - 20.0 / 21.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.p95_response_time_ms, 18.0);
        shutdown.cancel();
    }
}
