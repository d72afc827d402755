//! Cache: in-process by default, Redis (through `fred`) when `REDIS_URL` is set.
//!
//! Both implement [`Cache`] and both pass the [`conformance`] suite. Values are bytes: callers
//! choose their encoding; [`CompressedCache`] compresses large ones (gzip, zlib or zstd) and
//! counts hits, misses and bytes saved. Redis keys are prefixed (`phantom:`) so PHANTOM can share an
//! instance with other software.

mod compress;
mod memory;
mod redis;

pub mod conformance;

pub use compress::{CacheSnapshot, CompressedCache, Compression};

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

pub use memory::MemoryCache;
pub use redis::RedisCache;

use crate::config::CacheConfig;

/// Why a cache operation failed. Callers treat the cache as an optimisation: on error they
/// log and go to the source of truth.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis refused or failed the operation.
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

/// A key-value cache with per-entry time to live.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is ("memory" or "redis"), for health reports.
    fn backend(&self) -> &'static str;
    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), CacheError>;
    /// The value under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
}

/// Opens the configured cache, compressing values as configured.
pub async fn connect(config: &CacheConfig) -> Result<Arc<dyn Cache>, CacheError> {
    Ok(Arc::new(connect_compressed(config).await?))
}

async fn connect_compressed(config: &CacheConfig) -> Result<CompressedCache, CacheError> {
    let backend: Arc<dyn Cache> = if config.redis_url.is_empty() {
        Arc::new(MemoryCache::new(config.max_entries))
    } else {
        Arc::new(RedisCache::connect(&config.redis_url).await?)
    };
    Ok(CompressedCache::new(
        backend,
        config.compression,
        config.compress_above,
    ))
}

/// Caches of this process by user (`vuln-analyzer`), for `/health/metrics`.
fn registered() -> &'static std::sync::Mutex<Vec<(String, CompressedCache)>> {
    static CACHES: std::sync::OnceLock<std::sync::Mutex<Vec<(String, CompressedCache)>>> =
        std::sync::OnceLock::new();
    CACHES.get_or_init(Default::default)
}

/// Opens the configured cache for `user` and registers it, so its statistics appear in
/// `/health/metrics`.
pub async fn connect_registered(
    user: &str,
    config: &CacheConfig,
) -> Result<Arc<dyn Cache>, CacheError> {
    let cache = connect_compressed(config).await?;
    let mut all = registered()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|(name, _)| name != user);
    all.push((user.to_owned(), cache.clone()));
    Ok(Arc::new(cache))
}

/// Statistics of every registered cache of this process, by user.
pub fn snapshots() -> Vec<(String, CacheSnapshot)> {
    registered()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(name, c)| (name.clone(), c.snapshot()))
        .collect()
}
