//! The writer against a real SQLite log (and the in-memory one where only the queues matter):
//! the order in which publishes reach the store, what is acknowledged, and the bound.
//!
//! Order is asserted on what the store gave (sequences, batches), never on timing: a gate in
//! front of the log holds the writer on a batch while the test lines publishes up behind it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_layers::Error;
use phantom_proto::pb::{self, notifier_server::Notifier};
use phantom_storage::Database;
use tokio::{sync::Semaphore, task::JoinHandle};
use tonic::Code;
use tonic_types::StatusExt;

use super::*;
use crate::{
    hub::Hub,
    log::{NotificationLog, Page, StoreLog, Stored},
    repository::{NewNotification, NotificationRecord, SqlNotificationRepository},
    settings::WriteConfig,
};

/// A log whose batches wait for a permit each (none at first), and which records the
/// priorities of each batch it was asked to commit, in order.
#[derive(Debug)]
struct Gated {
    inner: Arc<dyn NotificationLog>,
    gate: Semaphore,
    /// Batches that reached the gate.
    entered: AtomicUsize,
    /// The priorities of each batch, in the order the writer passed them.
    batches: Mutex<Vec<Vec<i32>>>,
}

impl Gated {
    fn new(inner: Arc<dyn NotificationLog>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: Semaphore::new(0),
            entered: AtomicUsize::new(0),
            batches: Mutex::default(),
        })
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    fn batches(&self) -> Vec<Vec<i32>> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait]
impl NotificationLog for Gated {
    fn backend(&self) -> &'static str {
        "gated"
    }

    async fn append_batch(&self, batch: &[NewNotification]) -> Result<Vec<(Stored, bool)>, Error> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.gate
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        self.batches
            .lock()
            .unwrap()
            .push(batch.iter().map(|n| n.record.priority).collect());
        self.inner.append_batch(batch).await
    }

    async fn after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        page: Page,
    ) -> Result<Vec<NotificationRecord>, Error> {
        self.inner.after(tenant, room, after, page).await
    }

    async fn prune(&self, older_than: i64, keep_per_room: u64) -> Result<u64, Error> {
        self.inner.prune(older_than, keep_per_room).await
    }

    async fn latest(&self, tenant: &Tenant, room: &str) -> Result<u64, Error> {
        self.inner.latest(tenant, room).await
    }

    async fn epoch(&self) -> Result<String, Error> {
        self.inner.epoch().await
    }
}

const LOW: i32 = pb::Priority::Low as i32;
const NORMAL: i32 = pb::Priority::Normal as i32;
const HIGH: i32 = pb::Priority::High as i32;
const CRITICAL: i32 = pb::Priority::Critical as i32;

fn tenant() -> Tenant {
    Tenant::parse("t").unwrap()
}

fn record(room: &str, priority: i32, payload: &str) -> NotificationRecord {
    NotificationRecord {
        tenant: tenant(),
        room: room.to_owned(),
        sequence: 0,
        id: uuid::Uuid::now_v7().to_string(),
        priority,
        kind: "note".into(),
        payload: payload.to_owned(),
        created_at: phantom_kit::time::now_micros(),
        severity: 0,
    }
}

fn entry(room: &str, priority: i32, payload: &str) -> NewNotification {
    NewNotification {
        record: record(room, priority, payload),
        key: None,
    }
}

/// A new SQLite database in `dir`, migrated.
async fn sqlite(dir: &tempfile::TempDir) -> Database {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("n.db").display());
    let db = Database::open_url(&url, 5, Duration::from_secs(5))
        .await
        .unwrap();
    db.migrate(crate::repository::migrator()).await.unwrap();
    db
}

fn store(db: &Database) -> Arc<dyn NotificationLog> {
    Arc::new(StoreLog(Arc::new(SqlNotificationRepository::new(
        db.clone(),
    ))))
}

/// What the writer handed to the live delivery, in order: (room, sequence, priority).
type Delivered = Arc<Mutex<Vec<(String, u64, i32)>>>;

fn writer(
    log: Arc<dyn NotificationLog>,
    max_batch: usize,
    max_queued: usize,
) -> (Writer, Delivered) {
    let delivered = Delivered::default();
    let seen = delivered.clone();
    let writer = Writer::start(
        log,
        &WriteConfig {
            max_batch,
            max_queued,
        },
        Box::new(move |s: &Stored| {
            seen.lock().unwrap().push((
                s.record.room.clone(),
                s.record.sequence,
                s.record.priority,
            ));
        }),
        &phantom_layers::registry::Registry::default(),
    );
    (writer, delivered)
}

/// Yields until `done` holds; fails the test if it never does.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

fn publish(writer: &Writer, e: NewNotification) -> JoinHandle<Result<(Stored, bool), Error>> {
    let writer = writer.clone();
    tokio::spawn(async move { writer.append(e).await })
}

#[tokio::test]
async fn a_critical_queued_behind_low_publishes_is_committed_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let gated = Gated::new(store(&db));
    // Batches of 4: the twelve LOWs waiting need three, and the CRITICAL waits for none.
    let (writer, delivered) = writer(gated.clone(), 4, 64);

    // The writer takes a first LOW and is held on it.
    let first = publish(&writer, entry("team/a", LOW, "first"));
    until("the first batch reaches the log", || {
        gated.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let lows: Vec<_> = (0..12)
        .map(|i| publish(&writer, entry("team/a", LOW, &format!("low {i}"))))
        .collect();
    until("twelve LOWs wait", || writer.queued() == [12, 0, 0, 0]).await;
    let critical = publish(&writer, entry("team/a", CRITICAL, "critical"));
    until("the CRITICAL waits behind them", || {
        writer.queued() == [12, 0, 0, 1]
    })
    .await;

    gated.open();
    let (first, _) = first.await.unwrap().unwrap();
    let (critical, fresh) = critical.await.unwrap().unwrap();
    assert!(fresh);
    let mut low_sequences = Vec::new();
    for low in lows {
        low_sequences.push(low.await.unwrap().unwrap().0.record.sequence);
    }

    assert_eq!(first.record.sequence, 1);
    assert_eq!(
        critical.record.sequence, 2,
        "the CRITICAL is stored right after the batch it waited for"
    );
    low_sequences.sort_unstable();
    assert_eq!(
        low_sequences,
        (3..=14).collect::<Vec<_>>(),
        "the LOWs queued before it come after it, first come first stored"
    );
    assert_eq!(
        gated.batches(),
        [
            vec![LOW],
            vec![CRITICAL, LOW, LOW, LOW],
            vec![LOW; 4],
            vec![LOW; 4],
            vec![LOW]
        ],
        "one batch at a time, most urgent first"
    );
    // The store agrees: the room's second notification is the CRITICAL.
    let stored = gated
        .after(&tenant(), "team/a", 0, crate::service::REPLAY_PAGE)
        .await
        .unwrap();
    assert_eq!(stored.len(), 14);
    assert_eq!(stored[1].payload, "critical");
    assert_eq!(stored[1].priority, CRITICAL);
    // And the subscribers were given them in the same order, with no sequence out of place.
    let delivered: Vec<u64> = delivered.lock().unwrap().iter().map(|d| d.1).collect();
    assert_eq!(delivered, (1..=14).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_batch_is_taken_most_urgent_first_and_first_come_first_stored_within_a_priority() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let gated = Gated::new(store(&db));
    let (writer, _) = writer(gated.clone(), 64, 64);
    let first = publish(&writer, entry("team/a", NORMAL, "hold"));
    until("the first batch reaches the log", || {
        gated.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    // Submitted least urgent first, each after the previous one waits.
    let mut calls = Vec::new();
    for (i, priority) in [LOW, NORMAL, LOW, HIGH, CRITICAL, NORMAL, HIGH]
        .into_iter()
        .enumerate()
    {
        let waiting: usize = writer.queued().iter().sum();
        calls.push((
            priority,
            i,
            publish(&writer, entry("team/a", priority, &i.to_string())),
        ));
        until("the publish waits", || {
            writer.queued().iter().sum::<usize>() == waiting + 1
        })
        .await;
    }
    gated.open();
    first.await.unwrap().unwrap();
    let mut order = Vec::new();
    for (priority, i, call) in calls {
        order.push((call.await.unwrap().unwrap().0.record.sequence, priority, i));
    }
    order.sort_unstable();
    let order: Vec<(i32, usize)> = order.into_iter().map(|(_, p, i)| (p, i)).collect();
    assert_eq!(
        order,
        [
            (CRITICAL, 4),
            (HIGH, 3),
            (HIGH, 6),
            (NORMAL, 1),
            (NORMAL, 5),
            (LOW, 0),
            (LOW, 2)
        ]
    );
}

#[tokio::test]
async fn concurrent_publishes_are_each_stored_once_with_the_sequence_they_were_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let log = store(&db);
    let (writer, delivered) = writer(log.clone(), 16, 1024);
    let rooms = ["team/a", "team/b", "team/c"];
    let priorities = [LOW, NORMAL, HIGH, CRITICAL];
    // 8 publishers, 40 publishes each; every fifth carries a key that another publisher
    // also sends (a retry racing its first attempt).
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..40usize {
                    let room = rooms[(p + i) % rooms.len()];
                    let mut e = entry(room, priorities[i % 4], &format!("{p}/{i}"));
                    if i % 5 == 0 {
                        e.key = Some(format!("k{}", i / 5 + 10 * (p % 2)));
                    }
                    let key = e.key.clone();
                    answers.push((key, writer.append(e).await.unwrap()));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for p in publishers {
        answers.extend(p.await.unwrap());
    }

    for room in rooms {
        let stored = log
            .after(
                &tenant(),
                room,
                0,
                Page {
                    items: 1000,
                    bytes: usize::MAX,
                },
            )
            .await
            .unwrap();
        let sequences: Vec<u64> = stored.iter().map(|n| n.sequence).collect();
        assert_eq!(
            sequences,
            (1..=stored.len() as u64).collect::<Vec<_>>(),
            "{room}: gap-free"
        );
        // Every acknowledged publish is there, as it was answered.
        let fresh: Vec<&Stored> = answers
            .iter()
            .filter(|(_, (s, fresh))| *fresh && s.record.room == room)
            .map(|(_, (s, _))| s)
            .collect();
        assert_eq!(
            fresh.len(),
            stored.len(),
            "{room}: one notification per new publish"
        );
        for s in fresh {
            assert_eq!(stored[s.record.sequence as usize - 1], s.record, "{room}");
        }
        // A key gives one notification: every publish with it was answered that one.
        let mut by_key = std::collections::HashMap::new();
        for (key, (s, _)) in answers.iter().filter(|(_, (s, _))| s.record.room == room) {
            if let Some(key) = key {
                let id = by_key
                    .entry(key.clone())
                    .or_insert_with(|| s.record.id.clone());
                assert_eq!(*id, s.record.id, "{room}: key {key}");
            }
        }
        assert_eq!(
            log.latest(&tenant(), room).await.unwrap(),
            stored.len() as u64,
            "{room}: no number reserved and left unused"
        );
    }
    let total_fresh = answers.iter().filter(|(_, (_, fresh))| *fresh).count();
    assert_eq!(
        delivered.lock().unwrap().len(),
        total_fresh,
        "each new one delivered once"
    );
    // Delivered in commit order: within a room, in sequence.
    for room in rooms {
        let sequences: Vec<u64> = delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.0 == room)
            .map(|d| d.1)
            .collect();
        assert!(sequences.is_sorted(), "{room}: {sequences:?}");
    }
}

#[tokio::test]
async fn a_batch_the_store_refuses_stores_nothing_and_each_publish_is_then_tried_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    // A notification the counter does not know of: the next one of "team/b" collides with it.
    sqlx::query(
        "INSERT INTO notifications (tenant, room, sequence, id, priority, kind, payload, \
         created_at, severity, text_bytes) VALUES ('t', 'team/b', 1, 'x', 2, 'note', '', 0, 0, 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let gated = Gated::new(store(&db));
    let (writer, delivered) = writer(gated.clone(), 64, 64);
    let hold = publish(&writer, entry("team/c", LOW, "hold"));
    until("the first batch reaches the log", || {
        gated.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let good = publish(&writer, entry("team/a", HIGH, "good"));
    let bad = publish(&writer, entry("team/b", LOW, "refused"));
    until("both wait", || writer.queued() == [1, 0, 1, 0]).await;
    gated.open();
    hold.await.unwrap().unwrap();

    let (good, _) = good.await.unwrap().expect("the good one is stored");
    assert_eq!(good.record.sequence, 1);
    let refused = bad
        .await
        .unwrap()
        .expect_err("the one the store refuses fails");
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused}");
    assert_eq!(
        gated.batches(),
        [vec![LOW], vec![HIGH, LOW], vec![HIGH], vec![LOW]],
        "the failed batch, then each of its publishes alone"
    );
    let page = Page {
        items: 10,
        bytes: usize::MAX,
    };
    let a = gated.after(&tenant(), "team/a", 0, page).await.unwrap();
    assert_eq!(
        a,
        std::slice::from_ref(&good.record),
        "stored once, by its own batch"
    );
    let b = gated.after(&tenant(), "team/b", 0, page).await.unwrap();
    assert_eq!(b.len(), 1, "nothing of the refused one");
    assert_eq!(b[0].id, "x");
    assert_eq!(gated.latest(&tenant(), "team/b").await.unwrap(), 0);
    let delivered: Vec<String> = delivered
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(
        delivered,
        ["team/c", "team/a"],
        "only what was stored is delivered"
    );
}

#[tokio::test]
async fn a_publish_that_stopped_waiting_before_its_batch_was_taken_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(&dir).await;
    let gated = Gated::new(store(&db));
    let (writer, _) = writer(gated.clone(), 64, 64);
    let hold = publish(&writer, entry("team/a", LOW, "hold"));
    until("the first batch reaches the log", || {
        gated.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let gone = publish(&writer, entry("team/a", NORMAL, "gone"));
    let kept = publish(&writer, entry("team/a", LOW, "kept"));
    until("both wait", || writer.queued() == [1, 1, 0, 0]).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    gated.open();
    hold.await.unwrap().unwrap();
    let (kept, _) = kept.await.unwrap().unwrap();
    assert_eq!(kept.record.sequence, 2);
    let page = Page {
        items: 10,
        bytes: usize::MAX,
    };
    let payloads: Vec<String> = gated
        .after(&tenant(), "team/a", 0, page)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.payload)
        .collect();
    assert_eq!(payloads, ["hold", "kept"]);
}

/// A notifier whose writer writes to `log` (through a gate) and queues at most `max_queued`
/// publishes per priority.
fn service(log: Arc<dyn NotificationLog>, max_queued: usize) -> crate::service::NotifierService {
    use crate::service::{Core, Delivery, NotifierService, live_delivery};
    let hub = Arc::new(Hub::default());
    let writer = Writer::start(
        log.clone(),
        &WriteConfig {
            max_batch: 64,
            max_queued,
        },
        live_delivery(hub.clone(), crate::webhook::Webhooks::default()),
        &hub.registry,
    );
    let core = phantom_kit::Ready::new();
    core.set(Core {
        log,
        writer,
        fanout: None,
    });
    let delivery = Delivery::from_config(
        &crate::settings::NotifierConfig::default(),
        crate::memory::FALLBACK_BYTES,
    );
    NotifierService::new(core, hub, delivery, phantom_kit::CancellationToken::new())
}

fn publish_call(
    service: &crate::service::NotifierService,
    priority: pb::Priority,
    payload: &str,
) -> JoinHandle<Result<tonic::Response<pb::Notification>, tonic::Status>> {
    let service = service.clone();
    let mut n = crate::service::tests::note("team/a", "note", payload.to_owned());
    n.priority = priority as i32;
    tokio::spawn(async move {
        service
            .publish(crate::service::tests::request(
                n,
                crate::service::tests::PEER,
            ))
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn publishes_past_the_bound_of_their_priority_are_refused_with_retry_info() {
    let memory = Arc::new(crate::service::tests::MemoryLog::default());
    let gated = Gated::new(memory.clone());
    let notifier = service(gated.clone(), 2);
    // One LOW taken by the writer and held; two more wait: the bound.
    let held = publish_call(&notifier, pb::Priority::Low, "held");
    until("the first batch reaches the log", || {
        gated.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let waiting = [
        publish_call(&notifier, pb::Priority::Low, "waits 1"),
        publish_call(&notifier, pb::Priority::Low, "waits 2"),
    ];
    tokio::time::sleep(Duration::from_millis(1)).await;

    let refused = publish_call(&notifier, pb::Priority::Low, "refused")
        .await
        .unwrap()
        .expect_err("a third LOW waiting is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let retry = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("says when to retry");
    assert!(
        (Duration::from_millis(50)..Duration::from_millis(100)).contains(&retry),
        "{retry:?}"
    );
    assert!(
        refused.message().contains("notifier.write.max_queued"),
        "names the setting: {}",
        refused.message()
    );
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "RATE_LIMITED");
    // Another priority has its own bound: a CRITICAL still gets in, ahead of them.
    let critical = publish_call(&notifier, pb::Priority::Critical, "critical");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!critical.is_finished(), "it waits for the held batch");

    gated.open();
    held.await.unwrap().unwrap();
    let critical = critical.await.unwrap().unwrap().into_inner();
    assert_eq!(critical.sequence, 2);
    for call in waiting {
        assert!(call.await.unwrap().unwrap().into_inner().sequence > 2);
    }
    let page = Page {
        items: 10,
        bytes: usize::MAX,
    };
    let payloads: Vec<String> = memory
        .after(&tenant(), "team/a", 0, page)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.payload)
        .collect();
    assert_eq!(
        payloads,
        ["held", "critical", "waits 1", "waits 2"],
        "the refused one stored nothing"
    );
}
