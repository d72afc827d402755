//! The notifier's settings: the `[notifier]` section (queues, retention, the WebSocket
//! gateway, webhooks) and what the service is given to run. Parsed once, when the
//! configuration is loaded; [`NotifierConfig::validate`] checks what the types cannot.

use std::time::Duration;

use phantom_kit::config::{Invalid, ServerSettings};
use phantom_layers::circuit_breaker::CircuitBreakerConfig;
use phantom_storage::{Migrator, StorageConfig};
use serde::{Deserialize, Serialize};

pub use crate::secret_url::SecretUrl;

/// What the notifier runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every PHANTOM server shares (tenancy, limits, shutdown, the HTTP port's limits).
    pub server: ServerSettings,
    /// The database.
    pub storage: StorageConfig,
    /// The migrations applied when the database is opened.
    pub migrations: Vec<&'static Migrator>,
    /// Redis (the notification log and the fan-out across replicas), if any.
    pub redis_url: String,
    /// Queues, retention, the WebSocket gateway, webhooks.
    pub notifier: NotifierConfig,
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
    /// How publishes are written to the log.
    pub write: WriteConfig,
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

/// How publishes are written to the log: one writer per replica commits them in batches, most
/// urgent first ([`crate::writer`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteConfig {
    /// Most notifications committed in one transaction (one script in Redis). Publishes that
    /// arrive while a batch commits go in the next one, CRITICAL first, then HIGH, NORMAL,
    /// LOW: a CRITICAL waits for at most the batch being committed.
    pub max_batch: usize,
    /// Publishes of one priority waiting for the writer, at most; past it a Publish of that
    /// priority is refused with RESOURCE_EXHAUSTED and RetryInfo, while the other priorities
    /// still get in. Each holds its notification (at most 64 KiB of payload) while it waits.
    pub max_queued: usize,
}

impl Default for WriteConfig {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

/// Default of [`WriteConfig::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 32;
/// Default of [`WriteConfig::max_queued`].
pub const DEFAULT_MAX_QUEUED: usize = 256;

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
    /// Tenants whose notifications are forwarded: tenant ids, or `*` for every tenant (an
    /// operator's own destination, which must say so). Empty: the deployment's default
    /// tenant only. A destination never receives another tenant's rooms by accident.
    pub tenants: Vec<String>,
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
            tenants: Vec::new(),
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
            write: WriteConfig::default(),
            ws: WsConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

impl NotifierConfig {
    /// Checks what the types cannot, knowing whether a Redis is configured; keys are relative
    /// to `[notifier]`.
    pub fn validate(&self, redis_configured: bool) -> Result<(), Invalid> {
        if self.queue_capacity == 0
            || self.queue_bytes == 0
            || self.max_subscriptions == Some(0)
            || self.max_subscriptions_per_caller == 0
            || self.heartbeat.is_zero()
            || self.prune_every.is_zero()
        {
            return Err(Invalid::new(
                "",
                "queue_capacity, queue_bytes, max_subscriptions, max_subscriptions_per_caller, \
                 heartbeat and prune_every must be more than 0",
            ));
        }
        if self.log == NotificationLogKind::Redis && !redis_configured {
            return Err(Invalid::new(
                "log",
                "is redis, but no Redis is configured (set REDIS_URL)",
            ));
        }
        if self.write.max_batch == 0 || self.write.max_queued == 0 {
            return Err(Invalid::new(
                "write",
                "max_batch and max_queued must be more than 0",
            ));
        }
        let ws = &self.ws;
        if ws.max_connections == Some(0)
            || ws.max_connections_per_ip == 0
            || ws.ping_every.is_zero()
        {
            return Err(Invalid::new(
                "ws",
                "max_connections, max_connections_per_ip and ping_every must be more than 0",
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = |k: &str| format!("webhooks[{i}].{k}");
            if w.name.is_empty() {
                return Err(Invalid::new(key("name"), "is required"));
            }
            let uri = w.url.expose().parse::<http::Uri>().ok();
            if !uri
                .as_ref()
                .and_then(|u| u.scheme_str())
                .is_some_and(|s| s == "http" || s == "https")
            {
                return Err(Invalid::new(
                    key("url"),
                    "must be an http:// or https:// URL",
                ));
            }
            if w.rooms.is_empty() {
                return Err(Invalid::new(
                    key("rooms"),
                    "must name at least one room or prefix*",
                ));
            }
            if let Some(bad) = w
                .tenants
                .iter()
                .find(|t| *t != "*" && phantom_layers::Tenant::parse(t).is_none())
            {
                return Err(Invalid::new(
                    key("tenants"),
                    format!("{bad:?} is neither a tenant id ([a-z0-9-], 1-63) nor `*`"),
                ));
            }
            if !["low", "normal", "high", "critical"].contains(&w.min_priority.as_str()) {
                return Err(Invalid::new(
                    key("min_priority"),
                    "must be low, normal, high or critical",
                ));
            }
            if w.max_attempts == 0
                || w.queue == 0
                || w.timeout.is_zero()
                || w.backoff > w.max_backoff
            {
                return Err(Invalid::new(
                    key("max_attempts"),
                    "max_attempts, queue and timeout must be more than 0, and backoff at most max_backoff",
                ));
            }
            w.circuit_breaker
                .validate()
                .map_err(|m| Invalid::new(key("circuit_breaker"), m))?;
        }
        Ok(())
    }
}
