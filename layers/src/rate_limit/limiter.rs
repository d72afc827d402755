use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{clock::Clock, middleware::NoOpMiddleware};
use serde::Serialize;

use super::{
    clock::{TokioClock, TokioInstant},
    config::{Algorithm, LimitMode, QuotaConfig, RateLimitConfig},
    distributed::RedisGcra,
    limited::Limited,
    sliding::SlidingWindow,
    store::BoundedStore,
};
use crate::methods::{Exempt, KnownMethods};

type Gcra = governor::RateLimiter<u64, BoundedStore, TokioClock, NoOpMiddleware<TokioInstant>>;

/// Buckets one quota keeps at most (callers, or callers × methods for the default quota).
/// Beyond it the buckets closest to full are forgotten (see `store`): at some tens of bytes a
/// bucket, a few hundred KiB per quota whatever callers send.
pub const MAX_KEYS_PER_QUOTA: usize = 16_384;

/// One quota's keyed state, by algorithm.
#[derive(Debug)]
enum Keyed {
    Gcra(Gcra),
    Sliding(SlidingWindow),
}

impl Keyed {
    fn new(q: &QuotaConfig, algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Gcra => {
                let quota = q
                    .quota()
                    .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN));
                Keyed::Gcra(governor::RateLimiter::new(
                    quota,
                    BoundedStore::new(MAX_KEYS_PER_QUOTA),
                    TokioClock,
                ))
            }
            Algorithm::SlidingWindow { window } => {
                let calls = (q.per_second * window.as_secs_f64()).round();
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let limit = calls.clamp(1.0, f64::from(u32::MAX)) as u32;
                Keyed::Sliding(SlidingWindow::new(limit, window, MAX_KEYS_PER_QUOTA))
            }
        }
    }

    fn check(&self, key: u64) -> Result<(), Duration> {
        match self {
            Keyed::Gcra(l) => l
                .check_key(&key)
                .map_err(|nu| nu.wait_time_from(TokioClock.now())),
            Keyed::Sliding(s) => s.check(key),
        }
    }

    fn len(&self) -> usize {
        match self {
            Keyed::Gcra(l) => l.len(),
            Keyed::Sliding(s) => s.len(),
        }
    }

    fn retain_recent(&self) {
        if let Keyed::Gcra(l) = self {
            l.retain_recent();
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    rejected: AtomicU64,
    waited: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    name: String,
    enabled: bool,
    mode: LimitMode,
    default: Keyed,
    methods: HashMap<String, Keyed>,
    hasher: std::collections::hash_map::RandomState,
    counters: Counters,
    /// Quotas, for the shared (Redis) check.
    default_quota: QuotaConfig,
    method_quotas: HashMap<String, QuotaConfig>,
    distributed: Option<RedisGcra>,
    /// The methods that get buckets of their own under the default quota; every other path
    /// shares the `unknown` one (per caller).
    known: KnownMethods,
    /// Paths never limited.
    exempt: Exempt,
}

/// Keyed limiters for one server or client, shared by its clones.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

/// What a limiter has done, for metrics.
#[derive(Debug, Clone, Serialize)]
pub struct LimiterSnapshot {
    /// The limiter's name.
    pub name: String,
    /// Whether it limits at all.
    pub enabled: bool,
    /// Calls let through.
    pub allowed: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Calls that waited before passing.
    pub waited: u64,
    /// Buckets kept, over every quota (at most [`MAX_KEYS_PER_QUOTA`] each).
    pub tracked_keys: usize,
}

impl RateLimiter {
    /// Limiters for `config`, named for metrics. The configuration must have been validated.
    pub fn new(name: &str, config: &RateLimitConfig) -> Self {
        let keyed = |q: &QuotaConfig| Keyed::new(q, config.algorithm);
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                enabled: config.enabled,
                mode: config.mode,
                default: keyed(&config.default),
                methods: config
                    .methods
                    .iter()
                    .map(|(m, q)| (m.clone(), keyed(q)))
                    .collect(),
                hasher: std::collections::hash_map::RandomState::new(),
                counters: Counters::default(),
                default_quota: config.default,
                method_quotas: config.methods.clone().into_iter().collect(),
                distributed: None,
                known: KnownMethods::default(),
                exempt: Exempt::default(),
            }),
        }
    }

    /// The same limiter keyed by `methods`, the server's own: each of them has its own
    /// bucket per caller under the default quota, and every other path (as many as callers
    /// care to invent) shares one. Without it only the methods with a quota of their own are
    /// told apart. Call before the limiter is cloned.
    pub fn with_methods(mut self, methods: KnownMethods) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_methods is called before the limiter is shared")
            .known = methods;
        self
    }

    /// This limiter never limits the `exempt` paths (a server's health probes).
    pub fn with_exempt(mut self, exempt: Exempt) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_exempt is called before the limiter is shared")
            .exempt = exempt;
        self
    }

    /// Like [`RateLimiter::new`], sharing the limits through Redis when `config.distributed`
    /// is on (its `redis_url` must be set). Connects in the background.
    pub fn with_distributed(
        name: &str,
        config: &RateLimitConfig,
    ) -> Result<Self, fred::error::Error> {
        let mut limiter = Self::new(name, config);
        let d = &config.distributed;
        if config.enabled && d.enabled {
            let redis = RedisGcra::connect(&d.redis_url, d.on_error, d.timeout)?;
            Arc::get_mut(&mut limiter.shared)
                .expect("not shared yet")
                .distributed = Some(redis);
        }
        Ok(limiter)
    }

    /// Whether admitted calls must also pass the shared (Redis) check.
    pub fn is_distributed(&self) -> bool {
        self.shared.distributed.is_some()
    }

    /// The shared check of a call the local limiter admitted.
    pub async fn check_shared(&self, method: &str, caller: &str) -> Result<(), Limited> {
        let s = &self.shared;
        let Some(redis) = &s.distributed else {
            return Ok(());
        };
        if !s.enabled || s.exempt.contains(method) {
            return Ok(());
        }
        let (quota, key) = match s.method_quotas.get(method) {
            Some(q) => (q, format!("{}:{method}:{caller}", s.name)),
            None => {
                let method = s.known.normalize(method);
                (&s.default_quota, format!("{}:*:{method}:{caller}", s.name))
            }
        };
        let result = redis.check(&key, quota).await;
        if result.is_err() {
            s.counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The configured mode.
    pub fn mode(&self) -> LimitMode {
        self.shared.mode
    }

    /// Whether `caller` may call `method` now; when not, how long until it may.
    pub fn check(&self, method: &str, caller: &str) -> Result<(), Limited> {
        let s = &self.shared;
        if !s.enabled || s.exempt.contains(method) {
            return Ok(());
        }
        let (limiter, key) = match s.methods.get(method) {
            Some(l) => (l, self.key(&[caller])),
            // The shared quota is per method too: each known method keeps its own bucket per
            // caller, and the unknown ones share one.
            None => (&s.default, self.key(&[caller, s.known.normalize(method)])),
        };
        match limiter.check(key) {
            Ok(()) => {
                s.counters.allowed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(retry_after) => Err(Limited { retry_after }),
        }
    }

    /// [`RateLimiter::check`], waiting in `Wait` mode when the wait fits the bound.
    pub async fn acquire(&self, method: &str, caller: &str) -> Result<(), Limited> {
        let mut first = true;
        loop {
            match self.check(method, caller) {
                Ok(()) => return Ok(()),
                Err(limited) => match self.shared.mode {
                    LimitMode::Wait { max_wait } if limited.retry_after <= max_wait && first => {
                        first = false;
                        self.shared.counters.waited.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(limited.retry_after).await;
                    }
                    _ => {
                        self.shared
                            .counters
                            .rejected
                            .fetch_add(1, Ordering::Relaxed);
                        return Err(limited);
                    }
                },
            }
        }
    }

    /// Counts a rejection decided by the caller of [`RateLimiter::check`].
    pub(crate) fn acquire_rejected(&self) {
        self.shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    fn key(&self, parts: &[&str]) -> u64 {
        // A hash, not the strings: the fast path allocates nothing.

        self.shared.hasher.hash_one(parts)
    }

    /// Forgets callers whose buckets are full again (call periodically on busy servers).
    pub fn retain_recent(&self) {
        self.shared.default.retain_recent();
        for l in self.shared.methods.values() {
            l.retain_recent();
        }
    }

    /// What the limiter has done.
    pub fn snapshot(&self) -> LimiterSnapshot {
        let s = &self.shared;
        LimiterSnapshot {
            name: s.name.clone(),
            enabled: s.enabled,
            allowed: s.counters.allowed.load(Ordering::Relaxed),
            rejected: s.counters.rejected.load(Ordering::Relaxed),
            waited: s.counters.waited.load(Ordering::Relaxed),
            tracked_keys: s.default.len() + s.methods.values().map(Keyed::len).sum::<usize>(),
        }
    }
}

impl crate::exposition::Describe for LimiterSnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        let l = [("limiter", self.name.as_str())];
        out.counter(
            "phantom_rate_limit_rejected_total",
            "Calls rejected by a rate limit.",
            &l,
            self.rejected as f64,
        );
        out.counter(
            "phantom_rate_limit_allowed_total",
            "Calls a rate limit let through.",
            &l,
            self.allowed as f64,
        );
    }
}
