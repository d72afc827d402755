//! Sliding windows of call outcomes, count-based or time-based, with O(1) updates.

use tokio::time::Instant;

use super::config::WindowConfig;

/// Totals of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// For time windows: the second this bucket counts.
    second: u64,
    totals: Totals,
}

/// A ring of buckets: one call per bucket (count window) or one second per bucket (time
/// window). Totals are kept incrementally, so recording never scans the ring.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    kind: WindowConfig,
    ring: Box<[Bucket]>,
    /// Count window: next slot. Time window: unused.
    next: usize,
    totals: Totals,
    epoch: Instant,
}

impl Window {
    pub(crate) fn new(kind: WindowConfig, now: Instant) -> Self {
        let len = match kind {
            WindowConfig::Count { size } => size.max(1) as usize,
            WindowConfig::Time { duration } => duration.as_secs().max(1) as usize,
        };
        Self {
            kind,
            ring: vec![Bucket::default(); len].into_boxed_slice(),
            next: 0,
            totals: Totals::default(),
            epoch: now,
        }
    }

    pub(crate) fn record(&mut self, failure: bool, slow: bool, now: Instant) {
        let add = Totals {
            calls: 1,
            failures: u32::from(failure),
            slow: u32::from(slow),
        };
        match self.kind {
            WindowConfig::Count { .. } => {
                let slot = &mut self.ring[self.next];
                sub(&mut self.totals, slot.totals);
                slot.totals = add;
                self.next = (self.next + 1) % self.ring.len();
            }
            WindowConfig::Time { .. } => {
                let second = self.second(now);
                self.evict(second);
                let len = self.ring.len() as u64;
                let slot = &mut self.ring[(second % len) as usize];
                slot.second = second;
                slot.totals.calls += 1;
                slot.totals.failures += add.failures;
                slot.totals.slow += add.slow;
            }
        }
        self.totals.calls += add.calls;
        self.totals.failures += add.failures;
        self.totals.slow += add.slow;
    }

    /// Totals of the calls still inside the window at `now`.
    pub(crate) fn totals(&mut self, now: Instant) -> Totals {
        if let WindowConfig::Time { .. } = self.kind {
            let second = self.second(now);
            self.evict(second);
        }
        self.totals
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Drops buckets older than the window (time windows).
    fn evict(&mut self, current: u64) {
        let len = self.ring.len() as u64;
        for bucket in self.ring.iter_mut() {
            if bucket.totals.calls > 0 && bucket.second + len <= current {
                sub(&mut self.totals, bucket.totals);
                bucket.totals = Totals::default();
            }
        }
    }
}

fn sub(t: &mut Totals, b: Totals) {
    t.calls -= b.calls;
    t.failures -= b.failures;
    t.slow -= b.slow;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_count_window_forgets_the_oldest_call() {
        let now = Instant::now();
        let mut w = Window::new(WindowConfig::Count { size: 3 }, now);
        w.record(true, false, now);
        w.record(false, true, now);
        w.record(false, false, now);
        assert_eq!(
            w.totals(now),
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false, now);
        assert_eq!(
            w.totals(now),
            Totals {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_evicts_calls_older_than_its_duration() {
        let start = Instant::now();
        let mut w = Window::new(
            WindowConfig::Time {
                duration: Duration::from_secs(10),
            },
            start,
        );
        w.record(true, false, start);
        tokio::time::advance(Duration::from_secs(5)).await;
        w.record(false, false, Instant::now());
        assert_eq!(w.totals(Instant::now()).calls, 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            w.totals(Instant::now()),
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.totals(Instant::now()), Totals::default());
    }
}
