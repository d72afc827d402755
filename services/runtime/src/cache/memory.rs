//! The in-process cache of embedded mode.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Cache, CacheError};

/// A bounded in-process cache. Expiry uses `tokio::time` so tests can pause the clock.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    max_entries: usize,
}

impl MemoryCache {
    /// A cache holding at most `max_entries` entries.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
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

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        match entries.get(key) {
            Some((value, expires)) if *expires > now => Ok(Some(value.clone())),
            Some(_) => {
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        if entries.len() >= self.max_entries && !entries.contains_key(key) {
            // Drop what has expired; if that frees nothing, evict the entry expiring first.
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.max_entries
                && let Some(victim) = entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&victim);
            }
        }
        entries.insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries
            .lock()
            .expect("cache lock poisoned")
            .remove(key);
        Ok(())
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
    async fn evicts_the_entry_expiring_first_when_full() {
        let cache = MemoryCache::new(2);
        cache.set("a", b"1", Duration::from_secs(10)).await.unwrap();
        cache.set("b", b"2", Duration::from_secs(20)).await.unwrap();
        cache.set("c", b"3", Duration::from_secs(30)).await.unwrap();
        assert_eq!(cache.get("a").await.unwrap(), None);
        assert_eq!(cache.get("b").await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(cache.get("c").await.unwrap(), Some(b"3".to_vec()));
    }
}
