//! Live fan-out: every subscriber has its own bounded queue, ordered by priority.
//!
//! A publish offers the notification to each subscriber of its room. While a subscriber
//! keeps up, it receives each room's notifications in sequence order. When it falls behind,
//! its queue fills: higher priorities are sent first (a CRITICAL overtakes queued LOWs), and
//! to make room the oldest LOW is dropped first, then the oldest NORMAL. HIGH and CRITICAL are
//! never dropped: a subscriber that cannot queue one is disconnected with
//! `RESOURCE_EXHAUSTED`, and resumes from its last sequence (the store has everything).
//!
//! Each subscriber also keeps a cursor per room (the sequences it has been given), so a
//! notification reaching it twice (the local publish and the Redis fan-out, or a replay and
//! the live feed) is delivered once, and a gap in the sequence (a fan-out message lost while
//! Redis was away) is filled from the store.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use phantom_proto::pb;
use phantom_runtime::storage::NotificationRecord;
use tokio::sync::Notify;

/// What a subscription asked for.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Whose notifications.
    pub tenant: String,
    /// Which rooms (sorted, distinct).
    pub rooms: Vec<String>,
    /// Lowest priority delivered.
    pub min_priority: i32,
    /// Types delivered (empty: all).
    pub types: Vec<String>,
    /// Lowest severity delivered, for notifications that carry one (findings).
    pub min_severity: i32,
}

impl Filter {
    /// Whether `n` is for this subscription.
    pub fn matches(&self, n: &NotificationRecord) -> bool {
        n.tenant == self.tenant
            && self.rooms.binary_search(&n.room).is_ok()
            && n.priority >= self.min_priority
            && (self.types.is_empty() || self.types.contains(&n.kind))
            && (n.severity == pb::Severity::Unspecified as i32 || n.severity >= self.min_severity)
    }
}

/// Index of a priority's queue: LOW 0 … CRITICAL 3 (UNSPECIFIED counts as NORMAL).
fn class(priority: i32) -> usize {
    match pb::Priority::try_from(priority).unwrap_or(pb::Priority::Normal) {
        pb::Priority::Low => 0,
        pb::Priority::Unspecified | pb::Priority::Normal => 1,
        pb::Priority::High => 2,
        pb::Priority::Critical => 3,
    }
}

/// The sequences of one room a subscriber has been given.
#[derive(Debug, Clone, Default)]
struct Cursor {
    /// Every sequence up to this one.
    contiguous: u64,
    /// And these above it.
    above: BTreeSet<u64>,
}

impl Cursor {
    fn seen(&self, seq: u64) -> bool {
        seq <= self.contiguous || self.above.contains(&seq)
    }

    fn mark(&mut self, seq: u64) {
        if seq == self.contiguous + 1 {
            self.contiguous = seq;
            while self.above.remove(&(self.contiguous + 1)) {
                self.contiguous += 1;
            }
        } else if seq > self.contiguous {
            self.above.insert(seq);
        }
    }
}

/// What became of one offered notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for delivery.
    Queued,
    /// Already given to this subscriber.
    Duplicate,
    /// Not for this subscription's filters.
    Filtered,
    /// Dropped (LOW or NORMAL, the queue being full of more urgent ones).
    Dropped,
    /// A HIGH or CRITICAL could not be queued: the subscriber is to be disconnected.
    Overflow,
}

#[derive(Debug, Default)]
struct State {
    queues: [VecDeque<Arc<NotificationRecord>>; 4],
    len: usize,
    cursors: HashMap<String, Cursor>,
    /// Ranges `(room, after, before)` missing from the live feed, to fetch from the store.
    gaps: Vec<(String, u64, u64)>,
    dropped: [u64; 4],
    overflowed: bool,
    replaying: bool,
}

/// One subscriber's queue and cursors.
#[derive(Debug)]
pub struct Subscriber {
    /// Its subscription.
    pub filter: Filter,
    capacity: usize,
    state: Mutex<State>,
    /// Woken when something is queued, a gap found, or the queue overflowed.
    pub wake: Notify,
}

impl Subscriber {
    /// A subscriber resuming after `after` (per room; rooms absent start at the first live
    /// notification), replaying until [`Subscriber::replay_done`].
    pub fn new(filter: Filter, after: &HashMap<String, u64>, capacity: usize) -> Self {
        let cursors = after
            .iter()
            .map(|(room, &seq)| {
                (
                    room.clone(),
                    Cursor {
                        contiguous: seq,
                        above: BTreeSet::new(),
                    },
                )
            })
            .collect();
        Self {
            filter,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                cursors,
                replaying: true,
                ..State::default()
            }),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Offers a live (or gap-filling) notification.
    pub fn offer(&self, n: &Arc<NotificationRecord>) -> Offer {
        let mut s = self.state();
        if s.overflowed {
            return Offer::Dropped;
        }
        let replaying = s.replaying;
        let cursor = s.cursors.entry(n.room.clone()).or_insert_with(|| Cursor {
            contiguous: n.sequence.saturating_sub(1),
            above: BTreeSet::new(),
        });
        if cursor.seen(n.sequence) {
            return Offer::Duplicate;
        }
        let gap = (!replaying && n.sequence > cursor.contiguous + 1)
            .then(|| (n.room.clone(), cursor.contiguous, n.sequence));
        cursor.mark(n.sequence);
        if let Some(gap) = gap {
            s.gaps.push(gap);
            self.wake.notify_one();
        }
        if !self.filter.matches(n) {
            return Offer::Filtered;
        }
        let incoming = class(n.priority);
        if s.len >= self.capacity {
            // Make room by dropping the oldest of the least urgent droppable class.
            let victim = (0..=incoming.min(1)).find(|&c| !s.queues[c].is_empty());
            match victim {
                Some(c) => {
                    s.queues[c].pop_front();
                    s.dropped[c] += 1;
                    s.len -= 1;
                }
                None if incoming <= 1 => {
                    s.dropped[incoming] += 1;
                    return Offer::Dropped;
                }
                None => {
                    s.overflowed = true;
                    drop(s);
                    self.wake.notify_one();
                    return Offer::Overflow;
                }
            }
        }
        s.queues[incoming].push_back(n.clone());
        s.len += 1;
        drop(s);
        self.wake.notify_one();
        Offer::Queued
    }

    /// Claims a replayed notification: true (and marked given) unless it was given already.
    pub fn claim(&self, n: &NotificationRecord) -> bool {
        let mut s = self.state();
        let cursor = s.cursors.entry(n.room.clone()).or_default();
        if cursor.seen(n.sequence) {
            return false;
        }
        cursor.mark(n.sequence);
        true
    }

    /// The replay is over: from now on, a gap in the live feed is fetched from the store.
    pub fn replay_done(&self) {
        self.state().replaying = false;
    }

    /// The most urgent queued notification (oldest first within a priority).
    pub fn pop(&self) -> Option<Arc<NotificationRecord>> {
        let mut s = self.state();
        let c = (0..4).rev().find(|&c| !s.queues[c].is_empty())?;
        s.len -= 1;
        s.queues[c].pop_front()
    }

    /// Gaps found since the last call.
    pub fn take_gaps(&self) -> Vec<(String, u64, u64)> {
        std::mem::take(&mut self.state().gaps)
    }

    /// Whether a HIGH or CRITICAL could not be queued.
    pub fn overflowed(&self) -> bool {
        self.state().overflowed
    }

    /// Notifications dropped so far, LOW and NORMAL.
    pub fn dropped(&self) -> (u64, u64) {
        let s = self.state();
        (s.dropped[0], s.dropped[1])
    }
}

/// Totals across the subscribers of this process, in the metrics registry (`/metrics`).
#[derive(Debug)]
pub struct HubStats {
    /// Notifications fanned out (each counted once, whatever its subscribers).
    pub fanned_out: Arc<AtomicU64>,
    /// Offers queued.
    pub queued: Arc<AtomicU64>,
    /// LOW offers dropped.
    pub dropped_low: Arc<AtomicU64>,
    /// NORMAL offers dropped.
    pub dropped_normal: Arc<AtomicU64>,
    /// Subscribers disconnected because a HIGH or CRITICAL could not be queued.
    pub overflowed: Arc<AtomicU64>,
}

impl Default for HubStats {
    fn default() -> Self {
        let r = phantom_layers::registry::global();
        let dropped = |priority| {
            r.counter(
                "phantom_notifier_dropped_total",
                "Notifications dropped for slow subscribers, by priority.",
                &[("priority", priority)],
            )
        };
        Self {
            fanned_out: r.counter(
                "phantom_notifier_fanned_out_total",
                "Notifications offered to this replica's subscribers.",
                &[],
            ),
            queued: r.counter(
                "phantom_notifier_queued_total",
                "Notifications queued for a subscriber.",
                &[],
            ),
            dropped_low: dropped("low"),
            dropped_normal: dropped("normal"),
            overflowed: r.counter(
                "phantom_notifier_overflowed_total",
                "Subscribers disconnected because a HIGH or CRITICAL could not be queued.",
                &[],
            ),
        }
    }
}

type RoomKey = (String, String);

/// The subscribers of this process, by room.
#[derive(Debug, Default)]
pub struct Hub {
    rooms: Mutex<HashMap<RoomKey, HashMap<u64, Arc<Subscriber>>>>,
    next_id: AtomicU64,
    /// What the hub has done.
    pub stats: HubStats,
}

/// A subscriber's place in the hub; leaving it (drop) unregisters the subscriber.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
    keys: Vec<RoomKey>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut rooms = self.hub.lock();
        for key in &self.keys {
            if let Some(subs) = rooms.get_mut(key) {
                subs.remove(&self.id);
                if subs.is_empty() {
                    rooms.remove(key);
                }
            }
        }
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomKey, HashMap<u64, Arc<Subscriber>>>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `sub` to the rooms of its filter until the registration is dropped.
    pub fn register(self: &Arc<Self>, sub: &Arc<Subscriber>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let keys: Vec<RoomKey> = sub
            .filter
            .rooms
            .iter()
            .map(|r| (sub.filter.tenant.clone(), r.clone()))
            .collect();
        let mut rooms = self.lock();
        for key in &keys {
            rooms
                .entry(key.clone())
                .or_default()
                .insert(id, sub.clone());
        }
        Registration {
            hub: self.clone(),
            id,
            keys,
        }
    }

    /// Offers `n` to every subscriber of its room.
    pub fn fan_out(&self, n: &Arc<NotificationRecord>) {
        let subs: Vec<Arc<Subscriber>> = self
            .lock()
            .get(&(n.tenant.clone(), n.room.clone()))
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default();
        self.stats.fanned_out.fetch_add(1, Ordering::Relaxed);
        for sub in subs {
            let counter = match sub.offer(n) {
                Offer::Queued => &self.stats.queued,
                Offer::Dropped if class(n.priority) == 0 => &self.stats.dropped_low,
                Offer::Dropped => &self.stats.dropped_normal,
                Offer::Overflow => &self.stats.overflowed,
                Offer::Duplicate | Offer::Filtered => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            tenant: "t".into(),
            rooms: vec!["r".into()],
            min_priority: 0,
            types: vec![],
            min_severity: 0,
        }
    }

    fn note(seq: u64, priority: pb::Priority) -> Arc<NotificationRecord> {
        Arc::new(NotificationRecord {
            tenant: "t".into(),
            room: "r".into(),
            sequence: seq,
            id: seq.to_string(),
            priority: priority as i32,
            kind: "k".into(),
            payload: String::new(),
            created_at: 0,
            severity: 0,
        })
    }

    fn live(capacity: usize) -> Subscriber {
        let s = Subscriber::new(filter(), &HashMap::new(), capacity);
        s.replay_done();
        s
    }

    fn drain(s: &Subscriber) -> Vec<(u64, i32)> {
        std::iter::from_fn(|| s.pop())
            .map(|n| (n.sequence, n.priority))
            .collect()
    }

    #[test]
    fn a_critical_overtakes_a_backlog_of_low() {
        let s = live(100);
        for seq in 1..=50 {
            assert_eq!(s.offer(&note(seq, pb::Priority::Low)), Offer::Queued);
        }
        assert_eq!(s.offer(&note(51, pb::Priority::Critical)), Offer::Queued);
        let order = drain(&s);
        assert_eq!(order[0], (51, pb::Priority::Critical as i32));
        assert_eq!(order[1].0, 1, "then the LOWs, in sequence order");
        assert_eq!(order.len(), 51);
    }

    #[test]
    fn low_is_dropped_first_then_normal_and_high_never() {
        let s = live(4);
        s.offer(&note(1, pb::Priority::Low));
        s.offer(&note(2, pb::Priority::Normal));
        s.offer(&note(3, pb::Priority::High));
        s.offer(&note(4, pb::Priority::Low));
        // Full: a CRITICAL evicts the oldest LOW, then the next LOW, then the NORMAL.
        for seq in 5..=7 {
            assert_eq!(s.offer(&note(seq, pb::Priority::Critical)), Offer::Queued);
        }
        assert_eq!(s.dropped(), (2, 1));
        // A LOW or NORMAL arriving at a queue of HIGH/CRITICAL only is itself dropped.
        assert_eq!(s.offer(&note(8, pb::Priority::Low)), Offer::Dropped);
        assert_eq!(s.offer(&note(9, pb::Priority::Normal)), Offer::Dropped);
        assert_eq!(s.dropped(), (3, 2));
        assert!(!s.overflowed());
        // A HIGH that cannot be queued disconnects the subscriber instead of being lost.
        assert_eq!(s.offer(&note(10, pb::Priority::High)), Offer::Overflow);
        assert!(s.overflowed());
        let order = drain(&s);
        assert_eq!(
            order.iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![5, 6, 7, 3]
        );
    }

    #[test]
    fn duplicates_are_delivered_once_and_gaps_are_reported() {
        let s = live(100);
        assert_eq!(s.offer(&note(5, pb::Priority::Normal)), Offer::Queued);
        assert_eq!(s.offer(&note(5, pb::Priority::Normal)), Offer::Duplicate);
        assert!(
            s.take_gaps().is_empty(),
            "a live-only room starts where it joins"
        );
        assert_eq!(s.offer(&note(8, pb::Priority::Normal)), Offer::Queued);
        assert_eq!(s.take_gaps(), vec![("r".to_owned(), 5, 8)]);
        // The gap filled from the store; the fan-out copy arriving later is a duplicate.
        assert_eq!(s.offer(&note(6, pb::Priority::Normal)), Offer::Queued);
        assert_eq!(s.offer(&note(7, pb::Priority::Normal)), Offer::Queued);
        assert_eq!(s.offer(&note(7, pb::Priority::Normal)), Offer::Duplicate);
        assert!(s.take_gaps().is_empty());
        assert_eq!(
            drain(&s).iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![5, 8, 6, 7]
        );
    }

    #[test]
    fn replayed_notifications_are_not_delivered_again_live() {
        let after = HashMap::from([("r".to_owned(), 2)]);
        let s = Subscriber::new(filter(), &after, 100);
        // Live ones arriving during the replay are queued; no gap is reported meanwhile.
        assert_eq!(s.offer(&note(5, pb::Priority::Normal)), Offer::Queued);
        assert!(s.take_gaps().is_empty());
        assert!(s.claim(&note(3, pb::Priority::Normal)));
        assert!(s.claim(&note(4, pb::Priority::Normal)));
        assert!(
            !s.claim(&note(5, pb::Priority::Normal)),
            "already queued live"
        );
        assert!(
            !s.claim(&note(2, pb::Priority::Normal)),
            "before the resume point"
        );
        s.replay_done();
        assert_eq!(s.offer(&note(6, pb::Priority::Normal)), Offer::Queued);
        assert!(s.take_gaps().is_empty());
    }

    #[test]
    fn filters_apply_to_priority_type_and_severity() {
        let mut f = filter();
        f.min_priority = pb::Priority::High as i32;
        f.types = vec!["finding".into()];
        f.min_severity = pb::Severity::High as i32;
        let s = Subscriber::new(f, &HashMap::new(), 10);
        s.replay_done();
        let mut n = (*note(1, pb::Priority::High)).clone();
        n.kind = "finding".into();
        n.severity = pb::Severity::Medium as i32;
        assert_eq!(s.offer(&Arc::new(n.clone())), Offer::Filtered);
        n.sequence = 2;
        n.severity = pb::Severity::Critical as i32;
        assert_eq!(s.offer(&Arc::new(n.clone())), Offer::Queued);
        n.sequence = 3;
        n.priority = pb::Priority::Normal as i32;
        assert_eq!(s.offer(&Arc::new(n.clone())), Offer::Filtered);
        n.sequence = 4;
        n.priority = pb::Priority::Critical as i32;
        n.kind = "scan.progress".into();
        assert_eq!(s.offer(&Arc::new(n)), Offer::Filtered);
    }
}
