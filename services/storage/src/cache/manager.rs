//! The cache services use: the original design's "intelligent cache", over any [`Cache`].
//!
//! - **Tags**: an entry stored with tags is removed by [`CacheManager::invalidate_tag`] on
//!   any of them (all analyses of a scan, in one call).
//! - **Dependencies**: an entry stored with `depends_on` is removed when any entry it depends
//!   on is invalidated, transitively.
//! - **Adaptive TTL**: an entry read often lives longer (its TTL grows as the log of its reads,
//!   up to `max_ttl`); one never read is stored for half as long next time (down to `min_ttl`).
//! - **Refresh-ahead**: a read through [`CacheManager::get_or_load`] of an entry in the last
//!   `refresh_ahead` fraction of its life reloads it in the background, one reload per key.
//! - **Single flight**: concurrent misses of one key in this process run the loader once;
//!   the others get its value.
//! - **Breaker**: every backend operation has a timeout and goes through a circuit breaker.
//!   When the backend (Redis) fails, the breaker opens and the cache becomes a pass-through:
//!   reads miss, writes are skipped, loaders go to the source of truth, and nobody waits on a
//!   dead Redis. It closes by itself once a probe succeeds. Invalidations that could not reach
//!   the backend are replayed when it is back, so no stale entry outlives an outage.
//!
//! Tags and dependencies are sets in the backend (Redis sets, or in-process ones), so they
//! hold across replicas sharing a Redis. Read counts for the adaptive TTL are per process.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use phantom_layers::{
    circuit_breaker::{Breaker, BreakerSnapshot},
    classify::Verdict,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::CacheConfig;
use super::{Cache, CacheError, CompressedCache};

/// How one entry is stored.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Its time to live before adaptation; `None`: the configured default.
    pub ttl: Option<Duration>,
    /// Tags it can be invalidated by.
    pub tags: Vec<String>,
    /// Keys whose invalidation invalidates it too.
    pub depends_on: Vec<String>,
}

impl Entry {
    /// An entry with the default TTL, no tags and no dependencies.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// With this tag too.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Invalidated with `key` too.
    #[must_use]
    pub fn depends_on(mut self, key: impl Into<String>) -> Self {
        self.depends_on.push(key.into());
        self
    }
}

/// What a cache has done, for `/health/metrics` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheSnapshot {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that did not (including reads skipped while the breaker was open).
    pub misses: u64,
    /// `hits / (hits + misses)`.
    pub hit_rate: f64,
    /// Values written.
    pub sets: u64,
    /// Entries the backend dropped to make room.
    pub evictions: u64,
    /// Entries removed by invalidation (keys, tags and their dependents).
    pub invalidations: u64,
    /// Loader runs (misses and refreshes that went to the source).
    pub loads: u64,
    /// Mean loader time, in seconds.
    pub load_seconds_mean: f64,
    /// Total loader time, in seconds.
    pub load_seconds_total: f64,
    /// Misses served by another caller's load of the same key (stampedes avoided).
    pub coalesced: u64,
    /// Background refreshes started (refresh-ahead).
    pub refreshes: u64,
    /// TTL extensions of often-read entries.
    pub ttl_extensions: u64,
    /// Operations that failed or timed out on the backend.
    pub errors: u64,
    /// Operations skipped because the breaker was open (the cache passed through).
    pub bypassed: u64,
    /// Bytes handed to the cache.
    pub bytes_in: u64,
    /// Bytes it stored after compression.
    pub bytes_stored: u64,
    /// What compression saved.
    pub bytes_saved: u64,
    /// Stored values that could not be decoded (read as misses).
    pub corrupt: u64,
    /// The backend's breaker.
    pub breaker: BreakerSnapshot,
}

#[derive(Debug, Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    invalidations: AtomicU64,
    loads: AtomicU64,
    load_micros: AtomicU64,
    coalesced: AtomicU64,
    refreshes: AtomicU64,
    ttl_extensions: AtomicU64,
    errors: AtomicU64,
    bypassed: AtomicU64,
}

/// What this process knows of a key, for the adaptive TTL and refresh-ahead.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// TTL asked for when it was stored.
    base: Duration,
    /// The lifetime it was given (adapted).
    ttl: Duration,
    /// Reads since it was stored (halved at each store, so history fades).
    reads: u32,
}

/// A load in progress; the value it produced, for the callers that waited on it.
type Flight = Arc<tokio::sync::Mutex<Option<Vec<u8>>>>;

/// Most invalidations kept for replay while the backend is unreachable.
const MAX_PENDING_INVALIDATIONS: usize = 10_000;

#[derive(Debug)]
struct Inner {
    store: CompressedCache,
    breaker: Breaker,
    timeout: Duration,
    default_ttl: Duration,
    adaptive: bool,
    min_ttl: Duration,
    max_ttl: Duration,
    refresh_ahead: f64,
    max_meta: usize,
    meta: Mutex<HashMap<String, Meta>>,
    flights: Mutex<HashMap<String, Flight>>,
    refreshing: Mutex<HashSet<String>>,
    pending_invalidations: Mutex<Vec<String>>,
    stats: Stats,
    /// Its user's name, labelling its metrics.
    name: String,
}

/// The cache services use. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct CacheManager {
    inner: Arc<Inner>,
}

fn tag_set(tag: &str) -> String {
    format!("~tag:{tag}")
}

fn dependents_set(key: &str) -> String {
    format!("~dep:{key}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CacheManager {
    /// A manager over `store`, with the policies of `config`. `name` names its breaker
    /// (`<user>->cache`) in the metrics.
    pub fn new(name: &str, store: CompressedCache, config: &CacheConfig) -> Self {
        let breaker = Breaker::new(format!("{name}->cache"), config.circuit_breaker.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                breaker,
                timeout: config.timeout,
                default_ttl: config.default_ttl,
                adaptive: config.adaptive_ttl,
                min_ttl: config.min_ttl,
                max_ttl: config.max_ttl.max(config.min_ttl),
                refresh_ahead: config.refresh_ahead.clamp(0.0, 0.9),
                max_meta: config.max_entries.max(1),
                meta: Mutex::default(),
                flights: Mutex::default(),
                refreshing: Mutex::default(),
                pending_invalidations: Mutex::default(),
                stats: Stats::default(),
                name: name.to_owned(),
            }),
        }
    }

    /// The backend, below the manager's policies (for tests that inspect what is stored).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn inner_store(&self) -> &CompressedCache {
        &self.inner.store
    }

    /// Which backend this is ("memory" or "redis").
    pub fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    /// Checks the backend answers (bypassing the breaker: this is what health checks ask).
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.inner.store.ping().await
    }

    /// Runs one backend operation through the breaker, with the timeout. `None` when it
    /// failed, timed out or was skipped because the breaker is open: callers treat that as
    /// a miss (reads) or as done (writes), since the cache is only an optimisation.
    async fn guarded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, CacheError>>,
    ) -> Option<T> {
        let s = &self.inner.stats;
        let Ok(permit) = self.inner.breaker.try_acquire() else {
            s.bypassed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let outcome = tokio::time::timeout(self.inner.timeout, call).await;
        let failure = !matches!(outcome, Ok(Ok(_)));
        permit.record(Verdict {
            failure,
            retryable: false,
        });
        match outcome {
            Ok(Ok(v)) => Some(v),
            Ok(Err(err)) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(op, error = %err, "Cache operation failed; passing through");
                None
            }
            Err(_) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(op, timeout = ?self.inner.timeout, "Cache operation timed out; passing through");
                None
            }
        }
    }

    /// The TTL an entry stored with `base` gets, given how often it was read.
    fn adapted(&self, base: Duration, reads: u32) -> Duration {
        if !self.inner.adaptive {
            return base;
        }
        let factor = if reads == 0 {
            0.5
        } else {
            1.0 + f64::from(reads).log2()
        };
        base.mul_f64(factor)
            .clamp(self.inner.min_ttl, self.inner.max_ttl)
    }

    /// The value under `key`, if cached.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_with_ttl(key).await.map(|(v, _)| v)
    }

    #[tracing::instrument(name = "cache", skip_all, fields(otel.name = "cache get", otel.kind = "client", cache.backend = self.backend(), cache.operation = "get"))]
    async fn get_with_ttl(&self, key: &str) -> Option<(Vec<u8>, Duration)> {
        self.replay_invalidations().await;
        let s = &self.inner.stats;
        let found = self
            .guarded("get", self.inner.store.get_with_ttl(key))
            .await
            .flatten();
        let Some((value, left)) = found else {
            s.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        s.hits.fetch_add(1, Ordering::Relaxed);
        self.count_read(key).await;
        Some((value, left))
    }

    /// Counts a read of `key`; at each doubling of its reads, lengthens its life.
    async fn count_read(&self, key: &str) {
        let extend = {
            let mut meta = lock(&self.inner.meta);
            let Some(m) = meta.get_mut(key) else {
                return;
            };
            m.reads = m.reads.saturating_add(1);
            let ttl = self.adapted(m.base, m.reads);
            if m.reads.is_power_of_two() && ttl > m.ttl {
                m.ttl = ttl;
                Some(ttl)
            } else {
                None
            }
        };
        if let Some(ttl) = extend
            && self
                .guarded("expire", self.inner.store.expire(key, ttl))
                .await
                == Some(true)
        {
            self.inner
                .stats
                .ttl_extensions
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores `value` under `key` as `entry` says.
    #[tracing::instrument(name = "cache", skip_all, fields(otel.name = "cache set", otel.kind = "client", cache.backend = self.backend(), cache.operation = "set"))]
    pub async fn set(&self, key: &str, value: &[u8], entry: &Entry) {
        self.replay_invalidations().await;
        let base = entry.ttl.unwrap_or(self.inner.default_ttl);
        let ttl = {
            let mut meta = lock(&self.inner.meta);
            if meta.len() >= self.inner.max_meta && !meta.contains_key(key) {
                // Bounded: forgetting read counts only makes TTLs less adapted for a while.
                meta.clear();
            }
            let m = meta.entry(key.to_owned()).or_insert(Meta {
                base,
                ttl: base,
                reads: 1,
            });
            let ttl = self.adapted(base, m.reads);
            *m = Meta {
                base,
                ttl,
                reads: m.reads / 2,
            };
            ttl
        };
        let store = &self.inner.store;
        if self
            .guarded("set", store.set(key, value, ttl))
            .await
            .is_none()
        {
            return;
        }
        self.inner.stats.sets.fetch_add(1, Ordering::Relaxed);
        // Index sets outlive any member, so an invalidation always finds what it must remove.
        let members = [key.to_owned()];
        for tag in &entry.tags {
            self.guarded(
                "tag",
                store.set_add(&tag_set(tag), &members, self.inner.max_ttl),
            )
            .await;
        }
        for parent in &entry.depends_on {
            self.guarded(
                "depend",
                store.set_add(&dependents_set(parent), &members, self.inner.max_ttl),
            )
            .await;
        }
    }

    /// Stores `value` as JSON.
    pub async fn set_json<T: Serialize>(&self, key: &str, value: &T, entry: &Entry) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.set(key, &bytes, entry).await,
            Err(err) => {
                tracing::warn!(key, error = %err, "Value not cached: it does not serialize")
            }
        }
    }

    /// Removes `key` and, transitively, every entry depending on it. Returns how many
    /// entries were removed.
    pub async fn invalidate(&self, key: &str) -> u64 {
        self.invalidate_all(vec![key.to_owned()]).await
    }

    /// Removes every entry tagged `tag`, and their dependents. Returns how many.
    #[tracing::instrument(name = "cache", skip_all, fields(otel.name = "cache invalidate_tag", otel.kind = "client", cache.backend = self.backend(), cache.operation = "invalidate_tag"))]
    pub async fn invalidate_tag(&self, tag: &str) -> u64 {
        let set = tag_set(tag);
        let Some(members) = self
            .guarded("tag members", self.inner.store.set_members(&set))
            .await
        else {
            self.remember_invalidation(set);
            return 0;
        };
        let removed = self.invalidate_all(members).await;
        self.guarded("delete", self.inner.store.delete(&set)).await;
        removed
    }

    async fn invalidate_all(&self, roots: Vec<String>) -> u64 {
        let mut seen: HashSet<String> = HashSet::new();
        let mut frontier = roots;
        let mut removed = 0;
        while !frontier.is_empty() {
            frontier.retain(|k| seen.insert(k.clone()));
            if frontier.is_empty() {
                break;
            }
            let mut doomed = frontier.clone();
            let mut next = Vec::new();
            for key in &frontier {
                let set = dependents_set(key);
                match self
                    .guarded("dependents", self.inner.store.set_members(&set))
                    .await
                {
                    Some(children) => next.extend(children),
                    None => self.remember_invalidation(key.clone()),
                }
                doomed.push(set);
            }
            if self
                .guarded("delete", self.inner.store.delete_many(&doomed))
                .await
                .is_none()
            {
                for key in &frontier {
                    self.remember_invalidation(key.clone());
                }
            }
            {
                let mut meta = lock(&self.inner.meta);
                for key in &frontier {
                    meta.remove(key);
                }
            }
            removed += frontier.len() as u64;
            frontier = next;
        }
        self.inner
            .stats
            .invalidations
            .fetch_add(removed, Ordering::Relaxed);
        removed
    }

    fn remember_invalidation(&self, key: String) {
        let mut pending = lock(&self.inner.pending_invalidations);
        if pending.len() < MAX_PENDING_INVALIDATIONS {
            pending.push(key);
        } else {
            tracing::error!(
                "Too many invalidations pending while the cache is unreachable; entries may be stale until they expire"
            );
        }
    }

    /// Replays invalidations that could not reach the backend, once it may be reachable
    /// again (the breaker is not open), before anything is read from it or written to it.
    async fn replay_invalidations(&self) {
        if lock(&self.inner.pending_invalidations).is_empty()
            || self.inner.breaker.state() == phantom_layers::circuit_breaker::State::Open
        {
            return;
        }
        let pending = std::mem::take(&mut *lock(&self.inner.pending_invalidations));
        if pending.is_empty() {
            return;
        }
        tracing::info!(
            count = pending.len(),
            "Cache reachable again; replaying invalidations"
        );
        let (tags, keys): (Vec<String>, Vec<String>) =
            pending.into_iter().partition(|k| k.starts_with("~tag:"));
        for set in tags {
            Box::pin(self.invalidate_tag(&set["~tag:".len()..])).await;
        }
        self.invalidate_all(keys).await;
    }

    /// The value of `key`: from the cache, or from `load` (then cached as `entry` says).
    ///
    /// Concurrent misses of one key in this process run `load` once. A hit in the last
    /// `refresh_ahead` fraction of the entry's life reloads it in the background. Errors of
    /// `load` are returned to the caller and nothing is cached.
    #[tracing::instrument(name = "cache", skip_all, fields(otel.name = "cache get_or_load", cache.backend = self.backend(), cache.operation = "get_or_load"))]
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, entry: &Entry, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if let Some((bytes, left)) = self.get_with_ttl(key).await
            && let Ok(value) = serde_json::from_slice::<T>(&bytes)
        {
            self.maybe_refresh(key, left, entry, load);
            return Ok(value);
        }
        let flight: Flight = lock(&self.inner.flights)
            .entry(key.to_owned())
            .or_default()
            .clone();
        let mut slot = flight.lock().await;
        if let Some(bytes) = slot.as_ref()
            && let Ok(value) = serde_json::from_slice::<T>(bytes)
        {
            self.inner.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        let result = self.load_and_store(key, entry, &load).await;
        if let Ok((_, bytes)) = &result {
            *slot = Some(bytes.clone());
        }
        drop(slot);
        {
            let mut flights = lock(&self.inner.flights);
            if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(key);
            }
        }
        result.map(|(value, _)| value)
    }

    async fn load_and_store<T, E, F, Fut>(
        &self,
        key: &str,
        entry: &Entry,
        load: &F,
    ) -> Result<(T, Vec<u8>), E>
    where
        T: Serialize,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let result = load().await;
        let s = &self.inner.stats;
        s.loads.fetch_add(1, Ordering::Relaxed);
        s.load_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let value = result?;
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        if !bytes.is_empty() {
            self.set(key, &bytes, entry).await;
        }
        Ok((value, bytes))
    }

    fn maybe_refresh<T, E, F, Fut>(&self, key: &str, left: Duration, entry: &Entry, load: F)
    where
        T: Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        if self.inner.refresh_ahead <= 0.0 {
            return;
        }
        let lifetime = lock(&self.inner.meta)
            .get(key)
            .map_or(entry.ttl.unwrap_or(self.inner.default_ttl), |m| m.ttl);
        if left > lifetime.mul_f64(self.inner.refresh_ahead) {
            return;
        }
        if !lock(&self.inner.refreshing).insert(key.to_owned()) {
            return; // One refresh at a time per key.
        }
        self.inner.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        let (this, key, entry) = (self.clone(), key.to_owned(), entry.clone());
        tokio::spawn(async move {
            if let Err(err) = this.load_and_store(&key, &entry, &load).await {
                tracing::debug!(key, error = %err, "Refresh-ahead failed; the entry expires as planned");
            }
            lock(&this.inner.refreshing).remove(&key);
        });
    }

    /// The breaker that bypasses the backend while it fails.
    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// What the cache has done.
    pub fn snapshot(&self) -> CacheSnapshot {
        let s = &self.inner.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (hits, misses, loads) = (load(&s.hits), load(&s.misses), load(&s.loads));
        let compression = self.inner.store.stats();
        let load_seconds_total = load(&s.load_micros) as f64 / 1e6;
        CacheSnapshot {
            backend: self.backend(),
            hits,
            misses,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            sets: load(&s.sets),
            evictions: self.inner.store.evictions(),
            invalidations: load(&s.invalidations),
            loads,
            load_seconds_mean: if loads == 0 {
                0.0
            } else {
                load_seconds_total / loads as f64
            },
            load_seconds_total,
            coalesced: load(&s.coalesced),
            refreshes: load(&s.refreshes),
            ttl_extensions: load(&s.ttl_extensions),
            errors: load(&s.errors),
            bypassed: load(&s.bypassed),
            bytes_in: compression.bytes_in,
            bytes_stored: compression.bytes_stored,
            bytes_saved: compression
                .bytes_in
                .saturating_sub(compression.bytes_stored),
            corrupt: compression.corrupt,
            breaker: self.inner.breaker.snapshot(),
        }
    }
}

/// A cache reports itself under its user's name (`cache="vuln-analyzer"`).
impl phantom_layers::exposition::Source for CacheManager {
    fn describe(&self, out: &mut phantom_layers::exposition::Families) {
        self.snapshot().describe(&self.inner.name, out);
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.snapshot()).unwrap_or_default()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl CacheSnapshot {
    /// Adds this cache's samples to `out`, labelled `cache="name"`.
    pub fn describe(&self, name: &str, out: &mut phantom_layers::exposition::Families) {
        let l = [("cache", name), ("backend", self.backend)];
        let counters: [(&str, &str, f64); 10] = [
            (
                "phantom_cache_hits_total",
                "Cache reads that found a value.",
                self.hits as f64,
            ),
            (
                "phantom_cache_misses_total",
                "Cache reads that did not (including reads skipped while the cache's breaker was open).",
                self.misses as f64,
            ),
            (
                "phantom_cache_evictions_total",
                "Entries the backend dropped to make room.",
                self.evictions as f64,
            ),
            (
                "phantom_cache_invalidations_total",
                "Entries removed by key, tag or dependency invalidation.",
                self.invalidations as f64,
            ),
            (
                "phantom_cache_loads_total",
                "Loads from the source of truth on a miss or a refresh.",
                self.loads as f64,
            ),
            (
                "phantom_cache_load_seconds_total",
                "Time spent in those loads.",
                self.load_seconds_total,
            ),
            (
                "phantom_cache_coalesced_total",
                "Misses served by a concurrent load of the same key.",
                self.coalesced as f64,
            ),
            (
                "phantom_cache_refreshes_total",
                "Background refreshes of entries read near their expiry.",
                self.refreshes as f64,
            ),
            (
                "phantom_cache_errors_total",
                "Cache operations that failed or timed out.",
                self.errors as f64,
            ),
            (
                "phantom_cache_bypassed_total",
                "Cache operations skipped while its breaker was open.",
                self.bypassed as f64,
            ),
        ];
        for (metric, help, value) in counters {
            out.counter(metric, help, &l, value);
        }
        out.counter(
            "phantom_cache_bytes_saved_total",
            "Bytes compression saved.",
            &l,
            self.bytes_saved as f64,
        );
        out.gauge(
            "phantom_cache_hit_ratio",
            "Hits over reads since start.",
            &l,
            self.hit_rate,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;
    use phantom_layers::circuit_breaker::State;

    use super::*;
    use crate::cache::{Compression, MemoryCache, conformance};

    fn config() -> CacheConfig {
        CacheConfig {
            min_ttl: Duration::from_secs(1),
            ..CacheConfig::default()
        }
    }

    fn manager(name: &str, backend: Arc<dyn Cache>) -> CacheManager {
        CacheManager::new(
            name,
            CompressedCache::new(backend, Compression::Zstd, 64),
            &config(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_manager_over_the_memory_cache_conforms() {
        let m = manager("conformance-memory", Arc::new(MemoryCache::new(1000)));
        conformance::run_manager(&m).await;
    }

    /// A backend that can be "down": every call fails, or hangs, while it is.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryCache,
        down: AtomicBool,
        hang: AtomicBool,
        calls: AtomicU64,
    }

    impl Flaky {
        async fn gate(&self) -> Result<(), CacheError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(CacheError::Redis(fred::error::Error::new(
                    fred::error::ErrorKind::IO,
                    "connection refused",
                )));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Cache for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        async fn ping(&self) -> Result<(), CacheError> {
            self.gate().await
        }
        async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
            self.gate().await?;
            self.inner.get_with_ttl(key).await
        }
        async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
            self.gate().await?;
            self.inner.set(key, value, ttl).await
        }
        async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
            self.gate().await?;
            self.inner.expire(key, ttl).await
        }
        async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
            self.gate().await?;
            self.inner.delete_many(keys).await
        }
        async fn set_add(
            &self,
            set: &str,
            members: &[String],
            ttl: Duration,
        ) -> Result<(), CacheError> {
            self.gate().await?;
            self.inner.set_add(set, members, ttl).await
        }
        async fn set_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
            self.gate().await?;
            self.inner.set_members(set).await
        }
    }

    fn flaky() -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: MemoryCache::new(100),
            down: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }

    async fn load(m: &CacheManager, key: &str, loads: &Arc<AtomicU64>) -> u64 {
        let loads = loads.clone();
        m.get_or_load(key, &Entry::new(), move || {
            let loads = loads.clone();
            async move { Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .await
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_backend_turns_the_cache_into_a_pass_through_that_recovers_by_itself() {
        let backend = flaky();
        let m = manager("flaky-down", backend.clone());
        let loads = Arc::new(AtomicU64::new(0));
        assert_eq!(load(&m, "k", &loads).await, 1);
        assert_eq!(load(&m, "k", &loads).await, 1, "served from the cache");

        // Redis dies: every answer still comes, from the source.
        backend.down.store(true, Ordering::SeqCst);
        for _ in 0..10 {
            load(&m, "k", &loads).await;
        }
        assert_eq!(m.snapshot().breaker.state, State::Open);
        // While open, the backend is not even tried.
        let calls = backend.calls.load(Ordering::SeqCst);
        load(&m, "k", &loads).await;
        assert_eq!(backend.calls.load(Ordering::SeqCst), calls);
        assert!(m.snapshot().bypassed > 0);

        // An invalidation during the outage is replayed once the backend is back.
        m.invalidate("k").await;

        // Redis returns: after the open period a probe passes and the cache is used again.
        backend.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(config().circuit_breaker.open_duration).await;
        let before = loads.load(Ordering::SeqCst);
        let fresh = load(&m, "k", &loads).await;
        assert_eq!(fresh, before + 1, "the stale entry was invalidated");
        tokio::task::yield_now().await;
        assert_eq!(m.snapshot().breaker.state, State::Closed);
        assert_eq!(load(&m, "k", &loads).await, fresh, "cached again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_backend_costs_each_call_no_more_than_the_timeout() {
        let backend = flaky();
        let m = manager("flaky-hung", backend.clone());
        backend.hang.store(true, Ordering::SeqCst);
        let loads = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        assert_eq!(load(&m, "k", &loads).await, 1);
        // A read and a write, each bounded by the timeout.
        assert!(
            started.elapsed() <= config().timeout * 2,
            "{:?}",
            started.elapsed()
        );
        for _ in 0..5 {
            load(&m, "k", &loads).await;
        }
        assert_eq!(m.snapshot().breaker.state, State::Open);
        let started = Instant::now();
        load(&m, "k", &loads).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "open: no waiting at all");
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_ttl_stays_within_its_bounds() {
        let m = manager("bounds", Arc::new(MemoryCache::new(100)));
        let c = config();
        assert_eq!(
            m.adapted(Duration::from_secs(60), 0),
            Duration::from_secs(30)
        );
        assert_eq!(
            m.adapted(Duration::from_secs(60), 1),
            Duration::from_secs(60)
        );
        assert_eq!(
            m.adapted(Duration::from_secs(60), 4),
            Duration::from_secs(180)
        );
        assert_eq!(m.adapted(Duration::from_secs(600), u32::MAX), c.max_ttl);
        assert_eq!(m.adapted(Duration::from_millis(10), 0), c.min_ttl);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_runs_once_per_key_however_many_readers() {
        let m = manager("refresh-once", Arc::new(MemoryCache::new(100)));
        let loads = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let loader = {
            let (loads, gate) = (loads.clone(), gate.clone());
            move || {
                let (loads, gate) = (loads.clone(), gate.clone());
                async move {
                    if loads.fetch_add(1, Ordering::SeqCst) > 0 {
                        gate.notified().await;
                    }
                    Ok::<_, std::io::Error>(1u8)
                }
            }
        };
        let entry = Entry::new().ttl(Duration::from_secs(10));
        m.get_or_load("k", &entry, loader.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(9)).await;
        for _ in 0..20 {
            m.get_or_load("k", &entry, loader.clone()).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(m.snapshot().refreshes, 1);
        gate.notify_one();
    }
}
