//! The in-process cache of embedded mode.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Cache, CacheError};

/// A bounded in-process cache. Expiry uses `tokio::time` so tests can pause the clock.
#[derive(Debug)]
pub struct MemoryCache {
    state: Mutex<State>,
    max_entries: usize,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, (Vec<u8>, Instant)>,
    sets: HashMap<String, (HashSet<String>, Instant)>,
}

impl MemoryCache {
    /// A cache holding at most `max_entries` entries (and as many sets).
    pub fn new(max_entries: usize) -> Self {
        Self {
            state: Mutex::default(),
            max_entries: max_entries.max(1),
            evictions: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes room for one more item in `map`: drops what has expired and, if that frees
    /// nothing, evicts the item expiring first. Returns how many were evicted.
    fn make_room<V>(map: &mut HashMap<String, (V, Instant)>, max: usize, now: Instant) -> u64 {
        if map.len() < max {
            return 0;
        }
        map.retain(|_, (_, expires)| *expires > now);
        if map.len() < max {
            return 0;
        }
        let victim = map
            .iter()
            .min_by_key(|(_, (_, expires))| *expires)
            .map(|(k, _)| k.clone());
        victim.map_or(0, |v| u64::from(map.remove(&v).is_some()))
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, CacheError> {
        let now = Instant::now();
        let mut state = self.state();
        match state.entries.get(key) {
            Some((value, expires)) if *expires > now => Ok(Some((value.clone(), *expires - now))),
            Some(_) => {
                state.entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut state = self.state();
        if !state.entries.contains_key(key) {
            let evicted = Self::make_room(&mut state.entries, self.max_entries, now);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        state
            .entries
            .insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        Ok(match self.state().entries.get_mut(key) {
            Some((_, expires)) if *expires > now => {
                *expires = now + ttl;
                true
            }
            _ => false,
        })
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        let mut state = self.state();
        for key in keys {
            state.entries.remove(key);
            state.sets.remove(key);
        }
        Ok(())
    }

    async fn set_add(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut state = self.state();
        let live = state.sets.get(set).is_some_and(|(_, e)| *e > now);
        if !live {
            state.sets.remove(set);
            let evicted = Self::make_room(&mut state.sets, self.max_entries, now);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        let (items, expires) = state
            .sets
            .entry(set.to_owned())
            .or_insert_with(|| (HashSet::new(), now));
        items.extend(members.iter().cloned());
        *expires = (*expires).max(now + ttl);
        Ok(())
    }

    async fn set_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        let now = Instant::now();
        Ok(match self.state().sets.get(set) {
            Some((items, expires)) if *expires > now => items.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_cache_conforms() {
        super::super::conformance::run_all(&MemoryCache::new(100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn evicts_the_entry_expiring_first_when_full_and_counts_it() {
        let cache = MemoryCache::new(2);
        cache.set("a", b"1", Duration::from_secs(10)).await.unwrap();
        cache.set("b", b"2", Duration::from_secs(20)).await.unwrap();
        cache.set("c", b"3", Duration::from_secs(30)).await.unwrap();
        assert_eq!(cache.get("a").await.unwrap(), None);
        assert_eq!(cache.get("b").await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(cache.get("c").await.unwrap(), Some(b"3".to_vec()));
        assert_eq!(cache.evictions(), 1);
        // Expired entries make room without counting as evictions.
        tokio::time::advance(Duration::from_secs(25)).await;
        cache.set("d", b"4", Duration::from_secs(30)).await.unwrap();
        assert_eq!(cache.evictions(), 1);
    }
}
