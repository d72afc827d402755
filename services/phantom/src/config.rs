//! The configuration of a PHANTOM process: one TOML file (`--config`), overridden by
//! environment variables, composed of each service's section (`[scan]`, `[analyzer]`,
//! `[notifier]`, `[health]`, typed and validated by the service's crate), the shared ones
//! (`[storage]`, `[cache]`, `[tenancy]`, `[http]`, `[shutdown]`, `[resilience.server]`,
//! `[telemetry]`) and the topology only the binary knows (`[listen]`, `[endpoints]`,
//! `[resilience.clients]`). [`Config::scan_orchestrator`] and its siblings give each service
//! what it runs with.
//!
//! Precedence, lowest first: built-in defaults, the file, then the environment. The well-known
//! variables (`DATABASE_URL`, `REDIS_URL`, `PHANTOM_*_ADDR`, ...) map to fixed keys; any other
//! key can be set as `PHANTOM__<SECTION>__<KEY>` (`PHANTOM__SCAN__MAX_HOSTS_PER_SCAN=64`).
//! Every struct refuses unknown keys, so a typo fails start-up with a message naming the key
//! instead of being silently ignored. `deploy/phantom.example.toml` documents every key.

use std::{net::SocketAddr, path::PathBuf};

use phantom_health_aggregator::settings::{HealthConfig, LlmTarget, ServiceTarget};
use phantom_kit::{
    client::Peer,
    config::{
        CacheConfig, ClientPolicy, HttpLimits, Invalid, ServerResilience, ServerSettings,
        ShutdownConfig, TelemetryConfig, TenancyConfig, redact,
    },
    telemetry::Secrets,
};
use phantom_notifier::settings::NotifierConfig;
use phantom_scan_orchestrator::settings::ScanConfig;
use phantom_storage::{Migrator, StorageConfig};
use phantom_vuln_analyzer::settings::AnalyzerConfig;
use serde::{Deserialize, Serialize};

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
    ("PHANTOM_AUTH_KEY_SECRET", &["auth", "key_secret"]),
    ("PHANTOM_AUTH_SERVICE_TOKEN", &["auth", "service_token"]),
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
    /// Which tenant calls act for when authentication is off; with it on, a call acts for
    /// its credential's tenant.
    pub tenancy: TenancyConfig,
    /// Who may call (API keys, JWTs, the services' token).
    pub auth: phantom_identity::AuthConfig,
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
    pub http: HttpLimits,
    /// Shutdown behaviour of every server.
    pub shutdown: ShutdownConfig,
    /// The resilience layers of every server and client.
    pub resilience: ResilienceConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// TLS of every gRPC and HTTP port, and mTLS between the services.
    pub tls: phantom_kit::tls::TlsConfig,
    /// What the process built from this configuration and its services share: not read from
    /// the file (see [`Runtime`]).
    #[serde(skip)]
    pub runtime: Runtime,
}

/// Handles a process builds once from its configuration and hands to each of its services:
/// the authenticator behind every server (with its key cache and JWKS), and the TLS
/// configuration that reloads its files.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// How the servers authenticate; `None` with authentication off.
    pub auth: Option<phantom_kit::config::ServerAuth>,
    /// TLS of the ports and the clients; `None` with TLS off.
    pub tls: Option<phantom_kit::tls::Tls>,
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
    /// `phantom serve`: a second, always plaintext gRPC port with only `grpc.health.v1`
    /// (`PHANTOM_HEALTH_ADDR`, e.g. `0.0.0.0:9090`), so Kubernetes probes keep working whatever
    /// the API port's transport security and credentials. Empty: none.
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
        Self::from_sources(&text, path, std::env::vars())
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
        let within = |section: &str| {
            let section = section.to_owned();
            move |e: Invalid| {
                let e = e.within(&section);
                ConfigError::Value {
                    key: e.key,
                    message: e.message,
                }
            }
        };
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
        if self.storage.max_connections == 0 {
            return Err(bad("storage.max_connections", "must be at least 1"));
        }
        self.cache.validate().map_err(within("cache"))?;
        self.scan.validate().map_err(within("scan"))?;
        for service in ServiceName::ALL {
            let url = self.endpoints.get(service);
            // One URL (a name is resolved to every replica), or a comma-separated list.
            if !url.is_empty()
                && let Err(why) = phantom_kit::client::Targets::parse(url)
            {
                return Err(bad(&format!("endpoints.{}", service.key()), &why));
            }
        }
        self.analyzer.validate().map_err(within("analyzer"))?;
        self.auth.validate().map_err(within("auth"))?;
        self.tls.validate().map_err(within("tls"))?;
        self.health.validate().map_err(within("health"))?;
        if !self.listen.health.is_empty() && self.listen.health.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "listen.health",
                "is not an address such as 0.0.0.0:9090",
            ));
        }
        let redis = !self.cache.redis_url.is_empty();
        self.notifier.validate(redis).map_err(within("notifier"))?;
        self.telemetry.validate().map_err(within("telemetry"))?;
        self.resilience
            .server
            .validate(redis)
            .map_err(within("resilience.server"))?;
        for service in ServiceName::ALL {
            self.resilience
                .clients
                .for_service(service)
                .validate()
                .map_err(within(&format!("resilience.clients.{}", service.key())))?;
        }
        self.http.validate().map_err(|m| bad("http", m))?;
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
        let scheme = if self.tls.enabled { "https" } else { "http" };
        format!("{scheme}://{addr}")
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
    /// registered in `secrets` (what the binary hands the log writer and the services) so
    /// that no log line or report shows them, whatever prints them.
    pub fn register_secrets(&self, secrets: &Secrets) {
        let urls = [
            &self.storage.database_url,
            &self.cache.redis_url,
            &self.resilience.server.rate_limit.distributed.redis_url,
            &self.analyzer.llm.base_url,
        ];
        for url in urls {
            if let Some(password) = url_password(url) {
                secrets.register(password);
            }
        }
        secrets.register(&self.analyzer.llm.api_key);
        secrets.register(self.auth.key_secret.expose());
        if let Some(token) = &self.auth.service_token {
            secrets.register(token.expose());
        }
        for w in &self.notifier.webhooks {
            register_url_secret(secrets, w.url.expose());
        }
        for w in &self.notifier.webhooks {
            if !w.secret_env.is_empty()
                && let Ok(key) = std::env::var(&w.secret_env)
            {
                secrets.register(&key);
            }
        }
    }
}

/// Registers a URL that is a credential as a secret: whole (as libraries quote it in their
/// errors), and its path and query when they are long enough not to garble ordinary text
/// (`/services/T000/B000/XXXX` is; `/hook` is not).
fn register_url_secret(secrets: &Secrets, url: &str) {
    secrets.register(url);
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(path) = rest.find(['/', '?', '#']).map(|n| &rest[n..])
            && path.len() >= 16
        {
            secrets.register(path);
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

/// What every service runs with, composed from the sections of the configuration.
impl Config {
    /// The settings every server shares.
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            tenancy: self.tenancy.clone(),
            resilience: self.resilience.server.clone(),
            shutdown: self.shutdown.clone(),
            http: self.http.clone(),
            probe_timeout: self.health.timeout,
            auth: self.runtime.auth.clone(),
            tls: self.runtime.tls.clone(),
        }
    }

    /// Where `to` is, and how `from` calls it (with its own credential).
    pub fn peer(&self, from: ServiceName, to: ServiceName) -> Peer {
        Peer {
            name: to.as_str().to_owned(),
            url: self.endpoint(to),
            policy: self.resilience.clients.for_service(to).clone(),
            bearer: self.service_bearer(from),
            tls: self.runtime.tls.clone(),
        }
    }

    /// What `service` sends as its `authorization` to its peers: the services' token with its
    /// name, when authentication is on and a token is configured (`phantom up` makes one).
    pub fn service_bearer(&self, service: ServiceName) -> Option<http::HeaderValue> {
        let secret = self
            .auth
            .service_token
            .as_ref()
            .filter(|_| self.auth.enabled)?;
        // Checked when the configuration was read.
        let token = phantom_identity::ServiceToken::new(secret.clone()).ok()?;
        phantom_kit::client::bearer_header(&token.bearer(service.as_str()))
    }

    /// Every service's migrations. One database holds every service's tables, and a
    /// service reads another's (the orchestrator's findings show the analyzer's analyses),
    /// so each service applies them all when it opens the database, as `phantom migrate`
    /// does: idempotent, and in place whichever service starts first.
    pub fn migrations() -> Vec<&'static Migrator> {
        vec![
            phantom_scan_orchestrator::repository::migrator(),
            phantom_vuln_analyzer::repository::migrator(),
            phantom_notifier::repository::migrator(),
            phantom_identity::migrator(),
        ]
    }

    /// What the scan-orchestrator runs with.
    pub fn scan_orchestrator(&self) -> phantom_scan_orchestrator::Config {
        phantom_scan_orchestrator::Config {
            server: self.server_settings(),
            storage: self.storage.clone(),
            migrations: Self::migrations(),
            scan: self.scan.clone(),
            analyzer: self.peer(ServiceName::ScanOrchestrator, ServiceName::VulnAnalyzer),
            notifier: self.peer(ServiceName::ScanOrchestrator, ServiceName::Notifier),
            redis_url: self.cache.redis_url.clone(),
        }
    }

    /// What the vuln-analyzer runs with.
    pub fn vuln_analyzer(&self) -> phantom_vuln_analyzer::Config {
        phantom_vuln_analyzer::Config {
            server: self.server_settings(),
            storage: self.storage.clone(),
            migrations: Self::migrations(),
            cache: self.cache.clone(),
            analyzer: self.analyzer.clone(),
        }
    }

    /// What the notifier runs with.
    pub fn notifier(&self) -> phantom_notifier::Config {
        phantom_notifier::Config {
            server: self.server_settings(),
            storage: self.storage.clone(),
            migrations: Self::migrations(),
            redis_url: self.cache.redis_url.clone(),
            notifier: self.notifier.clone(),
        }
    }

    /// What the health-aggregator runs with: every service of the system to watch (the
    /// orchestrator and itself critical by default), and the dependencies to check.
    pub fn health_aggregator(&self) -> phantom_health_aggregator::Config {
        let llm = &self.analyzer.llm;
        phantom_health_aggregator::Config {
            server: self.server_settings(),
            health: self.health.clone(),
            services: ServiceName::ALL
                .into_iter()
                .map(|s| ServiceTarget {
                    name: s.as_str().to_owned(),
                    endpoint: self.endpoint(s),
                    critical: matches!(
                        s,
                        ServiceName::ScanOrchestrator | ServiceName::HealthAggregator
                    ),
                })
                .collect(),
            storage: self.storage.clone(),
            redis_url: self.cache.redis_url.clone(),
            llm: (!llm.api_key.is_empty()).then(|| LlmTarget {
                base_url: llm.base_url.clone(),
                api_key: llm.api_key.clone(),
            }),
            bearer: self.service_bearer(ServiceName::HealthAggregator),
        }
    }
}

impl EndpointsConfig {
    /// The configured endpoint of `service` (empty: its listen address).
    pub fn get(&self, service: ServiceName) -> &str {
        match service {
            ServiceName::ScanOrchestrator => &self.scan_orchestrator,
            ServiceName::VulnAnalyzer => &self.vuln_analyzer,
            ServiceName::Notifier => &self.notifier,
            ServiceName::HealthAggregator => &self.health_aggregator,
        }
    }
}

/// The four PHANTOM services: only the binary, which composes them, knows the list.
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

    /// Its key in the configuration (`[resilience.clients.scan_orchestrator]`).
    pub fn key(self) -> &'static str {
        match self {
            Self::ScanOrchestrator => "scan_orchestrator",
            Self::VulnAnalyzer => "vuln_analyzer",
            Self::Notifier => "notifier",
            Self::HealthAggregator => "health_aggregator",
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
        let secrets = Secrets::new();
        c.register_secrets(&secrets);
        let quoted = "error sending request for url \
             (https://hooks.slack.com/services/T0PHANTOM/B0PHANTOM/xoxSeCrEt42)";
        assert!(
            !secrets.scrub(quoted).contains("xoxSeCrEt42"),
            "{}",
            secrets.scrub(quoted)
        );
    }

    #[test]
    fn passwords_never_reach_reports() {
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
        let secrets = Secrets::new();
        c.register_secrets(&secrets);
        assert_eq!(
            secrets.scrub("auth failed for redis-pass with sk-live-0123456789abcdef"),
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
    fn an_invalid_default_tenant_is_refused_when_read_naming_the_key() {
        for bad in ["Not_A_Tenant", "-leading-dash", ""] {
            let file = format!("[tenancy]\ndefault_tenant = {bad:?}\n");
            let err = Config::from_sources(&file, None, env(&[])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("tenancy.default_tenant"), "{bad:?}: {text}");
            assert!(text.contains("1-63 characters"), "{bad:?}: {text}");
        }
        let c = Config::from_sources("[tenancy]\ndefault_tenant = \"acme-1\"\n", None, env(&[]))
            .unwrap();
        assert_eq!(c.tenancy.default_tenant.as_str(), "acme-1");
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
