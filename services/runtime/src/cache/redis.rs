//! The Redis cache, through `fred` (pipelining, automatic reconnection).

use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::*;

use super::{Cache, CacheError};

const KEY_PREFIX: &str = "phantom:cache:";

/// A cache in Redis.
#[derive(Clone)]
pub struct RedisCache {
    client: Client,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let config = Config::from_url(url)?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(3);
            })
            .build()?;
        client.init().await?;
        Ok(Self { client })
    }

    fn key(key: &str) -> String {
        format!("{KEY_PREFIX}{key}")
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self.client.ping(None).await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.client.get(Self::key(key)).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let _: () = self
            .client
            .set(Self::key(key), value, Some(Expiration::PX(ms)), None, false)
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let _: i64 = self.client.del(Self::key(key)).await?;
        Ok(())
    }
}
