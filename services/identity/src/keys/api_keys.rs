//! [`ApiKeys`]: API keys as an [`Authenticate`], with the cache of verified keys.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use phantom_domain::time::now_micros;
use phantom_layers::auth::{Authenticate, Identity, Principal, Refusal};
use tokio::time::Instant;

use super::{KeyStore, format};
use crate::repository::KeyRecord;

/// Most keys [`ApiKeys`] keeps in memory.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// `last_used_at` is written at most this often per key.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The wall clock keys' expiry is checked against, in microseconds since the Unix epoch
/// (a value so tests can move it).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A record fetched from the store.
struct Cached {
    record: Arc<KeyRecord>,
    /// When it was fetched: trusted until `fetched + ttl`.
    fetched: Instant,
    /// When `last_used_at` was last written from this process.
    touched: Option<Instant>,
}

struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Cached>>,
}

impl Cache {
    fn fresh(&self, id: &str) -> Option<Arc<KeyRecord>> {
        let entries = self.entries.lock().expect("key cache lock");
        entries
            .get(id)
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.record.clone())
    }

    fn remember(&self, record: KeyRecord) -> Arc<KeyRecord> {
        let record = Arc::new(record);
        let mut entries = self.entries.lock().expect("key cache lock");
        let id = record.info.id.clone();
        let touched = entries.get(&id).and_then(|c| c.touched);
        if !entries.contains_key(&id) && entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, c| c.fetched.elapsed() < ttl);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            id,
            Cached {
                record: record.clone(),
                fetched: Instant::now(),
                touched,
            },
        );
        record
    }

    /// Whether `last_used_at` is due for `id`; if so, it is marked done now.
    fn due_for_touch(&self, id: &str) -> bool {
        let mut entries = self.entries.lock().expect("key cache lock");
        match entries.get_mut(id) {
            Some(c) if c.touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY) => {
                c.touched = Some(Instant::now());
                true
            }
            _ => false,
        }
    }
}

/// API keys as an [`Authenticate`]: see the [module docs](super). Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    store: KeyStore,
    cache: Arc<Cache>,
    clock: Clock,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("ttl", &self.cache.ttl)
            .field("capacity", &self.cache.capacity)
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Keys of `store`, trusted from memory for `ttl` (`auth.cache_ttl`), at most
    /// [`DEFAULT_CACHE_CAPACITY`] of them.
    pub fn new(store: KeyStore, ttl: Duration) -> Self {
        Self::with_capacity(store, ttl, DEFAULT_CACHE_CAPACITY)
    }

    /// Like [`ApiKeys::new`], keeping at most `capacity` keys in memory.
    pub fn with_capacity(store: KeyStore, ttl: Duration, capacity: usize) -> Self {
        Self {
            store,
            cache: Arc::new(Cache {
                ttl,
                capacity: capacity.max(1),
                entries: Mutex::new(HashMap::new()),
            }),
            clock: Arc::new(now_micros),
        }
    }

    /// The same, checking expiry against `clock` instead of the system's (for tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store the keys come from.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    async fn check(&self, id: String, secret: [u8; 32]) -> Result<Principal, Refusal> {
        let record = match self.cache.fresh(&id) {
            Some(r) => r,
            None => match self.store.find(&id).await {
                Ok(Some(r)) => self.cache.remember(r),
                Ok(None) => return Err(Refusal::Unknown),
                Err(e) => {
                    tracing::warn!(error = %e, "API key lookup failed");
                    return Err(Refusal::Unavailable("the key store is unreachable".into()));
                }
            },
        };
        // The secret first: a revoked key's state is told only to who holds the key.
        if !self.store.hasher().verify(&id, &secret, &record.hash) {
            return Err(Refusal::Unknown);
        }
        let now = (self.clock)();
        if record.info.is_dead_at(now) {
            return Err(Refusal::Revoked);
        }
        if self.cache.due_for_touch(&id) {
            let store = self.store.clone();
            let id = id.clone();
            // Off the request path: a slow database delays no call.
            tokio::spawn(async move {
                if let Err(e) = store.touch_last_used(&id, now).await {
                    tracing::debug!(key_id = %id, error = %e, "API key last_used_at not written");
                }
            });
        }
        Ok(Principal {
            identity: Identity::ApiKey { key_id: id },
            tenant: Some(record.info.tenant.clone()),
            scopes: record.info.scopes,
        })
    }
}

impl Authenticate for ApiKeys {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        let Some(presented) = format::parse(bearer) else {
            return Box::pin(std::future::ready(Err(Refusal::Unknown)));
        };
        let (id, secret) = (presented.id.to_owned(), presented.secret);
        let this = self.clone();
        Box::pin(async move { this.check(id, secret).await })
    }

    fn is_cheap(&self, bearer: &str) -> bool {
        format::parse(bearer)
            .and_then(|p| self.cache.fresh(p.id))
            .is_some_and(|r| !r.info.is_dead_at((self.clock)()))
    }
}
