//! Distributed GCRA: one limit shared by every replica, kept in Redis.
//!
//! The local limiter stays the fast path: a call it refuses never reaches Redis. A call it
//! admits is then checked against the shared state with one Lua script (GCRA on Redis's own
//! clock, so replicas' clocks need not agree). When Redis cannot answer within `timeout`,
//! `on_error` decides: `allow` (availability first) or `deny` (protection first).

use std::time::Duration;

use fred::{interfaces::LuaInterface, prelude::Client};
use serde::{Deserialize, Serialize};

use super::{config::QuotaConfig, limited::Limited};

/// GCRA in one round trip. KEYS[1]: the bucket. ARGV: emission interval and burst tolerance,
/// in microseconds. Returns {1, 0} when admitted, {0, wait in microseconds} otherwise.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// What to do when Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Let the call through (the local limit still applies).
    Allow,
    /// Refuse the call with `RESOURCE_EXHAUSTED`.
    Deny,
}

/// Shared limits across replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// Off: each replica limits on its own.
    pub enabled: bool,
    /// Redis URL; empty means the cache's (`REDIS_URL`).
    pub redis_url: String,
    /// Allow or deny when Redis fails.
    pub on_error: OnRedisError,
    /// Longest wait for Redis before `on_error` applies.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            redis_url: String::new(),
            on_error: OnRedisError::Allow,
            timeout: Duration::from_millis(50),
        }
    }
}

/// The Redis side of a distributed limiter.
#[derive(Clone)]
pub struct RedisGcra {
    client: Client,
    on_error: OnRedisError,
    timeout: Duration,
}

impl std::fmt::Debug for RedisGcra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGcra")
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl RedisGcra {
    /// A client for `url` that connects in the background and keeps reconnecting: a Redis
    /// that is down at start-up makes `on_error` apply, it does not stop the server.
    pub fn connect(
        url: &str,
        on_error: OnRedisError,
        timeout: Duration,
    ) -> Result<Self, fred::error::Error> {
        // Calls are timed here (`timeout`), not by the client.
        let client = crate::redis::connect(url, Duration::ZERO)?;
        Ok(Self {
            client,
            on_error,
            timeout,
        })
    }

    /// Admits one call on `key` under `quota`, across every replica.
    pub async fn check(&self, key: &str, quota: &QuotaConfig) -> Result<(), Limited> {
        let interval = (1_000_000.0 / quota.per_second).round().max(1.0);
        let tolerance = interval * f64::from(quota.burst.max(1) - 1);
        let call = self.client.eval::<Vec<i64>, _, _, _>(
            GCRA_LUA,
            vec![format!("phantom:rl:{key}")],
            vec![interval as i64, tolerance as i64],
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) if v.first() == Some(&1) => Ok(()),
            Ok(Ok(v)) => Err(Limited {
                retry_after: Duration::from_micros(
                    v.get(1).copied().unwrap_or(0).max(1).unsigned_abs(),
                ),
            }),
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.timeout),
                };
                tracing::debug!(error = %why, on_error = ?self.on_error, "Distributed rate limit unavailable");
                match self.on_error {
                    OnRedisError::Allow => Ok(()),
                    OnRedisError::Deny => Err(Limited {
                        retry_after: Duration::from_secs(1),
                    }),
                }
            }
        }
    }
}
