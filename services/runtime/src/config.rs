//! Configuration: one TOML file (`--config`), overridden by environment variables.
//!
//! Precedence, lowest first: built-in defaults, the file, then the environment. The well-known
//! variables (`DATABASE_URL`, `REDIS_URL`, `PHANTOM_*_ADDR`, ...) map to fixed keys; any other
//! key can be set as `PHANTOM__<SECTION>__<KEY>` (`PHANTOM__SCAN__MAX_HOSTS_PER_SCAN=64`).
//! Every struct refuses unknown keys, so a typo fails start-up with a message naming the key
//! instead of being silently ignored. `deploy/phantom.example.toml` documents every key.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use phantom_layers::{
    adaptive::AdaptiveConfig, bulkhead::BulkheadConfig, circuit_breaker::CircuitBreakerConfig,
    rate_limit::RateLimitConfig, retry::RetryConfig,
};
use serde::{Deserialize, Serialize};

mod secret_url;
pub use secret_url::SecretUrl;

/// Default address of the scan-orchestrator's gRPC server.
pub const DEFAULT_SCAN_ORCHESTRATOR_ADDR: &str = "127.0.0.1:50051";
/// Default address of the vuln-analyzer's gRPC server.
pub const DEFAULT_VULN_ANALYZER_ADDR: &str = "127.0.0.1:50052";
/// Default address of the notifier's gRPC server.
pub const DEFAULT_NOTIFIER_ADDR: &str = "127.0.0.1:50053";
/// Default address of the health-aggregator's gRPC server.
pub const DEFAULT_HEALTH_AGGREGATOR_ADDR: &str = "127.0.0.1:50054";
/// Default address of the HTTP server (health JSON, metrics).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default address of the notifier's WebSocket gateway.
pub const DEFAULT_WS_ADDR: &str = "127.0.0.1:8081";
/// Default directory of the embedded database.
pub const DEFAULT_DATA_DIR: &str = phantom_storage::DEFAULT_DATA_DIR;
/// Default tenant of single-tenant deployments.
pub const DEFAULT_TENANT: &str = "default";

/// Environment variables with a conventional name, and the key each one sets.
const ENV_ALIASES: &[(&str, &[&str])] = &[
    (
        "PHANTOM_SCAN_ORCHESTRATOR_ADDR",
        &["listen", "scan_orchestrator"],
    ),
    ("PHANTOM_VULN_ANALYZER_ADDR", &["listen", "vuln_analyzer"]),
    ("PHANTOM_NOTIFIER_ADDR", &["listen", "notifier"]),
    (
        "PHANTOM_HEALTH_AGGREGATOR_ADDR",
        &["listen", "health_aggregator"],
    ),
    ("PHANTOM_HTTP_ADDR", &["listen", "http"]),
    ("PHANTOM_WS_ADDR", &["listen", "ws"]),
    ("PHANTOM_HEALTH_ADDR", &["listen", "health"]),
    (
        "PHANTOM_SCAN_ORCHESTRATOR_URL",
        &["endpoints", "scan_orchestrator"],
    ),
    ("PHANTOM_VULN_ANALYZER_URL", &["endpoints", "vuln_analyzer"]),
    ("PHANTOM_NOTIFIER_URL", &["endpoints", "notifier"]),
    (
        "PHANTOM_HEALTH_AGGREGATOR_URL",
        &["endpoints", "health_aggregator"],
    ),
    ("PHANTOM_DATA_DIR", &["storage", "data_dir"]),
    ("DATABASE_URL", &["storage", "database_url"]),
    ("REDIS_URL", &["cache", "redis_url"]),
    ("PHANTOM_LOG", &["telemetry", "log_filter"]),
    ("OPENAI_BASE_URL", &["analyzer", "llm", "base_url"]),
    ("OPENAI_API_KEY", &["analyzer", "llm", "api_key"]),
    ("PHANTOM_LOG_FORMAT", &["telemetry", "log_format"]),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        &["telemetry", "otlp_endpoint"],
    ),
];

/// Prefix of the generic `PHANTOM__<SECTION>__<KEY>` overrides.
const ENV_PREFIX: &str = "PHANTOM__";

/// The whole configuration of a PHANTOM process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses the servers listen on (port 0 picks a free port; the chosen one is logged).
    pub listen: ListenConfig,
    /// Where clients reach the other services. Empty means "the matching `listen` address".
    pub endpoints: EndpointsConfig,
    /// The database.
    pub storage: StorageConfig,
    /// The cache.
    pub cache: CacheConfig,
    /// Which tenant calls act for.
    pub tenancy: TenancyConfig,
    /// The scan-orchestrator.
    pub scan: ScanConfig,
    /// The vuln-analyzer.
    pub analyzer: AnalyzerConfig,
    /// The notifier.
    pub notifier: NotifierConfig,
    /// The health-aggregator.
    pub health: HealthConfig,
    /// The HTTP ports (`listen.http`: `/health`, `/metrics`; `listen.ws`: `/ws`): how long
    /// and how many connections they hold.
    pub http: crate::http::HttpLimits,
    /// Shutdown behaviour of every server.
    pub shutdown: ShutdownConfig,
    /// The resilience layers of every server and client.
    pub resilience: ResilienceConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

/// Listen addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// scan-orchestrator gRPC (`PHANTOM_SCAN_ORCHESTRATOR_ADDR`).
    pub scan_orchestrator: SocketAddr,
    /// vuln-analyzer gRPC (`PHANTOM_VULN_ANALYZER_ADDR`).
    pub vuln_analyzer: SocketAddr,
    /// notifier gRPC (`PHANTOM_NOTIFIER_ADDR`).
    pub notifier: SocketAddr,
    /// health-aggregator gRPC (`PHANTOM_HEALTH_AGGREGATOR_ADDR`).
    pub health_aggregator: SocketAddr,
    /// HTTP: `/health`, `/health/metrics` (`PHANTOM_HTTP_ADDR`).
    pub http: SocketAddr,
    /// notifier WebSocket gateway (`PHANTOM_WS_ADDR`).
    pub ws: SocketAddr,
    /// `phantom serve`: a second, always plaintext gRPC port with only `grpc.health.v1` and
    /// `phantom.v1.Metrics` (`PHANTOM_HEALTH_ADDR`, e.g. `0.0.0.0:9090`), so Kubernetes
    /// probes keep working whatever the API port's transport security. Empty: none.
    pub health: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        let p = |s: &str| s.parse().expect("valid default address");
        Self {
            scan_orchestrator: p(DEFAULT_SCAN_ORCHESTRATOR_ADDR),
            vuln_analyzer: p(DEFAULT_VULN_ANALYZER_ADDR),
            notifier: p(DEFAULT_NOTIFIER_ADDR),
            health_aggregator: p(DEFAULT_HEALTH_AGGREGATOR_ADDR),
            http: p(DEFAULT_HTTP_ADDR),
            ws: p(DEFAULT_WS_ADDR),
            health: String::new(),
        }
    }
}

/// URLs of the other services, as clients dial them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointsConfig {
    /// scan-orchestrator (`PHANTOM_SCAN_ORCHESTRATOR_URL`), e.g. `http://scan-orchestrator:50051`.
    pub scan_orchestrator: String,
    /// vuln-analyzer (`PHANTOM_VULN_ANALYZER_URL`).
    pub vuln_analyzer: String,
    /// notifier (`PHANTOM_NOTIFIER_URL`).
    pub notifier: String,
    /// health-aggregator (`PHANTOM_HEALTH_AGGREGATOR_URL`).
    pub health_aggregator: String,
}

/// The database (the `[storage]` section): defined by the storage crate, named here with the
/// rest of the configuration.
pub use phantom_storage::StorageConfig;

/// The cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://host:port` (`REDIS_URL`); empty means an in-process cache.
    pub redis_url: String,
    /// Time to live of entries stored without an explicit one.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Most entries the in-process cache holds (the oldest-expiring are evicted first).
    pub max_entries: usize,
    /// How large values are compressed: `none`, `gzip`, `zlib` or `zstd`.
    pub compression: crate::cache::Compression,
    /// Values up to this many bytes are stored as they are.
    pub compress_above: usize,
    /// Longest wait for one cache operation; slower counts as a failure for the breaker.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Adapt TTLs to reads: often-read entries live longer, never-read ones shorter.
    pub adaptive_ttl: bool,
    /// Shortest TTL the adaptation gives.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Longest TTL the adaptation gives.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// A read in this last fraction of an entry's life reloads it in the background (0: off).
    pub refresh_ahead: f64,
    /// The breaker in front of the backend: while open, the cache passes through.
    pub circuit_breaker: CircuitBreakerConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            default_ttl: Duration::from_secs(300),
            max_entries: 100_000,
            compression: crate::cache::Compression::Zstd,
            compress_above: 1024,
            timeout: Duration::from_millis(250),
            adaptive_ttl: true,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            refresh_ahead: 0.2,
            circuit_breaker: CircuitBreakerConfig {
                window: phantom_layers::circuit_breaker::WindowConfig::Count { size: 20 },
                minimum_calls: 5,
                consecutive_failures: 3,
                open_duration: Duration::from_secs(2),
                half_open_permits: 1,
                success_threshold: 1,
                slow_call_duration: Duration::from_secs(1),
                ..CircuitBreakerConfig::default()
            },
        }
    }
}

/// Tenancy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Tenant of calls that name none (`[a-z0-9-]`, 1-63 characters).
    pub default_tenant: String,
    /// Take the tenant from `x-phantom-tenant` metadata. Only for servers that solely trusted
    /// PHANTOM peers can reach; never expose such a server to users.
    pub trust_tenant_header: bool,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            default_tenant: DEFAULT_TENANT.to_owned(),
            trust_tenant_header: false,
        }
    }
}

/// The scan-orchestrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Ports scanned when a request names none.
    pub default_ports: String,
    /// Most addresses one scan may cover after CIDR expansion and name resolution.
    pub max_hosts_per_scan: u32,
    /// Most connection attempts in flight for one scan.
    pub max_in_flight: usize,
    /// How long a TCP connect may take before the port counts as filtered.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long to wait for a service to speak first (its banner); 0s skips the banner probe
    /// (a plain connect sweep).
    #[serde(with = "humantime_serde")]
    pub banner_timeout: Duration,
    /// Most scans running at once in one replica; more wait as PENDING.
    pub max_concurrent_scans: usize,
    /// How long a replica's claim on a scan holds without renewal: a scan whose replica died
    /// is taken over this long after its last heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often each replica looks for claimable scans (scans created on it start at once).
    #[serde(with = "humantime_serde")]
    pub claim_every: Duration,
    /// How often findings left unanalyzed (the analyzer was down when their scan ended) are
    /// sent to the analyzer again.
    #[serde(with = "humantime_serde")]
    pub reanalyze_every: Duration,
    /// CIDRs targets may be in. Empty means "anything not denied". Where an allowed and a
    /// denied block overlap, the more specific one decides (a deny on a tie).
    pub allowed_cidrs: Vec<String>,
    /// CIDRs targets may not be in. The link-local, cloud metadata, multicast, broadcast and
    /// unspecified ranges are denied always, whatever these lists say.
    pub denied_cidrs: Vec<String>,
    /// Domains hostname targets may be in (`example.com` allows it and its subdomains).
    /// Empty means any name whose addresses are in scope.
    pub allowed_domains: Vec<String>,
    /// Wall-clock limit of one builtin scan (nmap and nuclei have their own).
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// Connection attempts per second to any one host, across its ports (0: no limit): a
    /// per-host limit, not a global one, so one scan cannot flood one target.
    pub per_host_rate: u32,
    /// The nmap engine.
    pub nmap: NmapConfig,
    /// The nuclei engine.
    pub nuclei: NucleiConfig,
}

/// The nuclei engine, offered when its binary is found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NucleiConfig {
    /// The binary: a name looked up on `PATH`, or a path.
    pub path: String,
    /// Requests per second at most (`-rl`).
    pub rate_limit: u32,
    /// Wall-clock limit of one nuclei run; it is killed beyond.
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// nuclei processes running at once, across scans.
    pub max_processes: usize,
}

impl Default for NucleiConfig {
    fn default() -> Self {
        Self {
            path: "nuclei".to_owned(),
            rate_limit: 150,
            time_limit: Duration::from_secs(3600),
            max_processes: 1,
        }
    }
}

/// The nmap engine. It is offered when its binary is found; `CreateScan` with
/// `scanner = "nmap"` is refused with FAILED_PRECONDITION otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NmapConfig {
    /// The binary: a name looked up on `PATH`, or a path.
    pub path: String,
    /// Probe services for product and version (`-sV`): slower, more informative.
    pub version_detection: bool,
    /// Packets per second at most (`--max-rate`).
    pub max_rate: u32,
    /// Give up on a host after this long (`--host-timeout`).
    #[serde(with = "humantime_serde")]
    pub host_timeout: Duration,
    /// Wall-clock limit of one nmap run; it is killed beyond.
    #[serde(with = "humantime_serde")]
    pub time_limit: Duration,
    /// nmap processes running at once, across scans.
    pub max_processes: usize,
}

impl Default for NmapConfig {
    fn default() -> Self {
        Self {
            path: "nmap".to_owned(),
            version_detection: false,
            max_rate: 1000,
            host_timeout: Duration::from_secs(300),
            time_limit: Duration::from_secs(3600),
            max_processes: 2,
        }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            default_ports: "1-1024".to_owned(),
            max_hosts_per_scan: 256,
            max_in_flight: 512,
            connect_timeout: Duration::from_millis(1000),
            banner_timeout: Duration::from_millis(500),
            max_concurrent_scans: 4,
            lease: Duration::from_secs(15),
            claim_every: Duration::from_secs(1),
            reanalyze_every: Duration::from_secs(30),
            allowed_cidrs: Vec::new(),
            denied_cidrs: Vec::new(),
            allowed_domains: Vec::new(),
            time_limit: Duration::from_secs(3600),
            per_host_rate: 0,
            nmap: NmapConfig::default(),
            nuclei: NucleiConfig::default(),
        }
    }
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

/// The notifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifierConfig {
    /// Notifications queued per subscriber before LOW, then NORMAL, are dropped (and a
    /// subscriber that cannot take a HIGH or CRITICAL is disconnected).
    pub queue_capacity: usize,
    /// Bytes queued per subscriber, the same way: past it LOW, then NORMAL, are dropped. With
    /// the replay page (256 KiB) and the transport (2 notifications of at most 64 KiB) it
    /// bounds what a stream that does not read may hold.
    pub queue_bytes: usize,
    /// Most subscriptions (gRPC streams and WebSocket connections) open at once on this
    /// replica; more are refused with RESOURCE_EXHAUSTED. Unset: a quarter of the memory the
    /// process may use (its cgroup's limit, else the machine's RAM) divided by what one
    /// subscription may hold at worst (about 770 KiB with the default `queue_bytes`): 85 in
    /// a 256 MiB pod.
    pub max_subscriptions: Option<usize>,
    /// Most subscriptions open at once for one caller (a tenant at one client address, IPv6
    /// clients by /64); more are refused with RESOURCE_EXHAUSTED.
    pub max_subscriptions_per_caller: usize,
    /// An idle stream gets a heartbeat this often.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Notifications kept per room (older ones are pruned).
    pub retention_count: u64,
    /// Notifications older than this are pruned.
    #[serde(with = "humantime_serde")]
    pub retention_age: Duration,
    /// How often retention is applied.
    #[serde(with = "humantime_serde")]
    pub prune_every: Duration,
    /// Fan notifications out to the other replicas through Redis (`REDIS_URL`) when it is
    /// set: a subscriber on any replica receives what was published on any other.
    pub redis_fanout: bool,
    /// Where notifications are kept: `auto` (Redis Streams when `REDIS_URL` is set, the
    /// database otherwise), `database` or `redis`.
    pub log: NotificationLogKind,
    /// The WebSocket gateway.
    pub ws: WsConfig,
    /// Rooms forwarded to outbound webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

/// Where the notifier keeps notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationLogKind {
    /// Redis Streams when `REDIS_URL` is set, the database otherwise.
    Auto,
    /// The database.
    Database,
    /// Redis Streams (`REDIS_URL` required).
    Redis,
}

/// The notifier's WebSocket gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Browser origins allowed to connect (`Origin` header), e.g. `https://dash.example.com`;
    /// `*` allows any. Clients that send no `Origin` (CLIs, servers) are not browsers and are
    /// always allowed. Empty: no browser may connect.
    pub allowed_origins: Vec<String>,
    /// Most connections at once on this replica; more are refused with 503. Unset: a quarter
    /// of the memory the process may use (its cgroup's limit, else the machine's RAM) at
    /// 160 KiB per connection (about 140 KB measured): 409 in a 256 MiB pod. Each connection
    /// is also a subscription, so `notifier.max_subscriptions` (85 in a 256 MiB pod) and
    /// `http.max_connections` bound it too: the lowest of the three applies.
    pub max_connections: Option<usize>,
    /// Most connections at once from one client address (IPv6 clients by /64, IPv4-mapped
    /// IPv6 as IPv4); more are refused with 429. `notifier.max_subscriptions_per_caller`
    /// applies too.
    pub max_connections_per_ip: usize,
    /// Largest frame a client may send; larger closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// The server pings this often; a client that has not answered by the next ping but one
    /// is disconnected.
    #[serde(with = "humantime_serde")]
    pub ping_every: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_connections: None,
            max_connections_per_ip: 16,
            max_frame_bytes: 4096,
            ping_every: Duration::from_secs(20),
        }
    }
}

/// One outbound webhook: notifications of some rooms POSTed as JSON to a URL, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Its name, in logs and metrics.
    pub name: String,
    /// Where notifications are POSTed (http or https). A secret: shown as `scheme://host/…`.
    pub url: SecretUrl,
    /// Rooms forwarded: exact names, or prefixes ending in `*` (`scan/*`).
    pub rooms: Vec<String>,
    /// Lowest priority forwarded: `low`, `normal`, `high` or `critical`.
    pub min_priority: String,
    /// Name of the environment variable holding the HMAC-SHA256 key; the signature goes in
    /// `X-Phantom-Signature: sha256=<hex>`. Empty: unsigned. The key is never in the file.
    pub secret_env: String,
    /// Longest wait for one delivery.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per notification before it is given up (and counted as failed).
    pub max_attempts: u32,
    /// First wait after a failed attempt; doubled (with jitter) up to `max_backoff`.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Notifications waiting for this destination; past it the oldest are dropped (counted).
    pub queue: usize,
    /// The breaker in front of this destination.
    pub circuit_breaker: CircuitBreakerConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: SecretUrl::default(),
            rooms: Vec::new(),
            min_priority: "high".to_owned(),
            secret_env: String::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            queue: 1000,
            circuit_breaker: CircuitBreakerConfig {
                window: phantom_layers::circuit_breaker::WindowConfig::Count { size: 20 },
                minimum_calls: 5,
                consecutive_failures: 5,
                open_duration: Duration::from_secs(30),
                half_open_permits: 1,
                success_threshold: 1,
                ..CircuitBreakerConfig::default()
            },
        }
    }
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            queue_bytes: 256 * 1024,
            max_subscriptions: None,
            max_subscriptions_per_caller: 16,
            heartbeat: Duration::from_secs(15),
            retention_count: 10_000,
            retention_age: Duration::from_secs(7 * 24 * 3600),
            prune_every: Duration::from_secs(60),
            redis_fanout: true,
            log: NotificationLogKind::Auto,
            ws: WsConfig::default(),
            webhooks: Vec::new(),
        }
    }
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

/// The resilience layers: what every server applies to incoming calls, and what every
/// client applies to its calls to each dependency. Each layer has `enabled`, so its effect
/// can be measured by switching it off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Every server's incoming side.
    pub server: ServerResilience,
    /// Calls to each dependency.
    pub clients: ClientsResilience,
}

/// A server's incoming side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerResilience {
    /// Rate limits per caller and method (health probes and reflection are exempt).
    pub rate_limit: RateLimitConfig,
    /// Load shedding: calls in flight beyond this are rejected at once.
    pub load_shed: BulkheadConfig,
}

impl Default for ServerResilience {
    fn default() -> Self {
        Self {
            rate_limit: RateLimitConfig::default(),
            load_shed: BulkheadConfig {
                enabled: true,
                max_concurrent: 1024,
            },
        }
    }
}

/// The policy of each dependency, by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientsResilience {
    /// Calls to the scan-orchestrator.
    pub scan_orchestrator: ClientPolicy,
    /// Calls to the vuln-analyzer.
    pub vuln_analyzer: ClientPolicy,
    /// Calls to the notifier.
    pub notifier: ClientPolicy,
    /// Calls to the health-aggregator.
    pub health_aggregator: ClientPolicy,
}

impl ClientsResilience {
    /// The policy for calls to `service`.
    pub fn for_service(&self, service: ServiceName) -> &ClientPolicy {
        match service {
            ServiceName::ScanOrchestrator => &self.scan_orchestrator,
            ServiceName::VulnAnalyzer => &self.vuln_analyzer,
            ServiceName::Notifier => &self.notifier,
            ServiceName::HealthAggregator => &self.health_aggregator,
        }
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
    /// Calls in flight at most.
    pub bulkhead: BulkheadConfig,
    /// The circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            bulkhead: BulkheadConfig {
                enabled: true,
                max_concurrent: 64,
            },
            circuit_breaker: CircuitBreakerConfig::default(),
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

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file, or the file merged with the environment, is not a valid configuration.
    #[error("invalid configuration{origin}: {message}")]
    Invalid {
        /// Where the values came from (file and environment variables).
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("invalid configuration: `{key}`: {message}")]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Loads the configuration from `path` (if any) and the process environment.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let config = Self::from_sources(&text, path, std::env::vars())?;
        config.register_secrets();
        Ok(config)
    }

    /// Builds a configuration from TOML text and environment variables. Split from
    /// [`Config::load`] so tests do not touch the process environment.
    pub fn from_sources(
        toml_text: &str,
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut origin = path
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        let mut table: toml::Table =
            toml::from_str(toml_text).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?;

        let mut applied = Vec::new();
        let mut env: Vec<_> = env.into_iter().collect();
        env.sort();
        for (name, value) in env {
            let path: Vec<String> =
                if let Some((_, key)) = ENV_ALIASES.iter().find(|(n, _)| *n == name) {
                    key.iter().map(|s| (*s).to_owned()).collect()
                } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                    rest.split("__").map(str::to_lowercase).collect()
                } else {
                    continue;
                };
            set_path(&mut table, &path, &value).map_err(|message| ConfigError::Value {
                key: name.clone(),
                message,
            })?;
            applied.push(name);
        }
        if !applied.is_empty() {
            origin.push_str(&format!(" (with environment {})", applied.join(", ")));
        }

        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin,
                    message: e.to_string().trim().to_owned(),
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Value {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if phantom_layers::Tenant::parse(&self.tenancy.default_tenant).is_none() {
            return Err(bad(
                "tenancy.default_tenant",
                "must be 1-63 characters of [a-z0-9-], not starting with '-'",
            ));
        }
        let url = &self.storage.database_url;
        if !url.is_empty()
            && !url.starts_with("postgres://")
            && !url.starts_with("postgresql://")
            && !url.starts_with("sqlite:")
        {
            return Err(bad(
                "storage.database_url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        let redis = &self.cache.redis_url;
        if !redis.is_empty() && !redis.starts_with("redis://") && !redis.starts_with("rediss://") {
            return Err(bad(
                "cache.redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        if self.storage.max_connections == 0 {
            return Err(bad("storage.max_connections", "must be at least 1"));
        }
        if self.scan.max_in_flight == 0 {
            return Err(bad("scan.max_in_flight", "must be at least 1"));
        }
        if self.scan.max_concurrent_scans == 0 {
            return Err(bad("scan.max_concurrent_scans", "must be at least 1"));
        }
        if self.scan.lease < Duration::from_millis(300) {
            return Err(bad("scan.lease", "must be at least 300ms"));
        }
        if self.scan.reanalyze_every.is_zero() {
            return Err(bad("scan.reanalyze_every", "must be more than 0s"));
        }
        if self.scan.claim_every.is_zero() {
            return Err(bad("scan.claim_every", "must be more than 0s"));
        }
        if self.scan.max_hosts_per_scan == 0 {
            return Err(bad("scan.max_hosts_per_scan", "must be at least 1"));
        }
        for (key, list) in [
            ("scan.allowed_cidrs", &self.scan.allowed_cidrs),
            ("scan.denied_cidrs", &self.scan.denied_cidrs),
        ] {
            for cidr in list {
                if cidr.parse::<ipnet::IpNet>().is_err()
                    && cidr.parse::<std::net::IpAddr>().is_err()
                {
                    return Err(bad(
                        key,
                        &format!("{cidr:?} is not a CIDR block or address"),
                    ));
                }
            }
        }
        for (key, url) in [
            (
                "endpoints.scan_orchestrator",
                &self.endpoints.scan_orchestrator,
            ),
            ("endpoints.vuln_analyzer", &self.endpoints.vuln_analyzer),
            ("endpoints.notifier", &self.endpoints.notifier),
            (
                "endpoints.health_aggregator",
                &self.endpoints.health_aggregator,
            ),
        ] {
            if !url.is_empty()
                && url
                    .parse::<http::Uri>()
                    .map(|u| u.scheme().is_none())
                    .unwrap_or(true)
            {
                return Err(bad(
                    key,
                    &format!("{url:?} is not a URL such as http://host:port"),
                ));
            }
        }
        let llm = &self.analyzer.llm;
        if !llm.api_key.is_empty() {
            if llm
                .base_url
                .parse::<http::Uri>()
                .map(|u| u.scheme().is_none())
                .unwrap_or(true)
            {
                return Err(bad(
                    "analyzer.llm.base_url",
                    "is not a URL such as https://host/v1",
                ));
            }
            if llm.model.is_empty() {
                return Err(bad("analyzer.llm.model", "must name a model"));
            }
        }
        llm.circuit_breaker
            .validate()
            .map_err(|m| bad("analyzer.llm.circuit_breaker", &m))?;
        let h = &self.health;
        if h.history == 0 || h.interval.is_zero() || h.timeout.is_zero() {
            return Err(bad(
                "health",
                "interval, timeout and history must be more than 0",
            ));
        }
        for target in &h.network_targets {
            if target
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(bad(
                    "health.network_targets",
                    &format!("{target:?} is not host:port"),
                ));
            }
        }
        if !self.listen.health.is_empty() && self.listen.health.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "listen.health",
                "is not an address such as 0.0.0.0:9090",
            ));
        }
        let n = &self.notifier;
        if n.queue_capacity == 0
            || n.queue_bytes == 0
            || n.max_subscriptions == Some(0)
            || n.max_subscriptions_per_caller == 0
            || n.heartbeat.is_zero()
            || n.prune_every.is_zero()
        {
            return Err(bad(
                "notifier",
                "queue_capacity, queue_bytes, max_subscriptions, max_subscriptions_per_caller, \
                 heartbeat and prune_every must be more than 0",
            ));
        }
        if n.log == NotificationLogKind::Redis && self.cache.redis_url.is_empty() {
            return Err(bad(
                "notifier.log",
                "is redis, but no Redis is configured (set REDIS_URL)",
            ));
        }
        if n.ws.max_connections == Some(0)
            || n.ws.max_connections_per_ip == 0
            || n.ws.ping_every.is_zero()
        {
            return Err(bad(
                "notifier.ws",
                "max_connections, max_connections_per_ip and ping_every must be more than 0",
            ));
        }
        for (i, w) in n.webhooks.iter().enumerate() {
            let key = |k: &str| format!("notifier.webhooks[{i}].{k}");
            if w.name.is_empty() {
                return Err(bad(&key("name"), "is required"));
            }
            let uri = w.url.expose().parse::<http::Uri>().ok();
            if !uri
                .as_ref()
                .and_then(|u| u.scheme_str())
                .is_some_and(|s| s == "http" || s == "https")
            {
                return Err(bad(&key("url"), "must be an http:// or https:// URL"));
            }
            if w.rooms.is_empty() {
                return Err(bad(&key("rooms"), "must name at least one room or prefix*"));
            }
            if !["low", "normal", "high", "critical"].contains(&w.min_priority.as_str()) {
                return Err(bad(
                    &key("min_priority"),
                    "must be low, normal, high or critical",
                ));
            }
            if w.max_attempts == 0
                || w.queue == 0
                || w.timeout.is_zero()
                || w.backoff > w.max_backoff
            {
                return Err(bad(
                    &key("max_attempts"),
                    "max_attempts, queue and timeout must be more than 0, and backoff at most max_backoff",
                ));
            }
            w.circuit_breaker
                .validate()
                .map_err(|m| bad(&key("circuit_breaker"), &m))?;
        }
        let e = &self.analyzer.enrichment;
        if e.interval.is_zero() || e.lease.is_zero() || e.backoff.is_zero() || e.batch == 0 {
            return Err(bad(
                "analyzer.enrichment",
                "interval, lease, backoff and batch must be more than 0",
            ));
        }
        if e.backoff > e.max_backoff {
            return Err(bad(
                "analyzer.enrichment.backoff",
                "must not exceed analyzer.enrichment.max_backoff",
            ));
        }
        let c = &self.cache;
        c.circuit_breaker
            .validate()
            .map_err(|m| bad("cache.circuit_breaker", &m))?;
        if c.timeout.is_zero() {
            return Err(bad("cache.timeout", "must be more than 0s"));
        }
        if c.min_ttl > c.max_ttl {
            return Err(bad("cache.min_ttl", "must not exceed cache.max_ttl"));
        }
        if !(0.0..0.9).contains(&c.refresh_ahead) {
            return Err(bad(
                "cache.refresh_ahead",
                "must be a fraction in [0, 0.9) (0 turns refresh-ahead off)",
            ));
        }
        llm.adaptive_rate
            .validate()
            .map_err(|m| bad("analyzer.llm.adaptive_rate", &m))?;
        let t = &self.telemetry;
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&t.log_filter) {
            return Err(bad("telemetry.log_filter", &err.to_string()));
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            return Err(bad("telemetry.sampling_ratio", "must be between 0 and 1"));
        }
        if t.export_interval.is_zero() || t.export_queue == 0 {
            return Err(bad(
                "telemetry",
                "export_interval and export_queue must be more than 0",
            ));
        }
        if !t.otlp_endpoint.is_empty()
            && !t
                .otlp_endpoint
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.scheme_str().map(|s| s == "http" || s == "https"))
                .unwrap_or(false)
        {
            return Err(bad(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL such as http://otel-collector:4317",
            ));
        }
        let r = &self.resilience;
        let d = &r.server.rate_limit.distributed;
        if d.enabled && d.redis_url.is_empty() && self.cache.redis_url.is_empty() {
            return Err(bad(
                "resilience.server.rate_limit.distributed.redis_url",
                "is required when the limits are distributed (or set REDIS_URL)",
            ));
        }
        r.server
            .rate_limit
            .validate()
            .map_err(|m| bad("resilience.server.rate_limit", &m))?;
        for service in ServiceName::ALL {
            let key = service.as_str().replace('-', "_");
            let p = r.clients.for_service(service);
            p.retry
                .validate()
                .map_err(|m| bad(&format!("resilience.clients.{key}.retry"), &m))?;
            p.circuit_breaker
                .validate()
                .map_err(|m| bad(&format!("resilience.clients.{key}.circuit_breaker"), &m))?;
            if p.timeout.is_zero() {
                return Err(bad(
                    &format!("resilience.clients.{key}.timeout"),
                    "must be more than 0s",
                ));
            }
        }
        if self.health.interval.is_zero() {
            return Err(bad("health.interval", "must be more than 0s"));
        }
        self.http.validate().map_err(|m| bad("http", m))?;
        if self.health.http_allowed_hosts.is_empty()
            || self
                .health
                .http_allowed_hosts
                .iter()
                .any(|h| h.trim().is_empty() || h.contains(['/', ' ']))
        {
            return Err(bad(
                "health.http_allowed_hosts",
                "must list host names (`*` for any)",
            ));
        }
        Ok(())
    }

    /// The URL clients use to reach a service: the configured endpoint, or the matching
    /// listen address (with an unspecified IP replaced by loopback).
    pub fn endpoint(&self, service: ServiceName) -> String {
        let (configured, listen) = match service {
            ServiceName::ScanOrchestrator => (
                &self.endpoints.scan_orchestrator,
                self.listen.scan_orchestrator,
            ),
            ServiceName::VulnAnalyzer => (&self.endpoints.vuln_analyzer, self.listen.vuln_analyzer),
            ServiceName::Notifier => (&self.endpoints.notifier, self.listen.notifier),
            ServiceName::HealthAggregator => (
                &self.endpoints.health_aggregator,
                self.listen.health_aggregator,
            ),
        };
        if !configured.is_empty() {
            return configured.clone();
        }
        let mut addr = listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }
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

impl Config {
    /// The effective configuration as TOML, with passwords in URLs and keys redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.storage.database_url = redact(&c.storage.database_url);
        c.cache.redis_url = redact(&c.cache.redis_url);
        let shared = &mut c.resilience.server.rate_limit.distributed.redis_url;
        *shared = redact(shared);
        c.analyzer.llm.base_url = redact(&c.analyzer.llm.base_url);
        if !c.analyzer.llm.api_key.is_empty() {
            c.analyzer.llm.api_key = "***".to_owned();
        }
        // Webhook URLs serialize redacted (`SecretUrl`).
        c.telemetry.otlp_endpoint = redact(&c.telemetry.otlp_endpoint);
        toml::to_string(&c).expect("configuration serializes")
    }

    /// The secrets this configuration holds (the LLM key, passwords in URLs, webhook keys),
    /// made known to the log scrubber so that no log line shows them, whatever prints them.
    pub fn register_secrets(&self) {
        let urls = [
            &self.storage.database_url,
            &self.cache.redis_url,
            &self.resilience.server.rate_limit.distributed.redis_url,
            &self.analyzer.llm.base_url,
        ];
        for url in urls {
            if let Some(password) = url_password(url) {
                crate::telemetry::register_secret(password);
            }
        }
        crate::telemetry::register_secret(&self.analyzer.llm.api_key);
        for w in &self.notifier.webhooks {
            register_url_secret(w.url.expose());
        }
        for w in &self.notifier.webhooks {
            if !w.secret_env.is_empty()
                && let Ok(key) = std::env::var(&w.secret_env)
            {
                crate::telemetry::register_secret(&key);
            }
        }
    }
}

/// Registers a URL that is a credential as a secret: whole (as libraries quote it in their
/// errors), and its path and query when they are long enough not to garble ordinary text
/// (`/services/T000/B000/XXXX` is; `/hook` is not).
fn register_url_secret(url: &str) {
    crate::telemetry::register_secret(url);
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(path) = rest.find(['/', '?', '#']).map(|n| &rest[n..])
            && path.len() >= 16
        {
            crate::telemetry::register_secret(path);
        }
    }
}

/// The password in `url`'s user information, if it has one.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password)
}

/// Sets `path` in `table` to `raw`, read as a TOML value when it parses as one (numbers,
/// booleans, arrays) and as a string otherwise.
fn set_path(table: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut cur = table;
    for part in parents {
        cur = cur
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    cur.insert(last.clone(), value);
    Ok(())
}

/// The four PHANTOM services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// scan-orchestrator.
    ScanOrchestrator,
    /// vuln-analyzer.
    VulnAnalyzer,
    /// notifier.
    Notifier,
    /// health-aggregator.
    HealthAggregator,
}

impl ServiceName {
    /// Every service, in start-up order (dependencies first).
    pub const ALL: [ServiceName; 4] = [
        ServiceName::VulnAnalyzer,
        ServiceName::Notifier,
        ServiceName::ScanOrchestrator,
        ServiceName::HealthAggregator,
    ];

    /// The name used on the command line, in logs and in health reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScanOrchestrator => "scan-orchestrator",
            Self::VulnAnalyzer => "vuln-analyzer",
            Self::Notifier => "notifier",
            Self::HealthAggregator => "health-aggregator",
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown service {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_documented_example_is_a_valid_configuration_of_the_defaults() {
        let text = include_str!("../../../deploy/phantom.example.toml");
        let example = Config::from_sources(text, None, env(&[])).unwrap();
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&example).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn webhook_urls_are_secrets_wherever_the_configuration_is_shown() {
        let file = "[[notifier.webhooks]]\nname = \"chat\"\n\
                    url = \"https://hooks.slack.com/services/T0PHANTOM/B0PHANTOM/xoxSeCrEt42\"\n\
                    rooms = [\"scan/*\"]\n";
        let c = Config::from_sources(file, None, env(&[])).unwrap();
        let dump = c.to_redacted_toml();
        let debug = format!("{c:?}");
        for shown in [&dump, &debug] {
            assert!(
                !shown.contains("xoxSeCrEt42") && !shown.contains("T0PHANTOM"),
                "{shown}"
            );
        }
        assert!(dump.contains("https://hooks.slack.com/…"), "{dump}");
        c.register_secrets();
        let quoted = "error sending request for url \
             (https://hooks.slack.com/services/T0PHANTOM/B0PHANTOM/xoxSeCrEt42)";
        assert!(
            !crate::telemetry::scrub(quoted).contains("xoxSeCrEt42"),
            "{}",
            crate::telemetry::scrub(quoted)
        );
    }

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
        let c = Config::from_sources("", None, env(&[("DATABASE_URL", "postgres://a:pw@h/d")]))
            .unwrap();
        assert!(!c.to_redacted_toml().contains("pw"));
        let c = Config::from_sources(
            "",
            None,
            env(&[
                ("OPENAI_API_KEY", "sk-live-0123456789abcdef"),
                ("REDIS_URL", "redis://:redis-pass@cache:6379"),
            ]),
        )
        .unwrap();
        let dump = c.to_redacted_toml();
        assert!(
            !dump.contains("sk-live") && !dump.contains("redis-pass"),
            "{dump}"
        );
        c.register_secrets();
        assert_eq!(
            crate::telemetry::scrub("auth failed for redis-pass with sk-live-0123456789abcdef"),
            "auth failed for *** with ***"
        );
    }

    #[test]
    fn defaults_need_no_file_and_no_environment() {
        let c = Config::from_sources("", None, env(&[])).unwrap();
        assert_eq!(c.listen.scan_orchestrator.port(), 50051);
        assert_eq!(c.listen.health_aggregator.port(), 50054);
        assert_eq!(c.listen.http.port(), 8080);
        assert_eq!(c.listen.ws.port(), 8081);
        assert!(c.storage.database_url.is_empty());
        assert_eq!(
            c.endpoint(ServiceName::VulnAnalyzer),
            "http://127.0.0.1:50052"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = "[listen]\nnotifier = \"127.0.0.1:6000\"\n[scan]\nmax_hosts_per_scan = 10\n";
        let c = Config::from_sources(
            file,
            None,
            env(&[
                ("PHANTOM_NOTIFIER_ADDR", "0.0.0.0:0"),
                ("DATABASE_URL", "postgres://u@localhost/db"),
                ("PHANTOM__SCAN__MAX_HOSTS_PER_SCAN", "64"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.notifier, "0.0.0.0:0".parse().unwrap());
        assert_eq!(c.storage.database_url, "postgres://u@localhost/db");
        assert_eq!(c.scan.max_hosts_per_scan, 64);
        assert_eq!(c.endpoint(ServiceName::Notifier), "http://127.0.0.1:0");
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        let err = Config::from_sources("[scan]\nmax_hostz = 3\n", None, env(&[])).unwrap_err();
        assert!(err.to_string().contains("max_hostz"), "{err}");

        let err =
            Config::from_sources("", None, env(&[("PHANTOM__SCAN__TURBO", "1")])).unwrap_err();
        assert!(err.to_string().contains("turbo"), "{err}");
        assert!(err.to_string().contains("PHANTOM__SCAN__TURBO"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let err = Config::from_sources("", None, env(&[("PHANTOM_HTTP_ADDR", "not-an-addr")]))
            .unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");

        let err =
            Config::from_sources("", None, env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("storage.database_url"), "{err}");

        let err = Config::from_sources("[scan]\nconnect_timeout = \"soon\"\n", None, env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("connect_timeout"), "{err}");

        let err =
            Config::from_sources("[scan]\ndenied_cidrs = [\"10.0.0.0/33\"]\n", None, env(&[]))
                .unwrap_err();
        assert!(err.to_string().contains("scan.denied_cidrs"), "{err}");

        let err = Config::from_sources("[telemetry]\nsampling_ratio = 1.5\n", None, env(&[]))
            .unwrap_err();
        assert!(
            err.to_string().contains("telemetry.sampling_ratio"),
            "{err}"
        );

        let err = Config::from_sources(
            "",
            None,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("telemetry.otlp_endpoint"), "{err}");
    }
}
