//! Live fan-out: every subscriber has its own bounded queue, ordered by priority.
//!
//! A publish offers the notification to each subscriber of its room. While a subscriber
//! keeps up, it receives each room's notifications in sequence order. When it falls behind,
//! its queue fills (in count or in bytes, whichever comes first): higher priorities are sent first (a CRITICAL overtakes queued LOWs), and
//! to make room the oldest LOW is dropped first, then the oldest NORMAL. HIGH and CRITICAL are
//! never dropped: a subscriber that cannot queue one is disconnected with
//! `RESOURCE_EXHAUSTED`, and resumes from its last sequence (the store has everything).
//!
//! Each subscriber also keeps a cursor per room (the sequences it has been given), so a
//! notification reaching it twice (the local publish and the Redis fan-out, or a replay and
//! the live feed) is delivered once, and a gap in the sequence (a fan-out message lost while
//! Redis was away) is filled from the store. What the store no longer has (pruned) is settled
//! as soon as a read from the store passes it, so a cursor never waits for it, and gaps are
//! kept once per room: a subscriber's state is bounded by its rooms, not by its lifetime.
//!
//! Cursors are positions in one epoch of the log ([`crate::log`]): a notification offered
//! with another epoch is not compared with them (its sequence started again at 1). It ends
//! the subscriber instead, like an overflow: what was queued is still delivered, nothing
//! after it, and the stream ends with LOG_RESET.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use phantom_proto::pb;
use tokio::sync::Notify;

use phantom_domain::Tenant;

use crate::repository::NotificationRecord;

/// What a subscription asked for.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Whose notifications.
    pub tenant: Tenant,
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
pub(crate) fn class(priority: i32) -> usize {
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
            self.absorb();
        } else if seq > self.contiguous {
            self.above.insert(seq);
        }
    }

    /// Every sequence up to `upto` is settled: given, or gone for good.
    fn settle(&mut self, upto: u64) {
        if upto > self.contiguous {
            self.contiguous = upto;
            self.above = self.above.split_off(&(upto + 1));
            self.absorb();
        }
    }

    fn absorb(&mut self) {
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
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
    /// Of another epoch of the log than the subscriber's positions: the subscriber is to be
    /// told that the log was reset ([`Subscriber::reset`]), and given nothing more.
    Reset,
}

#[derive(Debug, Default)]
struct State {
    queues: [VecDeque<Arc<NotificationRecord>>; 4],
    len: usize,
    /// The [`NotificationRecord::footprint`]s of what is queued.
    bytes: usize,
    cursors: HashMap<String, Cursor>,
    /// Ranges `(room, after, before)` missing from the live feed, to fetch from the store; at
    /// most one per room (a later gap widens the pending one).
    gaps: Vec<(String, u64, u64)>,
    dropped: [u64; 4],
    overflowed: bool,
    /// The epoch of a notification offered in another epoch than the subscriber's.
    reset: Option<String>,
    replaying: bool,
}

impl State {
    /// Whether one more notification of `size` bytes fits after dropping `dropped` queued
    /// ones of `freed` bytes. An empty queue takes anything: a notification larger than the
    /// budget is still delivered.
    fn fits(&self, dropped: usize, freed: usize, size: usize, capacity: usize, max: usize) -> bool {
        let len = self.len - dropped;
        len < capacity && (len == 0 || self.bytes - freed + size <= max)
    }

    fn add_gap(&mut self, room: &str, after: u64, before: u64) {
        match self.gaps.iter_mut().find(|g| g.0 == room) {
            Some(g) => {
                g.1 = g.1.min(after);
                g.2 = g.2.max(before);
            }
            None => self.gaps.push((room.to_owned(), after, before)),
        }
    }
}

/// One subscriber's queue and cursors.
#[derive(Debug)]
pub struct Subscriber {
    /// Its subscription.
    pub filter: Filter,
    /// The log's epoch its cursors belong to.
    epoch: String,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
    /// Woken when something is queued, a gap found, or the queue overflowed.
    pub wake: Notify,
}

impl Subscriber {
    /// A subscriber resuming after `after` (per room; rooms absent start at the first live
    /// notification) in the log's `epoch`, replaying until [`Subscriber::replay_done`], whose
    /// queue holds at most `capacity` notifications and `max_bytes` of them (by
    /// [`NotificationRecord::footprint`]).
    pub fn new(
        filter: Filter,
        after: &HashMap<String, u64>,
        epoch: &str,
        capacity: usize,
        max_bytes: usize,
    ) -> Self {
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
            epoch: epoch.to_owned(),
            capacity: capacity.max(1),
            max_bytes,
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

    /// Offers a live notification, appended in the log's `epoch` (empty: unknown, not
    /// checked).
    pub fn offer(&self, n: &Arc<NotificationRecord>, epoch: &str) -> Offer {
        let mut s = self.state();
        if s.reset.is_some() {
            return Offer::Reset;
        }
        if s.overflowed {
            return Offer::Dropped;
        }
        if !epoch.is_empty() && epoch != self.epoch {
            // Checked before the cursor: the new epoch's sequences start again, and would
            // pass for duplicates (or fill the cursor with another life's positions).
            s.reset = Some(epoch.to_owned());
            // Filled from the store, they would be read from the new epoch.
            s.gaps.clear();
            drop(s);
            self.wake.notify_one();
            return Offer::Reset;
        }
        let replaying = s.replaying;
        let cursor = s.cursors.entry(n.room.clone()).or_insert_with(|| Cursor {
            contiguous: n.sequence.saturating_sub(1),
            above: BTreeSet::new(),
        });
        if cursor.seen(n.sequence) {
            return Offer::Duplicate;
        }
        let gap = (!replaying && n.sequence > cursor.contiguous + 1).then_some(cursor.contiguous);
        cursor.mark(n.sequence);
        if let Some(after) = gap {
            s.add_gap(&n.room, after, n.sequence);
            self.wake.notify_one();
        }
        if !self.filter.matches(n) {
            return Offer::Filtered;
        }
        let incoming = class(n.priority);
        let size = n.footprint();
        if !s.fits(0, 0, size, self.capacity, self.max_bytes) {
            // Make room by dropping the oldest of the least urgent droppable classes, if that
            // can make enough: never drop some only to refuse the newcomer anyway.
            let droppable = 0..=incoming.min(1);
            let (mut dropped, mut freed) = (0, 0);
            let room = droppable
                .clone()
                .flat_map(|c| s.queues[c].iter())
                .any(|victim| {
                    dropped += 1;
                    freed += victim.footprint();
                    s.fits(dropped, freed, size, self.capacity, self.max_bytes)
                });
            if !room {
                if incoming <= 1 {
                    s.dropped[incoming] += 1;
                    return Offer::Dropped;
                }
                s.overflowed = true;
                drop(s);
                self.wake.notify_one();
                return Offer::Overflow;
            }
            while !s.fits(0, 0, size, self.capacity, self.max_bytes) {
                let Some(c) = droppable.clone().find(|&c| !s.queues[c].is_empty()) else {
                    break;
                };
                if let Some(victim) = s.queues[c].pop_front() {
                    s.bytes -= victim.footprint();
                    s.len -= 1;
                    s.dropped[c] += 1;
                }
            }
        }
        s.queues[incoming].push_back(n.clone());
        s.len += 1;
        s.bytes += size;
        drop(s);
        self.wake.notify_one();
        Offer::Queued
    }

    /// Claims a notification read from the store: true (and marked given) unless it was
    /// given already. Reads from the store are in order, so the sequences below it that were
    /// not given are gone for good (pruned): they are settled, never waited for.
    pub fn claim(&self, n: &NotificationRecord) -> bool {
        let mut s = self.state();
        let cursor = s.cursors.entry(n.room.clone()).or_default();
        cursor.settle(n.sequence.saturating_sub(1));
        if cursor.seen(n.sequence) {
            return false;
        }
        cursor.mark(n.sequence);
        true
    }

    /// The store was read through `upto` in `room` (a gap filled): whatever of it was not
    /// given is gone for good.
    pub fn settle(&self, room: &str, upto: u64) {
        if let Some(cursor) = self.state().cursors.get_mut(room) {
            cursor.settle(upto);
        }
    }

    /// Whether every sequence of `room` before `before` is settled.
    pub fn covered(&self, room: &str, before: u64) -> bool {
        self.state()
            .cursors
            .get(room)
            .is_some_and(|c| c.contiguous + 1 >= before)
    }

    /// The replay is over: from now on, a gap in the live feed is fetched from the store.
    pub fn replay_done(&self) {
        self.state().replaying = false;
    }

    /// The most urgent queued notification (oldest first within a priority).
    pub fn pop(&self) -> Option<Arc<NotificationRecord>> {
        let mut s = self.state();
        let c = (0..4).rev().find(|&c| !s.queues[c].is_empty())?;
        let n = s.queues[c].pop_front()?;
        s.len -= 1;
        s.bytes -= n.footprint();
        Some(n)
    }

    /// Gaps found since the last call.
    pub fn take_gaps(&self) -> Vec<(String, u64, u64)> {
        std::mem::take(&mut self.state().gaps)
    }

    /// Whether a HIGH or CRITICAL could not be queued.
    pub fn overflowed(&self) -> bool {
        self.state().overflowed
    }

    /// The epoch the subscriber was subscribed in ([`Subscriber::new`]).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The epoch of the notification that showed the log was reset under this subscriber, if
    /// one did: it is to be told (LOG_RESET) once its queue is delivered.
    pub fn reset(&self) -> Option<String> {
        self.state().reset.clone()
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

impl HubStats {
    /// Counters registered in `r` (the notifier's registry).
    pub fn new(r: &phantom_layers::registry::Registry) -> Self {
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

type RoomKey = (Tenant, String);

/// The subscribers of this process, by room. `Hub::default()` counts in a registry no one
/// reports; a service builds it with [`Hub::new`].
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<RoomKey, HashMap<u64, Arc<Subscriber>>>>,
    next_id: AtomicU64,
    /// What the hub has done.
    pub stats: HubStats,
    /// The notifier's registry, where the hub's counters are (and the subscription limits').
    pub registry: phantom_layers::registry::Registry,
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

impl Default for Hub {
    fn default() -> Self {
        Self::new(&phantom_layers::registry::Registry::default())
    }
}

impl Hub {
    /// An empty hub whose counters are registered in `registry`.
    pub fn new(registry: &phantom_layers::registry::Registry) -> Self {
        Self {
            rooms: Mutex::default(),
            next_id: AtomicU64::default(),
            stats: HubStats::new(registry),
            registry: registry.clone(),
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

    /// Subscribers registered now.
    pub fn subscribers(&self) -> usize {
        let rooms = self.lock();
        let ids: std::collections::HashSet<u64> = rooms
            .values()
            .flat_map(|subs| subs.keys().copied())
            .collect();
        ids.len()
    }

    /// Rooms with at least one subscriber now.
    pub fn rooms(&self) -> usize {
        self.lock().len()
    }

    /// Bytes of notifications waiting in the subscribers' queues (by
    /// [`NotificationRecord::footprint`], counted from what is queued: a subscriber sharing a
    /// notification with another counts it too).
    pub fn buffered_bytes(&self) -> usize {
        let rooms = self.lock();
        let mut seen = std::collections::HashSet::new();
        rooms
            .values()
            .flat_map(|subs| subs.iter())
            .filter(|(id, _)| seen.insert(**id))
            .map(|(_, sub)| {
                sub.state()
                    .queues
                    .iter()
                    .flatten()
                    .map(|n| n.footprint())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Offers `n`, appended in the log's `epoch` (empty: unknown), to every subscriber of its
    /// room.
    pub fn fan_out(&self, n: &Arc<NotificationRecord>, epoch: &str) {
        let subs: Vec<Arc<Subscriber>> = self
            .lock()
            .get(&(n.tenant.clone(), n.room.clone()))
            .map(|subs| subs.values().cloned().collect())
            .unwrap_or_default();
        self.stats.fanned_out.fetch_add(1, Ordering::Relaxed);
        for sub in subs {
            let counter = match sub.offer(n, epoch) {
                Offer::Queued => &self.stats.queued,
                Offer::Dropped if class(n.priority) == 0 => &self.stats.dropped_low,
                Offer::Dropped => &self.stats.dropped_normal,
                Offer::Overflow => &self.stats.overflowed,
                Offer::Duplicate | Offer::Filtered | Offer::Reset => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log's epoch the test subscribers were subscribed in.
    const EPOCH: &str = "e1";

    fn filter() -> Filter {
        Filter {
            tenant: Tenant::parse("t").unwrap(),
            rooms: vec!["r".into()],
            min_priority: 0,
            types: vec![],
            min_severity: 0,
        }
    }

    fn note(seq: u64, priority: pb::Priority) -> Arc<NotificationRecord> {
        Arc::new(NotificationRecord {
            tenant: Tenant::parse("t").unwrap(),
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
        let s = Subscriber::new(filter(), &HashMap::new(), EPOCH, capacity, usize::MAX);
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
            assert_eq!(s.offer(&note(seq, pb::Priority::Low), EPOCH), Offer::Queued);
        }
        assert_eq!(
            s.offer(&note(51, pb::Priority::Critical), EPOCH),
            Offer::Queued
        );
        let order = drain(&s);
        assert_eq!(order[0], (51, pb::Priority::Critical as i32));
        assert_eq!(order[1].0, 1, "then the LOWs, in sequence order");
        assert_eq!(order.len(), 51);
    }

    #[test]
    fn low_is_dropped_first_then_normal_and_high_never() {
        let s = live(4);
        s.offer(&note(1, pb::Priority::Low), EPOCH);
        s.offer(&note(2, pb::Priority::Normal), EPOCH);
        s.offer(&note(3, pb::Priority::High), EPOCH);
        s.offer(&note(4, pb::Priority::Low), EPOCH);
        // Full: a CRITICAL evicts the oldest LOW, then the next LOW, then the NORMAL.
        for seq in 5..=7 {
            assert_eq!(
                s.offer(&note(seq, pb::Priority::Critical), EPOCH),
                Offer::Queued
            );
        }
        assert_eq!(s.dropped(), (2, 1));
        // A LOW or NORMAL arriving at a queue of HIGH/CRITICAL only is itself dropped.
        assert_eq!(s.offer(&note(8, pb::Priority::Low), EPOCH), Offer::Dropped);
        assert_eq!(
            s.offer(&note(9, pb::Priority::Normal), EPOCH),
            Offer::Dropped
        );
        assert_eq!(s.dropped(), (3, 2));
        assert!(!s.overflowed());
        // A HIGH that cannot be queued disconnects the subscriber instead of being lost.
        assert_eq!(
            s.offer(&note(10, pb::Priority::High), EPOCH),
            Offer::Overflow
        );
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
        assert_eq!(
            s.offer(&note(5, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert_eq!(
            s.offer(&note(5, pb::Priority::Normal), EPOCH),
            Offer::Duplicate
        );
        assert!(
            s.take_gaps().is_empty(),
            "a live-only room starts where it joins"
        );
        assert_eq!(
            s.offer(&note(8, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert_eq!(s.take_gaps(), vec![("r".to_owned(), 5, 8)]);
        // The gap filled from the store; the fan-out copy arriving later is a duplicate.
        assert_eq!(
            s.offer(&note(6, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert_eq!(
            s.offer(&note(7, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert_eq!(
            s.offer(&note(7, pb::Priority::Normal), EPOCH),
            Offer::Duplicate
        );
        assert!(s.take_gaps().is_empty());
        assert_eq!(
            drain(&s).iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![5, 8, 6, 7]
        );
    }

    #[test]
    fn a_notification_of_another_epoch_ends_the_subscriber_instead_of_passing_for_a_duplicate() {
        let s = live(100);
        for seq in 4..=6 {
            assert_eq!(
                s.offer(&note(seq, pb::Priority::Normal), EPOCH),
                Offer::Queued
            );
        }
        assert_eq!(s.reset(), None);
        // The log was reset: its sequences start again at 1, below the cursor.
        assert_eq!(
            s.offer(&note(1, pb::Priority::Normal), "e2"),
            Offer::Reset,
            "not dropped as a duplicate of the old epoch's 1"
        );
        assert_eq!(s.reset().as_deref(), Some("e2"));
        // Past the cursor, a new epoch's sequence is not taken for the old one's either, nor
        // seen as a gap to fill from the (new) store.
        assert_eq!(
            s.offer(&note(9, pb::Priority::Critical), "e2"),
            Offer::Reset
        );
        assert!(s.take_gaps().is_empty());
        // Once reset, nothing more is queued, whatever its epoch says.
        assert_eq!(s.offer(&note(7, pb::Priority::Normal), EPOCH), Offer::Reset);
        // What was queued before the reset is still delivered.
        assert_eq!(
            drain(&s).iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
    }

    #[test]
    fn a_notification_without_an_epoch_is_not_checked() {
        // From a replica that predates epochs: delivered by sequence, as before.
        let s = live(100);
        assert_eq!(s.offer(&note(3, pb::Priority::Normal), ""), Offer::Queued);
        assert_eq!(
            s.offer(&note(3, pb::Priority::Normal), EPOCH),
            Offer::Duplicate
        );
        assert_eq!(s.reset(), None);
    }

    #[test]
    fn the_hub_offers_the_epoch_to_every_subscriber_of_the_room() {
        let hub = Arc::new(Hub::default());
        let (a, b) = (Arc::new(live(10)), Arc::new(live(10)));
        let _ra = hub.register(&a);
        let _rb = hub.register(&b);
        hub.fan_out(&note(8, pb::Priority::Normal), EPOCH);
        hub.fan_out(&note(1, pb::Priority::Normal), "e2");
        for sub in [&a, &b] {
            assert_eq!(sub.reset().as_deref(), Some("e2"));
            assert_eq!(drain(sub).iter().map(|o| o.0).collect::<Vec<_>>(), vec![8]);
        }
    }

    #[test]
    fn replayed_notifications_are_not_delivered_again_live() {
        let after = HashMap::from([("r".to_owned(), 2)]);
        let s = Subscriber::new(filter(), &after, EPOCH, 100, usize::MAX);
        // Live ones arriving during the replay are queued; no gap is reported meanwhile.
        assert_eq!(
            s.offer(&note(5, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
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
        assert_eq!(
            s.offer(&note(6, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert!(s.take_gaps().is_empty());
    }

    #[test]
    fn a_replay_that_starts_below_retention_leaves_no_permanent_gap() {
        // Resuming after 2, but the store only has 50.. (the rest was pruned).
        let after = HashMap::from([("r".to_owned(), 2)]);
        let s = Subscriber::new(filter(), &after, EPOCH, 100, usize::MAX);
        assert!(s.claim(&note(50, pb::Priority::Normal)));
        assert!(s.claim(&note(51, pb::Priority::Normal)));
        s.replay_done();
        assert_eq!(
            s.offer(&note(52, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert!(
            s.take_gaps().is_empty(),
            "what the store no longer has is not a gap to fetch again and again"
        );
    }

    #[test]
    fn pending_gaps_are_kept_once_per_room() {
        let s = live(100);
        s.offer(&note(5, pb::Priority::Normal), EPOCH);
        for seq in 8..1000 {
            s.offer(&note(seq, pb::Priority::Normal), EPOCH);
        }
        assert_eq!(s.take_gaps(), vec![("r".to_owned(), 5, 999)]);
    }

    fn sized(seq: u64, priority: pb::Priority, bytes: usize) -> Arc<NotificationRecord> {
        let mut n = (*note(seq, priority)).clone();
        n.payload = "x".repeat(bytes);
        Arc::new(n)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_as_well_as_in_count() {
        let each = sized(1, pb::Priority::Low, 10_000).footprint();
        let s = Subscriber::new(filter(), &HashMap::new(), EPOCH, 1000, 3 * each);
        s.replay_done();
        for seq in 1..=3 {
            assert_eq!(
                s.offer(&sized(seq, pb::Priority::Low, 10_000), EPOCH),
                Offer::Queued
            );
        }
        // Full in bytes: a HIGH as large as two LOWs drops the two oldest.
        assert_eq!(
            s.offer(
                &sized(
                    4,
                    pb::Priority::High,
                    2 * each - note(0, pb::Priority::Low).footprint()
                ),
                EPOCH
            ),
            Offer::Queued
        );
        assert_eq!(s.dropped(), (2, 0));
        // A LOW larger than all the LOWs queued is refused without dropping any of them.
        assert_eq!(
            s.offer(&sized(5, pb::Priority::Low, 3 * each), EPOCH),
            Offer::Dropped
        );
        assert_eq!(s.dropped(), (3, 0));
        // A HIGH that cannot fit even without the LOWs ends the subscriber.
        assert_eq!(
            s.offer(&sized(6, pb::Priority::High, 2 * each), EPOCH),
            Offer::Overflow
        );
        assert_eq!(
            drain(&s).iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![4, 3]
        );
    }

    #[test]
    fn an_empty_queue_takes_a_notification_larger_than_its_budget() {
        let s = Subscriber::new(filter(), &HashMap::new(), EPOCH, 10, 100);
        s.replay_done();
        assert_eq!(
            s.offer(&sized(1, pb::Priority::Normal, 1000), EPOCH),
            Offer::Queued
        );
        assert_eq!(
            s.offer(&sized(2, pb::Priority::Normal, 1000), EPOCH),
            Offer::Queued
        );
        assert_eq!(s.dropped(), (0, 1), "the older one made room");
    }

    #[test]
    fn a_gap_the_store_no_longer_has_is_settled_once_read_through() {
        let s = live(100);
        s.offer(&note(5, pb::Priority::Normal), EPOCH);
        s.offer(&note(8, pb::Priority::Normal), EPOCH);
        assert_eq!(s.take_gaps(), vec![("r".to_owned(), 5, 8)]);
        assert!(!s.covered("r", 8));
        // The fill found nothing: 6 and 7 were pruned.
        s.settle("r", 7);
        assert!(s.covered("r", 8));
        assert_eq!(
            s.offer(&note(9, pb::Priority::Normal), EPOCH),
            Offer::Queued
        );
        assert!(s.take_gaps().is_empty());
    }

    #[test]
    fn filters_apply_to_priority_type_and_severity() {
        let mut f = filter();
        f.min_priority = pb::Priority::High as i32;
        f.types = vec!["finding".into()];
        f.min_severity = pb::Severity::High as i32;
        let s = Subscriber::new(f, &HashMap::new(), EPOCH, 10, usize::MAX);
        s.replay_done();
        let mut n = (*note(1, pb::Priority::High)).clone();
        n.kind = "finding".into();
        n.severity = pb::Severity::Medium as i32;
        assert_eq!(s.offer(&Arc::new(n.clone()), EPOCH), Offer::Filtered);
        n.sequence = 2;
        n.severity = pb::Severity::Critical as i32;
        assert_eq!(s.offer(&Arc::new(n.clone()), EPOCH), Offer::Queued);
        n.sequence = 3;
        n.priority = pb::Priority::Normal as i32;
        assert_eq!(s.offer(&Arc::new(n.clone()), EPOCH), Offer::Filtered);
        n.sequence = 4;
        n.priority = pb::Priority::Critical as i32;
        n.kind = "scan.progress".into();
        assert_eq!(s.offer(&Arc::new(n), EPOCH), Offer::Filtered);
    }
}
