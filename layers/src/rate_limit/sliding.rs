//! The sliding-window algorithm: the second rate-limiting algorithm, next to GCRA.
//!
//! A sliding-window *counter* (as Cloudflare describes it): per key, the counts of the current
//! and the previous fixed window; the previous one is weighted by how much of it still
//! overlaps the sliding window. O(1) memory per key, and unlike a fixed window it does not
//! let through twice the limit around a window boundary.
//!
//! At most `max_keys` keys are kept: a new key that finds the map full first makes it drop
//! the keys whose windows have both passed (they count nothing any more), then, if that was
//! not an eighth of them, the keys with the fewest calls counted.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Index of the current fixed window.
    index: u64,
    previous: u32,
    current: u32,
}

/// Keyed sliding-window counters: at most `limit` calls per `window` per key, at most
/// `max_keys` keys.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    limit: u32,
    window: Duration,
    epoch: Instant,
    max_keys: usize,
    counters: Mutex<HashMap<u64, Counter>>,
}

/// Makes room in `counters` (full at `max_keys`) in the window numbered `index`.
fn evict(counters: &mut HashMap<u64, Counter>, max_keys: usize, index: u64) {
    let target = max_keys - (max_keys / 8).max(1);
    // Nothing counted in this window or the previous one: forgetting it changes nothing.
    counters.retain(|_, c| c.index + 1 >= index);
    if counters.len() <= target {
        return;
    }
    let drop = counters.len() - target;
    let weight = |c: &Counter| {
        if c.index == index {
            u64::from(c.previous) + u64::from(c.current)
        } else {
            u64::from(c.current)
        }
    };
    let mut weights: Vec<u64> = counters.values().map(weight).collect();
    let (_, cutoff, _) = weights.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut left = drop;
    counters.retain(|_, c| {
        if left > 0 && weight(c) <= cutoff {
            left -= 1;
            false
        } else {
            true
        }
    });
}

impl SlidingWindow {
    pub(crate) fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit: limit.max(1),
            window: window.max(Duration::from_millis(1)),
            epoch: Instant::now(),
            max_keys: max_keys.max(1),
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one call for `key`, or says how long until one would be admitted.
    pub(crate) fn check(&self, key: u64) -> Result<(), Duration> {
        let w = self.window.as_secs_f64();
        let since = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_secs_f64();
        let index = (since / w) as u64;
        let elapsed = since - index as f64 * w; // into the current window
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counters.len() >= self.max_keys && !counters.contains_key(&key) {
            evict(&mut counters, self.max_keys, index);
        }
        let c = counters.entry(key).or_insert(Counter {
            index,
            previous: 0,
            current: 0,
        });
        if c.index != index {
            c.previous = if c.index + 1 == index { c.current } else { 0 };
            c.current = 0;
            c.index = index;
        }
        let limit = f64::from(self.limit);
        let (prev, cur) = (f64::from(c.previous), f64::from(c.current));
        let estimate = prev * (1.0 - elapsed / w) + cur;
        if estimate + 1.0 <= limit + 1e-9 {
            c.current += 1;
            return Ok(());
        }
        // When will the previous window's weight have decayed enough?
        let wait = if cur + 1.0 <= limit && prev > 0.0 {
            w * (1.0 - (limit - 1.0 - cur) / prev) - elapsed
        } else {
            // Not within this window: after it ends, this window's count decays in turn.
            (w - elapsed) + (w * (1.0 - (limit - 1.0) / cur.max(1.0))).max(0.0)
        };
        Err(Duration::from_secs_f64(wait.max(0.001)))
    }

    /// Keys tracked.
    pub(crate) fn len(&self) -> usize {
        self.counters.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_the_limit_per_window_and_no_double_burst_at_the_boundary() {
        let sw = SlidingWindow::new(10, Duration::from_secs(1), 16);
        tokio::time::advance(Duration::from_millis(900)).await;
        for _ in 0..10 {
            sw.check(1).unwrap();
        }
        let wait = sw.check(1).unwrap_err();
        // Just past the boundary, 90 % of the previous window still counts: still refused.
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(
            sw.check(1).is_err(),
            "a fixed window would admit 10 more here"
        );
        assert!(wait > Duration::from_millis(100));
        // Once the old calls have slid out, calls pass again.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..10 {
            sw.check(1).unwrap();
        }
        assert_eq!(sw.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_it_announces_is_enough() {
        let sw = SlidingWindow::new(5, Duration::from_secs(2), 16);
        for _ in 0..5 {
            sw.check(7).unwrap();
        }
        for _ in 0..20 {
            match sw.check(7) {
                Ok(()) => {}
                Err(wait) => {
                    tokio::time::advance(wait).await;
                    assert!(sw.check(7).is_ok(), "refused again after waiting {wait:?}");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keys_beyond_the_bound_evict_the_idlest_and_keep_the_busy_ones() {
        let sw = SlidingWindow::new(3, Duration::from_secs(1), 64);
        for _ in 0..3 {
            sw.check(0).unwrap();
        }
        for key in 1..10_000 {
            let _ = sw.check(key);
        }
        assert!(sw.len() <= 64, "{} keys", sw.len());
        assert!(sw.check(0).is_err(), "the busiest caller is still limited");
    }
}
