//! Rate limiting: GCRA (token bucket) through `governor`, or a sliding-window counter, keyed
//! per caller and method.
//!
//! Each method may have its own quota (`methods`), the rest share the default one; within a
//! quota every caller (tenant) has its own bucket, so one noisy tenant cannot starve the
//! others. A call over the limit is either rejected at once or made to wait up to a bound
//! (`mode`); a rejection is `RESOURCE_EXHAUSTED` with a `RetryInfo` computed from the
//! limiter's own next-allowed time, which PHANTOM's clients honour before retrying.
//! Paths the caller declares [`Exempt`](crate::methods::Exempt) are never limited (a server
//! exempts its health probes and reflection: a probe must never be throttled).
//!
//! Keys are bounded: the method part of a key is one of the server's [`KnownMethods`]
//! (`unknown` for every other path) and each quota keeps at most [`MAX_KEYS_PER_QUOTA`]
//! buckets, forgetting those closest to full first.
//!
//! [`KnownMethods`]: crate::methods::KnownMethods
//!
//! With `distributed` on, the limits are shared by every replica through Redis (see
//! [`RedisGcra`]), the local limiter staying the fast path.
//!
//! Time comes from `tokio::time` (see [`TokioClock`]), so tests run on a paused clock.

mod clock;
mod config;
mod distributed;
mod limited;
mod limiter;
mod service;
mod sliding;
mod store;

pub use clock::{TokioClock, TokioInstant};
pub use config::{Algorithm, LimitMode, QuotaConfig, RateLimitConfig};
pub use distributed::{DistributedConfig, GCRA_LUA_FUNCTIONS, OnRedisError, RedisGcra};
pub use limited::Limited;
pub use limiter::{LimiterSnapshot, MAX_KEYS_PER_QUOTA, RateLimiter};
pub use service::{CallerKey, RateLimit, RateLimitFuture, RateLimitLayer};

#[cfg(test)]
mod tests;
