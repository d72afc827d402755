//! Cache: in-process by default, Redis (through `fred`) when `REDIS_URL` is set.
//!
//! Both implement [`Cache`] and both pass the [`conformance`] suite. Values are bytes: callers
//! choose their encoding. Redis keys are prefixed (`phantom:`) so PHANTOM can share an
//! instance with other software.

mod memory;
mod redis;

pub mod conformance;

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

/// Opens the configured cache.
pub async fn connect(config: &CacheConfig) -> Result<Arc<dyn Cache>, CacheError> {
    if config.redis_url.is_empty() {
        Ok(Arc::new(MemoryCache::new(config.max_entries)))
    } else {
        Ok(Arc::new(RedisCache::connect(&config.redis_url).await?))
    }
}
