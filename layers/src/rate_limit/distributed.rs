//! Distributed GCRA: one limit shared by every replica, kept in Redis.
//!
//! The local limiter stays the fast path: a call it refuses never reaches Redis. A call it
//! admits is then checked against the shared state with one Lua script (GCRA on Redis's own
//! clock, so replicas' clocks need not agree). When Redis cannot answer within `timeout`,
//! `on_error` decides: `allow` (availability first) or `deny` (protection first).

use std::time::Duration;

use fred::prelude::Client;
use serde::{Deserialize, Serialize};

use super::{config::QuotaConfig, limited::Limited};

/// GCRA as Lua functions for scripts to embed, so that a script checking more than one
/// limit at once (the scan-orchestrator's per-host politeness: a rate and connections in
/// flight) stays one atomic round trip, with the GCRA written once:
/// - `redis_now()`: Redis's clock, in microseconds (replicas' clocks need not agree);
/// - `gcra_check(key, now, interval, tolerance)`: the wait in microseconds before a call on
///   `key` is admitted (0: admitted now) and the key's new theoretical arrival time;
/// - `gcra_commit(key, now, new_tat)`: records an admission, with a TTL so that an idle key
///   goes away.
///
/// Intervals and tolerances are in microseconds; a burst of one is a tolerance of 0.
pub const GCRA_LUA_FUNCTIONS: &str = r"
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function gcra_check(key, now, interval, tolerance)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allow_at = tat - tolerance
  if now < allow_at then
    return allow_at - now, tat
  end
  return 0, tat + interval
end
local function gcra_commit(key, now, new_tat)
  redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
";

/// GCRA in one round trip. KEYS[1]: the bucket. ARGV: emission interval and burst tolerance,
/// in microseconds. Returns {1, 0} when admitted, {0, wait in microseconds} otherwise.
const GCRA_LUA: &str = r"
local now = redis_now()
local wait, new_tat = gcra_check(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait > 0 then
  return {0, wait}
end
gcra_commit(KEYS[1], now, new_tat)
return {1, 0}
";

/// [`GCRA_LUA_FUNCTIONS`] and [`GCRA_LUA`], made into one script once.
static GCRA_SCRIPT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{GCRA_LUA_FUNCTIONS}{GCRA_LUA}"));

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
        let call = crate::redis::eval_integers(
            &self.client,
            &GCRA_SCRIPT,
            vec![format!("phantom:rl:{key}")],
            vec![
                (interval as i64).to_string(),
                (tolerance as i64).to_string(),
            ],
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
