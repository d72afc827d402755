//! Concurrent health checks of every PHANTOM component and what it depends on.
//!
//! - **Services**: a `grpc.health.v1.Health/Watch` stream is kept open to each (reconnecting
//!   with backoff), so a service stopping or turning NOT_SERVING is seen at once, not at the
//!   next poll; the aggregator is woken on every change.
//! - **database**: connection, a timed query, and the pool's size/idle/in-use.
//! - **cache** (Redis, when configured): PING latency, memory used, connected clients.
//! - **llm** (when an API key is configured): `GET /models`, no paid completion.
//! - **system**: CPU, memory and data-disk use against thresholds (`sysinfo`).
//! - **network**: TCP reachability of the configured `host:port` targets.
//!
//! All checks of a round run at once, each with its own timeout and retries, so a hung
//! dependency costs one timeout, never the sum. Each check keeps a history (success rate,
//! mean and p95 latency) and a recovery (failing, then passing) is logged and counted.

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fred::prelude::*;
use phantom_kit::{
    CancellationToken,
    config::{StorageConfig, redact},
    telemetry::scrub,
    time::timestamp_now,
};
use phantom_proto::pb::{self, HealthStatus};
use serde::Serialize;

use crate::settings::Config;
use tokio::sync::{Notify, OnceCell, watch};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// What a service's Watch stream last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// No answer yet.
    Unknown,
    /// SERVING.
    Serving,
    /// Reachable, but not serving (starting, shutting down, a dependency missing).
    NotServing(String),
    /// Unreachable, or the stream broke.
    Down(String),
}

/// How a component is checked.
enum Probe {
    /// The latest word of the service's Watch stream.
    Service(watch::Receiver<Watched>),
    /// `SELECT 1` and the pool. Connected on first use, retried on the next round.
    Database(Box<StorageConfig>, OnceCell<phantom_storage::Database>),
    /// `PING` and `INFO`.
    Redis(Client),
    /// `GET <base>/models`.
    Llm {
        http: reqwest::Client,
        url: String,
        key: String,
    },
    /// CPU, memory, disk.
    System {
        sys: Box<Mutex<sysinfo::System>>,
        /// Consecutive checks with the CPU above its threshold: one busy moment is not a
        /// degraded system.
        cpu_streak: std::sync::atomic::AtomicU32,
        data_dir: PathBuf,
        cpu: f64,
        memory: f64,
        disk: f64,
    },
    /// TCP connects.
    Network(Vec<String>),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Probe::Service(_) => "Service",
            Probe::Database(..) => "Database",
            Probe::Redis(_) => "Redis",
            Probe::Llm { .. } => "Llm",
            Probe::System { .. } => "System",
            Probe::Network(_) => "Network",
        })
    }
}

/// One thing to check.
#[derive(Debug)]
struct Component {
    name: String,
    endpoint: String,
    critical: bool,
    timeout: Duration,
    retries: u32,
    probe: Probe,
}

/// What one probe found.
#[derive(Debug, Default)]
struct Found {
    degraded: Option<String>,
    details: BTreeMap<String, String>,
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
}

/// Checks in a row with the CPU above its threshold before the system counts as degraded.
const CPU_STREAK: u32 = 3;

impl Checker {
    /// The checker of the system described by `config`, counting in `registry`. Watches
    /// start at once and run until `shutdown`.
    pub fn new(
        config: &Config,
        registry: &phantom_layers::registry::Registry,
        shutdown: &CancellationToken,
    ) -> Result<Self, tonic::transport::Error> {
        let h = &config.health;
        let changed = Arc::new(Notify::new());
        let mut components = Vec::new();
        let mut channels = Vec::new();
        // `critical` unless `[health.checks.<name>]` says otherwise.
        let mut add = |name: &str, critical: bool, endpoint: String, probe: Probe| {
            let o = h.checks.get(name).cloned().unwrap_or_default();
            components.push(Component {
                name: name.to_owned(),
                endpoint,
                critical: o.critical.unwrap_or(critical),
                timeout: o.timeout.unwrap_or(h.timeout),
                retries: o.retries.unwrap_or(h.retries).max(1),
                probe,
            });
        };
        for service in &config.services {
            let endpoint = service.endpoint.clone();
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?
                .connect_timeout(h.timeout)
                .tcp_nodelay(true)
                .connect_lazy();
            channels.push((service.name.clone(), channel.clone()));
            let (tx, rx) = watch::channel(Watched::Unknown);
            tokio::spawn(watch_service(
                HealthClient::new(channel),
                tx,
                changed.clone(),
                shutdown.clone(),
            ));
            add(
                &service.name,
                service.critical,
                endpoint,
                Probe::Service(rx),
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
            Probe::Database(Box::new(db.clone()), OnceCell::new()),
        );
        let redis = &config.redis_url;
        if !redis.is_empty()
            // Checks are timed per check, not by the client.
            && let Ok(client) = phantom_layers::redis::connect(redis, Duration::ZERO)
        {
            add("cache", false, redact(redis), Probe::Redis(client));
        }
        if let Some(llm) = &config.llm {
            add(
                "llm",
                false,
                llm.base_url.clone(),
                Probe::Llm {
                    http: reqwest::Client::builder()
                        .connect_timeout(h.timeout)
                        .build()
                        .unwrap_or_default(),
                    url: format!("{}/models", llm.base_url.trim_end_matches('/')),
                    key: llm.api_key.clone(),
                },
            );
        }
        add(
            "system",
            false,
            "localhost".into(),
            Probe::System {
                sys: Box::new(Mutex::new(sysinfo::System::new())),
                cpu_streak: std::sync::atomic::AtomicU32::new(0),
                data_dir: db.data_dir.clone(),
                cpu: h.cpu_threshold_percent,
                memory: h.memory_threshold_percent,
                disk: h.disk_threshold_percent,
            },
        );
        if !h.network_targets.is_empty() {
            add(
                "network",
                false,
                h.network_targets.join(","),
                Probe::Network(h.network_targets.clone()),
            );
        }
        Ok(Self {
            components,
            slow: h.slow_threshold,
            history: h.history,
            stats: Mutex::new(BTreeMap::new()),
            changed,
            channels,
            registry: registry.clone(),
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
        let mut outcome = Err(String::new());
        for attempt in 0..c.retries {
            outcome = match tokio::time::timeout(c.timeout, probe(&c.probe, c.timeout)).await {
                Err(_) => Err(format!("no answer within {:?}", c.timeout)),
                Ok(r) => r,
            };
            if outcome.is_ok() || attempt + 1 == c.retries {
                break;
            }
        }
        let elapsed = started.elapsed();
        let (status, message, details) = match outcome {
            Err(why) => (HealthStatus::Unhealthy, why, BTreeMap::new()),
            Ok(Found {
                degraded: Some(why),
                details,
            }) => (HealthStatus::Degraded, why, details),
            Ok(found) if elapsed > self.slow && !matches!(c.probe, Probe::System { .. }) => (
                HealthStatus::Degraded,
                format!("slow: {} ms", elapsed.as_millis()),
                found.details,
            ),
            Ok(found) => (HealthStatus::Healthy, String::new(), found.details),
        };
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

/// `text` as a report may show it: credentials masked (see [`scrub`]).
fn shown(text: &str) -> String {
    scrub(text).into_owned()
}

/// Keeps a Watch stream open to one service, reconnecting with capped exponential backoff,
/// and publishes each change.
async fn watch_service(
    mut client: HealthClient<tonic::transport::Channel>,
    state: watch::Sender<Watched>,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let set = |w: Watched| {
        if state.send_if_modified(|cur| {
            let differ = *cur != w;
            *cur = w;
            differ
        }) {
            changed.notify_one();
        }
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let opened = tokio::select! {
            () = shutdown.cancelled() => return,
            r = client.watch(request) => r,
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    // NOT_SERVING is a passing state (starting, draining). A draining server
                    // keeps this stream open to the end, while its successor may already
                    // answer: ask again every second until it says SERVING.
                    let recheck = matches!(*state.borrow(), Watched::NotServing(_));
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        m = stream.message() => m,
                        () = tokio::time::sleep(Duration::from_secs(1)), if recheck => break,
                    };
                    match next {
                        Ok(Some(msg)) => {
                            backoff = Duration::from_millis(100);
                            set(match msg.status() {
                                ServingStatus::Serving => Watched::Serving,
                                other => {
                                    Watched::NotServing(format!("reports {}", other.as_str_name()))
                                }
                            });
                        }
                        Ok(None) => {
                            set(Watched::Down("health stream ended".into()));
                            break;
                        }
                        Err(status) => {
                            set(Watched::Down(format!(
                                "{:?}: {}",
                                status.code(),
                                status.message()
                            )));
                            break;
                        }
                    }
                }
                if matches!(*state.borrow(), Watched::NotServing(_)) {
                    continue; // Re-watch at once.
                }
            }
            Err(status) => set(Watched::Down(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The value of `key` in an `INFO` answer.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Use of the filesystem holding `path` (or its nearest existing ancestor), in percent, as
/// `df` computes it: blocks used over blocks used plus blocks available to users (blocks
/// reserved for root count as neither).
fn disk_use_percent(path: &std::path::Path) -> Option<f64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(existing).ok()?;
        let used = s.f_blocks.saturating_sub(s.f_bfree) as f64;
        let available = s.f_bavail as f64;
        if used + available > 0.0 {
            return Some(used / (used + available) * 100.0);
        }
    }
    let disks = sysinfo::Disks::new_with_refreshed_list();
    mount_of(existing, &disks).map(|d| {
        let total = d.total_space().max(1) as f64;
        (total - d.available_space() as f64) / total * 100.0
    })
}

/// The mount point holding `path` among `mounts` (the longest prefix).
fn mount_of<'a>(path: &std::path::Path, mounts: &'a [sysinfo::Disk]) -> Option<&'a sysinfo::Disk> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
}

async fn probe(p: &Probe, timeout: Duration) -> Result<Found, String> {
    let mut found = Found::default();
    match p {
        Probe::Service(rx) => {
            found.details.insert("via".into(), "watch".into());
            match rx.borrow().clone() {
                Watched::Serving => Ok(found),
                Watched::NotServing(why) | Watched::Down(why) => Err(why),
                Watched::Unknown => Err("no health answer yet".into()),
            }
        }
        Probe::Database(config, store) => {
            let store = store
                .get_or_try_init(|| phantom_storage::Database::open(config))
                .await
                .map_err(|e| redact(&e.to_string()))?;
            let started = Instant::now();
            store.ping().await.map_err(|e| redact(&e.to_string()))?;
            found.details.insert(
                "query_ms".into(),
                format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            );
            let pool = store.pool_stats();
            for (k, v) in [
                ("pool_size", pool.size),
                ("pool_idle", pool.idle),
                ("pool_in_use", pool.in_use),
                ("pool_max", pool.max),
            ] {
                found.details.insert(k.into(), v.to_string());
            }
            if pool.max > 0 && pool.in_use >= pool.max {
                found.degraded = Some(format!(
                    "pool exhausted: {} of {} in use",
                    pool.in_use, pool.max
                ));
            }
            Ok(found)
        }
        Probe::Redis(client) => {
            let started = Instant::now();
            let _: String = client
                .ping(None)
                .await
                .map_err(|e| redact(&e.to_string()))?;
            found.details.insert(
                "ping_ms".into(),
                format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            );
            let memory: String = client
                .info(Some(fred::types::InfoKind::Memory))
                .await
                .map_err(|e| redact(&e.to_string()))?;
            let clients: String = client
                .info(Some(fred::types::InfoKind::Clients))
                .await
                .map_err(|e| redact(&e.to_string()))?;
            for (key, info) in [
                ("used_memory", &memory),
                ("used_memory_human", &memory),
                ("maxmemory", &memory),
                ("connected_clients", &clients),
            ] {
                if let Some(v) = info_field(info, key) {
                    found.details.insert(key.into(), v.to_owned());
                }
            }
            Ok(found)
        }
        Probe::Llm { http, url, key } => {
            let resp = http
                .get(url)
                .bearer_auth(key)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("unreachable: {}", redact(&e.without_url().to_string())))?;
            let status = resp.status();
            found
                .details
                .insert("http_status".into(), status.as_u16().to_string());
            match status.as_u16() {
                200..=299 => Ok(found),
                401 | 403 => Err(format!("the API key is refused (HTTP {status})")),
                _ => Err(format!("HTTP {status}")),
            }
        }
        Probe::System {
            sys,
            cpu_streak,
            data_dir,
            cpu,
            memory,
            disk,
        } => {
            let (cpu_used, mem_used) = {
                let mut sys = sys
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // CPU use is measured between two refreshes: the previous round's and this one.
                sys.refresh_cpu_usage();
                sys.refresh_memory();
                let total = sys.total_memory().max(1) as f64;
                (
                    f64::from(sys.global_cpu_usage()),
                    sys.used_memory() as f64 / total * 100.0,
                )
            };
            let disk_used = disk_use_percent(data_dir);
            found
                .details
                .insert("cpu_percent".into(), format!("{cpu_used:.1}"));
            found
                .details
                .insert("memory_percent".into(), format!("{mem_used:.1}"));
            if let Some(d) = disk_used {
                found
                    .details
                    .insert("disk_percent".into(), format!("{d:.1}"));
            }
            let mut over = Vec::new();
            let streak = if cpu_used > *cpu {
                cpu_streak.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
            } else {
                cpu_streak.store(0, std::sync::atomic::Ordering::Relaxed);
                0
            };
            if streak >= CPU_STREAK {
                over.push(format!("CPU {cpu_used:.0}% > {cpu}% for {streak} checks"));
            }
            if mem_used > *memory {
                over.push(format!("memory {mem_used:.0}% > {memory}%"));
            }
            if let Some(d) = disk_used
                && d > *disk
            {
                over.push(format!("disk {d:.0}% > {disk}%"));
            }
            if !over.is_empty() {
                found.degraded = Some(over.join(", "));
            }
            Ok(found)
        }
        Probe::Network(targets) => {
            let results = futures::future::join_all(targets.iter().map(|t| async move {
                let started = Instant::now();
                let r =
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(t.as_str())).await;
                (t, r.is_ok_and(|c| c.is_ok()), started.elapsed())
            }))
            .await;
            let mut down = Vec::new();
            for (target, ok, took) in results {
                found.details.insert(
                    target.clone(),
                    if ok {
                        format!("{:.1} ms", took.as_secs_f64() * 1000.0)
                    } else {
                        "unreachable".into()
                    },
                );
                if !ok {
                    down.push(target.clone());
                }
            }
            if down.is_empty() {
                Ok(found)
            } else {
                Err(format!("unreachable: {}", down.join(", ")))
            }
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
            storage: StorageConfig {
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

    #[test]
    fn info_fields_are_read_from_redis_info() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        assert_eq!(info_field(info, "used_memory_human"), Some("1.00K"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }

    #[test]
    fn disk_use_is_what_df_says() {
        let dir = std::env::temp_dir();
        let mine = disk_use_percent(&dir.join("not/created/yet")).expect("a filesystem");
        assert!((0.0..=100.0).contains(&mine), "{mine}");
        // `df` rounds up to a whole percent.
        if let Ok(out) = std::process::Command::new("df")
            .arg("--output=pcent")
            .arg(&dir)
            .output()
            && out.status.success()
            && let Some(df) = String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().trim_end_matches('%').parse::<f64>().ok())
        {
            assert!((df - mine).abs() <= 1.5, "df says {df}%, we say {mine:.1}%");
        }
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
