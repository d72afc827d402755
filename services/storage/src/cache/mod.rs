//! Cache: in-process by default, Redis (through `fred`) when `REDIS_URL` is set.
//!
//! Both backends implement [`Cache`] and pass the [`conformance`] suite, and so does the
//! [`CacheManager`] over each. Services use the manager: tags, dependencies, adaptive TTL,
//! refresh-ahead, single-flight loads, metrics, and a breaker that turns the cache into a
//! pass-through while Redis is unreachable. [`CompressedCache`] compresses large values (gzip,
//! zlib or zstd). Redis keys are prefixed (`phantom:cache:`) so PHANTOM can share an instance
//! with other software.

mod compress;
mod config;
mod manager;
mod memory;
mod redis;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub use config::CacheConfig;

pub use compress::{CompressedCache, Compression, CompressionStats};
pub use manager::{CacheManager, CacheSnapshot, Entry};

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

pub use memory::MemoryCache;
pub use redis::RedisCache;

/// Why a cache operation failed. Callers treat the cache as an optimisation: on error they
/// log and go to the source of truth.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis refused or failed the operation.
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

/// A key-value store with per-entry time to live, and sets of keys (what tags and dependencies
/// are built on). This is the backend interface; services use [`CacheManager`], which adds
/// tags, dependencies, adaptive TTL, refresh-ahead, single-flight loads, metrics and a breaker.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is ("memory" or "redis"), for health reports.
    fn backend(&self) -> &'static str;
    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), CacheError>;
    /// The value under `key` and the time it has left, unless absent or expired.
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError>;
    /// The value under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.get_with_ttl(key).await?.map(|(v, _)| v))
    }
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Gives a live entry `ttl` more to live from now. False when there is no such entry.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;
    /// Removes `keys` (entries or sets); absent keys are not an error.
    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError>;
    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.delete_many(&[key.to_owned()]).await
    }
    /// Adds `members` to the set `set`, which lives at least `ttl` from now.
    async fn set_add(&self, set: &str, members: &[String], ttl: Duration)
    -> Result<(), CacheError>;
    /// The members of `set` (empty when it does not exist).
    async fn set_members(&self, set: &str) -> Result<Vec<String>, CacheError>;
    /// Entries the backend dropped to make room (not expirations), where it knows.
    fn evictions(&self) -> u64 {
        0
    }
}

/// Opens the configured backend, compressing values as configured.
pub async fn connect_backend(config: &CacheConfig) -> Result<CompressedCache, CacheError> {
    let backend: Arc<dyn Cache> = if config.redis_url.is_empty() {
        Arc::new(MemoryCache::new(config.max_entries))
    } else {
        Arc::new(RedisCache::connect(&config.redis_url, config.timeout).await?)
    };
    Ok(CompressedCache::new(
        backend,
        config.compression,
        config.compress_above,
    ))
}

/// Opens the configured cache for `user` and registers it (and its breaker) in `registry`,
/// so its statistics appear in its service's `/health/metrics` and `/metrics`.
pub async fn connect_registered(
    user: &str,
    config: &CacheConfig,
    registry: &phantom_layers::registry::Registry,
) -> Result<CacheManager, CacheError> {
    let cache = CacheManager::new(user, connect_backend(config).await?, config);
    registry.breaker(cache.breaker());
    registry.source(user, Arc::new(cache.clone()));
    Ok(cache)
}
