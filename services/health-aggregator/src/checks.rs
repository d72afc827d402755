//! Concurrent health checks of every PHANTOM component.
//!
//! Services are checked through their own `grpc.health.v1` endpoint (what Kubernetes asks
//! too), the database with a query, the cache with a ping. All checks of a round run at once,
//! each under the same timeout, so one hung dependency costs one timeout, not the sum.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use phantom_proto::pb::{self, HealthStatus};
use phantom_runtime::{
    Config, ServiceName,
    cache::{self, Cache},
    client::{self, ProbeChannel},
    config::redact,
    storage::{SqlStore, Store},
    time::timestamp_now,
};
use serde::Serialize;
use tokio::sync::OnceCell;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How a component is checked.
enum Probe {
    /// `grpc.health.v1.Health/Check` with the empty service name.
    Grpc(HealthClient<ProbeChannel>),
    /// `SELECT 1`. Connected on first use, retried on the next round if that fails.
    Database(
        Box<phantom_runtime::config::StorageConfig>,
        OnceCell<Arc<dyn Store>>,
    ),
    /// `PING`. Connected on first use likewise.
    Cache(
        Box<phantom_runtime::config::CacheConfig>,
        OnceCell<Arc<dyn Cache>>,
    ),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Probe::Grpc(_) => "Grpc",
            Probe::Database(..) => "Database",
            Probe::Cache(..) => "Cache",
        })
    }
}

/// One thing to check.
#[derive(Debug)]
struct Component {
    name: String,
    endpoint: String,
    critical: bool,
    probe: Probe,
}

/// Running statistics of one component's checks, for `/health/metrics`.
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
    /// Mean duration of all checks.
    pub avg_response_time_ms: f64,
    /// Last status, lowercase.
    pub last_status: String,
}

/// Checks every component.
#[derive(Debug)]
pub struct Checker {
    components: Vec<Component>,
    timeout: Duration,
    slow: Duration,
    stats: Mutex<BTreeMap<String, CheckStats>>,
}

impl Checker {
    /// The checker of the system described by `config`.
    pub fn new(config: &Config) -> Result<Self, tonic::transport::Error> {
        let mut components = Vec::new();
        for service in ServiceName::ALL {
            let endpoint = config.endpoint(service);
            components.push(Component {
                name: service.as_str().to_owned(),
                probe: Probe::Grpc(HealthClient::new(client::probe_channel(
                    &endpoint,
                    config.health.timeout,
                )?)),
                endpoint,
                // Without the orchestrator nothing is scanned; without the others scans still
                // run (unanalyzed, unannounced), which is degraded, not down.
                critical: matches!(
                    service,
                    ServiceName::ScanOrchestrator | ServiceName::HealthAggregator
                ),
            });
        }
        let db = &config.storage;
        components.push(Component {
            name: "database".into(),
            endpoint: if db.database_url.is_empty() {
                format!("sqlite://{}", db.data_dir.join("phantom.db").display())
            } else {
                redact(&db.database_url)
            },
            critical: true,
            probe: Probe::Database(Box::new(db.clone()), OnceCell::new()),
        });
        components.push(Component {
            name: "cache".into(),
            endpoint: if config.cache.redis_url.is_empty() {
                "memory".into()
            } else {
                redact(&config.cache.redis_url)
            },
            critical: false,
            probe: Probe::Cache(Box::new(config.cache.clone()), OnceCell::new()),
        });
        Ok(Self {
            components,
            timeout: config.health.timeout,
            slow: config.health.slow_threshold,
            stats: Mutex::new(BTreeMap::new()),
        })
    }

    /// Runs every check at once and aggregates the results.
    pub async fn check_all(&self) -> pb::SystemHealth {
        let checks = futures::future::join_all(self.components.iter().map(|c| self.check(c))).await;
        let mut stats = self.stats.lock().expect("stats lock");
        for check in &checks {
            let s = stats.entry(check.name.clone()).or_default();
            s.checks_total += 1;
            let healthy = check.status != HealthStatus::Unhealthy as i32;
            if healthy {
                s.consecutive_failures = 0;
            } else {
                s.failures_total += 1;
                s.consecutive_failures += 1;
            }
            s.last_response_time_ms = check.response_time_ms;
            s.avg_response_time_ms +=
                (check.response_time_ms - s.avg_response_time_ms) / s.checks_total as f64;
            s.last_status = status_name(check.status).to_owned();
        }
        aggregate(checks)
    }

    /// Statistics per component.
    pub fn stats(&self) -> BTreeMap<String, CheckStats> {
        self.stats.lock().expect("stats lock").clone()
    }

    async fn check(&self, c: &Component) -> pb::ComponentHealth {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, probe(&c.probe)).await;
        let elapsed = started.elapsed();
        let (status, message) = match outcome {
            Err(_) => (
                HealthStatus::Unhealthy,
                format!("no answer within {:?}", self.timeout),
            ),
            Ok(Err(why)) => (HealthStatus::Unhealthy, why),
            Ok(Ok(())) if elapsed > self.slow => (
                HealthStatus::Degraded,
                format!("slow: {} ms", elapsed.as_millis()),
            ),
            Ok(Ok(())) => (HealthStatus::Healthy, String::new()),
        };
        pb::ComponentHealth {
            name: c.name.clone(),
            status: status as i32,
            response_time_ms: (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            message,
            critical: c.critical,
            checked_at: Some(timestamp_now()),
            endpoint: c.endpoint.clone(),
        }
    }
}

async fn probe(p: &Probe) -> Result<(), String> {
    match p {
        Probe::Grpc(client) => {
            let resp = client
                .clone()
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            match resp.into_inner().status() {
                ServingStatus::Serving => Ok(()),
                other => Err(format!("reports {}", other.as_str_name())),
            }
        }
        Probe::Database(config, store) => {
            let store = store
                .get_or_try_init(|| async {
                    SqlStore::open(config)
                        .await
                        .map(|s| Arc::new(s) as Arc<dyn Store>)
                })
                .await
                .map_err(|e| e.to_string())?;
            store.ping().await.map_err(|e| e.to_string())
        }
        Probe::Cache(config, c) => {
            let c = c
                .get_or_try_init(|| async {
                    cache::connect_backend(config)
                        .await
                        .map(|c| Arc::new(c) as Arc<dyn Cache>)
                })
                .await
                .map_err(|e| e.to_string())?;
            c.ping().await.map_err(|e| e.to_string())
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
}
