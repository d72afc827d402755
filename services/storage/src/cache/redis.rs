//! The Redis cache, through `fred` (pipelining, automatic reconnection).

use std::time::Duration;

use async_trait::async_trait;
use fred::{prelude::*, types::ExpireOptions};

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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl RedisCache {
    /// A client for `url` (`redis://host:port/db`) that keeps reconnecting in the background.
    ///
    /// A Redis that is down at start-up does not stop the service: commands fail after
    /// `command_timeout` until it answers, and the [`super::CacheManager`]'s breaker turns the
    /// cache into a pass-through meanwhile. Only a malformed URL is an error here.
    pub async fn connect(url: &str, command_timeout: Duration) -> Result<Self, CacheError> {
        let client = phantom_layers::redis::connect(url, command_timeout)?;
        if tokio::time::timeout(Duration::from_secs(3), client.wait_for_connect())
            .await
            .map_or(true, |r| r.is_err())
        {
            tracing::warn!(
                "Redis is not reachable yet; the cache passes through to the source until it is"
            );
        }
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

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        let key = Self::key(key);
        let pipe = self.client.pipeline();
        let () = pipe.get(&key).await?;
        let () = pipe.pttl(&key).await?;
        let (value, ttl): (Option<Vec<u8>>, i64) = pipe.all().await?;
        // PTTL is -2 for a key gone between the two commands, -1 for one without expiry
        // (never written by PHANTOM).
        Ok(match (value, ttl) {
            (Some(v), ttl) if ttl >= 0 => Some((v, Duration::from_millis(ttl.unsigned_abs()))),
            (Some(v), -1) => Some((v, Duration::MAX)),
            _ => None,
        })
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let _: () = self
            .client
            .set(
                Self::key(key),
                value,
                Some(Expiration::PX(millis(ttl))),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let done: i64 = self
            .client
            .pexpire(Self::key(key), millis(ttl), None)
            .await?;
        Ok(done == 1)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| Self::key(k)).collect();
        let _: i64 = self.client.unlink(keys).await?;
        Ok(())
    }

    async fn set_add(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        if members.is_empty() {
            return Ok(());
        }
        let key = Self::key(set);
        let pipe = self.client.pipeline();
        let () = pipe.sadd(&key, members.to_vec()).await?;
        // The set lives as long as its longest-lived member could: extend, never shorten.
        let () = pipe
            .pexpire(&key, millis(ttl), Some(ExpireOptions::NX))
            .await?;
        let () = pipe
            .pexpire(&key, millis(ttl), Some(ExpireOptions::GT))
            .await?;
        let _: (i64, i64, i64) = pipe.all().await?;
        Ok(())
    }

    async fn set_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        Ok(self.client.smembers(Self::key(set)).await?)
    }
}
