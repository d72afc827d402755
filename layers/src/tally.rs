//! Counting what would otherwise be one log line per event: calls refused before any work
//! (shed, rate limited, unauthenticated). A flood of them must not become a flood of logs
//! (one INFO line per rejected call once wrote 4–6 MB/s), yet an operator must still see
//! that it happens, how much, and from where.
//!
//! A [`Tally`] counts events by key and, at most once per interval, hands the counts of the
//! interval that ended to a writer: one line per interval, whatever the rate. The counts are
//! written when the next event after the interval's end arrives, so a flood's last interval
//! shows up with the next event (or not at all if none follows). Keys are bounded: past
//! [`MAX_KEYS`], further keys are counted under `other`.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Distinct keys one interval keeps; the rest are counted together.
pub const MAX_KEYS: usize = 64;

/// The key events past [`MAX_KEYS`] are counted under.
pub const OTHER: &str = "other";

/// Events counted by key, written at most once per interval; see the [module docs](self).
#[derive(Debug)]
pub struct Tally {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    since: Instant,
    counts: BTreeMap<String, u64>,
}

impl Tally {
    /// A tally that writes at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                since: Instant::now(),
                counts: BTreeMap::new(),
            }),
        }
    }

    /// Counts one event under `key`; when the interval has ended, hands its counts (and how
    /// long it lasted) to `write`, outside the lock.
    pub fn count(&self, key: &str, write: impl FnOnce(Duration, BTreeMap<String, u64>)) {
        let flushed = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = if state.counts.contains_key(key) || state.counts.len() < MAX_KEYS {
                key
            } else {
                OTHER
            };
            *state.counts.entry(key.to_owned()).or_default() += 1;
            let elapsed = state.since.elapsed();
            if elapsed >= self.interval {
                state.since = Instant::now();
                Some((elapsed, std::mem::take(&mut state.counts)))
            } else {
                None
            }
        };
        if let Some((elapsed, counts)) = flushed {
            write(elapsed, counts);
        }
    }
}

impl Default for Tally {
    /// One line per 10 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

/// `counts` as `key=n` pairs, largest first: what a summary line carries.
pub fn render(counts: &BTreeMap<String, u64>) -> String {
    let mut pairs: Vec<_> = counts.iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    pairs
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_one_line_per_interval_with_its_counts() {
        let tally = Tally::new(Duration::from_secs(10));
        let mut lines = Vec::new();
        for i in 0..10_000 {
            let key = if i % 4 == 0 { "b" } else { "a" };
            tally.count(key, |_, counts| lines.push(render(&counts)));
            if i % 1000 == 999 {
                tokio::time::advance(Duration::from_secs(3)).await;
            }
        }
        // 30 s of events: two intervals ended, two lines, not ten thousand.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("a="), "{lines:?}");
        let total: u64 = lines
            .iter()
            .flat_map(|l| l.split(' '))
            .map(|p| p.split_once('=').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert!(total <= 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn made_up_keys_do_not_grow_it() {
        let tally = Tally::new(Duration::from_secs(10));
        for i in 0..1000 {
            tally.count(&format!("/made/up{i}"), |_, _| {});
        }
        let mut seen = BTreeMap::new();
        tokio::time::advance(Duration::from_secs(11)).await;
        tally.count("last", |_, counts| seen = counts);
        assert_eq!(seen.len(), MAX_KEYS + 1);
        assert_eq!(seen[OTHER], 1000 - MAX_KEYS as u64 + 1);
    }
}
