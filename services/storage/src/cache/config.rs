//! The cache's settings (`[cache]`).

use std::time::Duration;

use phantom_layers::{circuit_breaker::CircuitBreakerConfig, settings::Invalid};
use serde::{Deserialize, Serialize};

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
    pub compression: super::Compression,
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
            compression: super::Compression::Zstd,
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

impl CacheConfig {
    /// Checks what the types cannot; keys are relative to `[cache]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let redis = &self.redis_url;
        if !redis.is_empty() && !redis.starts_with("redis://") && !redis.starts_with("rediss://") {
            return Err(Invalid::new(
                "redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        self.circuit_breaker
            .validate()
            .map_err(|m| Invalid::new("circuit_breaker", m))?;
        if self.timeout.is_zero() {
            return Err(Invalid::new("timeout", "must be more than 0s"));
        }
        if self.min_ttl > self.max_ttl {
            return Err(Invalid::new("min_ttl", "must not exceed cache.max_ttl"));
        }
        if !(0.0..0.9).contains(&self.refresh_ahead) {
            return Err(Invalid::new(
                "refresh_ahead",
                "must be a fraction in [0, 0.9) (0 turns refresh-ahead off)",
            ));
        }
        Ok(())
    }
}
