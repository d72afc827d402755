//! Both notification logs behave the same: the database (SQLite here) and Redis Streams
//! (a real `redis-server`, provisioned by `make test`).

use std::{sync::Arc, time::Duration};

use phantom_domain::Tenant;
use phantom_kit::time::now_micros;
use phantom_notifier::{
    log::{NotificationLog, Page, RedisLog, StoreLog},
    repository::{self, NewNotification, NotificationRecord, SqlNotificationRepository},
};
use phantom_storage::Database;

fn note(tenant: &Tenant, room: &str, created_at: i64) -> NotificationRecord {
    NotificationRecord {
        tenant: tenant.clone(),
        room: room.into(),
        sequence: 0,
        id: uuid::Uuid::now_v7().to_string(),
        priority: 2,
        kind: "scan.progress".into(),
        payload: r#"{"percent": 50}"#.into(),
        created_at,
        severity: 0,
    }
}

fn items(n: u32) -> Page {
    Page {
        items: n,
        bytes: usize::MAX,
    }
}

/// A Publish retried with its key stores nothing new and answers the first one; another key,
/// or the same key in another room, stores anew.
async fn keyed_appends_store_once(log: &dyn NotificationLog) {
    let t = Tenant::parse(&format!("k{}", uuid::Uuid::now_v7().simple())).unwrap();
    let first = note(&t, "team/a", now_micros());
    let (stored, fresh) = log.append_once(&first, "retry-1").await.unwrap();
    assert!(fresh);
    let epoch = log.epoch().await.unwrap();
    assert_eq!(stored.epoch, epoch, "appended in the log's epoch");
    let stored = stored.record;
    let mut retried = note(&t, "team/a", now_micros());
    retried.payload = "a retry's own fields".into();
    let (again, fresh) = log.append_once(&retried, "retry-1").await.unwrap();
    assert!(!fresh, "the retry stores nothing");
    assert_eq!(again.epoch, epoch);
    let again = again.record;
    assert_eq!(again.sequence, stored.sequence);
    assert_eq!(again.id, first.id, "the first one, as stored");
    assert_eq!(
        log.after(&t, "team/a", 0, items(10)).await.unwrap().len(),
        1,
        "one notification"
    );
    let (other, fresh) = log.append_once(&retried, "retry-2").await.unwrap();
    assert!(fresh && other.record.sequence == stored.sequence + 1);
    let (elsewhere, fresh) = log
        .append_once(&note(&t, "team/b", now_micros()), "retry-1")
        .await
        .unwrap();
    assert!(fresh && elsewhere.record.sequence == 1);
}

/// A batch numbers each room in its order; a key used earlier in the batch answers the first
/// one; every notification of it comes back with the log's epoch.
async fn a_batch_numbers_each_room_in_its_order(log: &dyn NotificationLog) {
    let t = Tenant::parse(&format!("b{}", uuid::Uuid::now_v7().simple())).unwrap();
    let entry = |room: &str, payload: &str, key: Option<&str>| NewNotification {
        record: NotificationRecord {
            payload: payload.to_owned(),
            ..note(&t, room, now_micros())
        },
        key: key.map(str::to_owned),
    };
    let batch = [
        entry("team/a", "a1", None),
        entry("team/b", "b1", Some("k")),
        entry("team/a", "a2", None),
        entry("team/b", "retry of b1", Some("k")),
        entry("team/a", "a3", Some("k")),
    ];
    let stored = log.append_batch(&batch).await.unwrap();
    let epoch = log.epoch().await.unwrap();
    assert!(stored.iter().all(|(s, _)| s.epoch == epoch));
    let got: Vec<(&str, u64, &str, bool)> = stored
        .iter()
        .map(|(s, fresh)| {
            let r = &s.record;
            (r.room.as_str(), r.sequence, r.payload.as_str(), *fresh)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("team/a", 1, "a1", true),
            ("team/b", 1, "b1", true),
            ("team/a", 2, "a2", true),
            ("team/b", 1, "b1", false),
            ("team/a", 3, "a3", true),
        ]
    );
    assert_eq!(
        stored[3].0.record.id, batch[1].record.id,
        "the first one, as stored"
    );
    assert_eq!(log.latest(&t, "team/b").await.unwrap(), 1);
    let a = log.after(&t, "team/a", 0, items(10)).await.unwrap();
    assert_eq!(
        a.iter().map(|n| n.payload.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
}

async fn conforms(log: &dyn NotificationLog) {
    keyed_appends_store_once(log).await;
    a_batch_numbers_each_room_in_its_order(log).await;
    let t = Tenant::parse(&format!("t{}", uuid::Uuid::now_v7().simple())).unwrap();
    let other = Tenant::parse(&format!("{t}-other")).unwrap();
    let old = now_micros() - 3_600_000_000;
    // Sequences are per room and per tenant, gap-free, and what was stored reads back.
    for i in 1..=6u64 {
        let created = if i <= 2 { old } else { now_micros() };
        let stored = log.append(&note(&t, "scan/a", created)).await.unwrap();
        assert_eq!(stored.record.sequence, i);
        // Read with the sequence, in the same step: what live delivery passes on.
        assert_eq!(stored.epoch, log.epoch().await.unwrap());
    }
    assert_eq!(
        log.append(&note(&t, "scan/b", old))
            .await
            .unwrap()
            .record
            .sequence,
        1
    );
    assert_eq!(
        log.append(&note(&other, "scan/a", old))
            .await
            .unwrap()
            .record
            .sequence,
        1
    );
    assert_eq!(log.latest(&t, "scan/a").await.unwrap(), 6);
    assert_eq!(log.latest(&t, "scan/none").await.unwrap(), 0);
    let first = note(&t, "scan/a", 0);
    let all = log.after(&t, "scan/a", 0, items(100)).await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(all[0].payload, first.payload);
    assert_eq!(all[0].kind, "scan.progress");
    let page = log.after(&t, "scan/a", 2, items(3)).await.unwrap();
    assert_eq!(
        page.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        log.after(&t, "scan/none", 0, items(10))
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: by age (the two old ones), then by count; numbers are never reused.
    let cutoff = now_micros() - 60_000_000;
    log.prune(cutoff, 1_000).await.unwrap();
    let kept = log.after(&t, "scan/a", 0, items(100)).await.unwrap();
    assert_eq!(
        kept.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    log.prune(cutoff, 2).await.unwrap();
    let kept = log.after(&t, "scan/a", 0, items(100)).await.unwrap();
    assert_eq!(
        kept.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert_eq!(
        log.append(&note(&t, "scan/a", now_micros()))
            .await
            .unwrap()
            .record
            .sequence,
        7
    );
    pages_are_bounded_in_bytes(log).await;
}

/// A page never holds more than its bytes (but always at least one notification), and paging
/// through small pages reads everything once, in order.
async fn pages_are_bounded_in_bytes(log: &dyn NotificationLog) {
    let t = Tenant::parse(&format!("t{}", uuid::Uuid::now_v7().simple())).unwrap();
    for i in 0..12 {
        let mut n = note(&t, "scan/big", now_micros());
        n.payload = "x".repeat(if i % 3 == 0 { 60 * 1024 } else { 100 });
        log.append(&n).await.unwrap();
    }
    let budget = 64 * 1024;
    let mut after = 0;
    let mut read = Vec::new();
    loop {
        let page = log
            .after(
                &t,
                "scan/big",
                after,
                Page {
                    items: 500,
                    bytes: budget,
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        let bytes: usize = page.iter().map(NotificationRecord::footprint).sum();
        assert!(
            page.len() == 1 || bytes <= budget,
            "{} notifications of {bytes} bytes in a page of {budget}",
            page.len()
        );
        after = page.last().unwrap().sequence;
        read.extend(page.iter().map(|n| n.sequence));
    }
    assert_eq!(read, (1..=12).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_database_log_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("n.db").display());
    let db = Database::open_url(&url, 5, Duration::from_secs(5))
        .await
        .unwrap();
    db.migrate(repository::migrator()).await.unwrap();
    conforms(&StoreLog(Arc::new(SqlNotificationRepository::new(db)))).await;
}

#[tokio::test]
async fn the_redis_streams_log_conforms() {
    let Some(url) = phantom_kit::testing::redis_url() else {
        return;
    };
    let log = RedisLog::connect(&url, 10_000).unwrap();
    assert!(log.ready(Duration::from_secs(10)).await);
    conforms(&log).await;
}
