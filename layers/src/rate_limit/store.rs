//! A bounded keyed state store for `governor`'s GCRA: one theoretical arrival time (TAT) per
//! key, at most `max_keys` of them.
//!
//! `governor`'s own keyed stores grow with every key ever seen until `retain_recent` is
//! called; keys are callers here, and callers are not a closed set. When a new key finds the
//! store full, the eighth of the keys with the earliest TATs goes: those are the buckets
//! closest to full again (a bucket whose TAT has passed is indistinguishable from a new one),
//! so forgetting them gives their callers at most a little of a burst back. Evicting an eighth
//! at a time keeps the cost of eviction constant per insertion.

use std::{collections::HashMap, sync::Mutex};

use governor::{
    nanos::Nanos,
    state::{StateStore, keyed::ShrinkableKeyedStateStore},
};

/// GCRA state by key (a hash of caller and method), at most `max_keys` keys.
#[derive(Debug)]
pub(crate) struct BoundedStore {
    max_keys: usize,
    tats: Mutex<HashMap<u64, u64>>,
}

impl BoundedStore {
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            max_keys: max_keys.max(1),
            tats: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Drops the eighth (at least one) of the keys of `tats` with the earliest TATs.
fn evict(tats: &mut HashMap<u64, u64>, max_keys: usize) {
    let drop = (max_keys / 8).max(1).min(tats.len());
    if drop == 0 {
        return;
    }
    let mut order: Vec<u64> = tats.values().copied().collect();
    let (_, cutoff, _) = order.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut left = drop;
    tats.retain(|_, tat| {
        if left > 0 && *tat <= cutoff {
            left -= 1;
            false
        } else {
            true
        }
    });
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut tats = self.lock();
        let previous = tats.get(key).copied();
        let (outcome, tat) = f(previous.map(Nanos::from))?;
        if previous.is_none() && tats.len() >= self.max_keys {
            evict(&mut tats, self.max_keys);
        }
        tats.insert(*key, u64::from(tat));
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = u64::from(drop_below);
        self.lock().retain(|_, tat| *tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.lock().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(store: &BoundedStore, key: u64, tat: u64) {
        store
            .measure_and_replace(&key, |_| Ok::<_, ()>(((), Nanos::from(tat))))
            .unwrap();
    }

    #[test]
    fn a_full_store_forgets_the_buckets_closest_to_full_first() {
        let store = BoundedStore::new(16);
        for key in 0..16 {
            // Key k's bucket refills at k: key 0 is the closest to full.
            admit(&store, key, 1_000 + key);
        }
        admit(&store, 100, 5_000);
        assert_eq!(store.len(), 15, "two evicted (an eighth of 16), one added");
        let tats = store.lock();
        assert!(!tats.contains_key(&0) && !tats.contains_key(&1));
        assert!(tats.contains_key(&2) && tats.contains_key(&100));
    }

    #[test]
    fn many_more_keys_than_the_bound_never_grow_it() {
        let store = BoundedStore::new(1_000);
        for key in 0..100_000 {
            admit(&store, key, key);
        }
        assert!(store.len() <= 1_000);
    }
}
