//! The behaviour every [`NotificationRepository`] must have, as one suite run against each
//! backend (`services/notifier/tests/repository.rs` runs it on SQLite and on PostgreSQL).
//!
//! Each check uses fresh tenants, so the suite can run against a shared database.

use phantom_domain::Tenant;
use phantom_kit::time::now_micros;

use super::{NewNotification, NotificationRecord, NotificationRepository};

fn tenant() -> Tenant {
    Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).expect("a tenant id")
}

/// Runs every check against `store`.
pub async fn run_all(store: &dyn NotificationRepository) {
    notification_sequences_are_gap_free_per_room(store).await;
    a_publish_key_stores_one_notification(store).await;
    a_batch_numbers_each_room_in_its_order(store).await;
    batches_taking_rooms_in_opposite_orders_all_commit(store).await;
}

fn batch_note(tenant: &Tenant, room: &str, payload: &str, key: Option<&str>) -> NewNotification {
    NewNotification {
        record: NotificationRecord {
            tenant: tenant.clone(),
            room: room.to_owned(),
            sequence: 0,
            id: uuid::Uuid::now_v7().to_string(),
            priority: 2,
            kind: "note".into(),
            payload: payload.into(),
            created_at: now_micros(),
            severity: 0,
        },
        key: key.map(str::to_owned),
    }
}

/// A batch numbers each of its rooms in the batch's order, whatever the rooms' order; a key
/// already taken, in an earlier batch or earlier in the same one, stores nothing and answers
/// the first notification, and the number it would have taken is not left unused.
pub async fn a_batch_numbers_each_room_in_its_order(store: &dyn NotificationRepository) {
    let t = tenant();
    let (earlier, fresh) = store
        .append_notification_once(&batch_note(&t, "team/b", "earlier", None).record, "old")
        .await
        .unwrap();
    assert!(fresh);
    let batch = [
        batch_note(&t, "team/c", "c1", None),
        batch_note(&t, "team/b", "b2", Some("new")),
        batch_note(&t, "team/c", "c2", Some("k")),
        batch_note(&t, "team/b", "retry of earlier", Some("old")),
        batch_note(&t, "team/c", "retry of c2", Some("k")),
        batch_note(&t, "team/b", "b3", None),
    ];
    let stored = store.append_notifications(&batch).await.unwrap();
    let got: Vec<(&str, u64, &str, bool)> = stored
        .iter()
        .map(|(n, fresh)| (n.room.as_str(), n.sequence, n.payload.as_str(), *fresh))
        .collect();
    assert_eq!(
        got,
        [
            ("team/c", 1, "c1", true),
            ("team/b", 2, "b2", true),
            ("team/c", 2, "c2", true),
            ("team/b", 1, "earlier", false),
            ("team/c", 2, "c2", false),
            ("team/b", 3, "b3", true),
        ]
    );
    assert_eq!(stored[3].0, earlier, "the first one, as stored");
    for (room, last) in [("team/b", 3), ("team/c", 2)] {
        assert_eq!(
            store.latest_notification_sequence(&t, room).await.unwrap(),
            last
        );
        let all = store
            .notifications_after(&t, room, 0, 10, u64::MAX)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|n| n.sequence).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "{room}"
        );
    }
}

/// Writers committing batches of the same rooms at once, listed in opposite orders, all commit
/// (none waits on another in a cycle: PostgreSQL would abort one as a deadlock), and each room
/// stays gap-free.
pub async fn batches_taking_rooms_in_opposite_orders_all_commit(
    store: &dyn NotificationRepository,
) {
    let t = tenant();
    let batches: Vec<Vec<NewNotification>> = (0..20)
        .map(|i| {
            let mut rooms =
                ["team/x", "team/y", "team/z"].map(|room| batch_note(&t, room, "", None));
            if i % 2 == 1 {
                rooms.reverse();
            }
            rooms.to_vec()
        })
        .collect();
    let results =
        futures::future::join_all(batches.iter().map(|b| store.append_notifications(b))).await;
    for result in results {
        result.expect("every batch commits");
    }
    for room in ["team/x", "team/y", "team/z"] {
        let all = store
            .notifications_after(&t, room, 0, 100, u64::MAX)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|n| n.sequence).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>(),
            "{room}"
        );
    }
}

/// A notification appended twice with one key is stored once; the second append returns the
/// first, as stored, and says it stored nothing.
pub async fn a_publish_key_stores_one_notification(store: &dyn NotificationRepository) {
    let t = tenant();
    let note = |payload: &str| NotificationRecord {
        tenant: t.clone(),
        room: "team/keys".to_owned(),
        sequence: 0,
        id: uuid::Uuid::now_v7().to_string(),
        priority: 2,
        kind: "note".into(),
        payload: payload.into(),
        created_at: now_micros(),
        severity: 0,
    };
    let first = note("first");
    let (stored, fresh) = store.append_notification_once(&first, "k").await.unwrap();
    assert!(fresh);
    let (again, fresh) = store
        .append_notification_once(&note("retry"), "k")
        .await
        .unwrap();
    assert!(!fresh);
    assert_eq!(again, stored);
    let all = store
        .notifications_after(&t, "team/keys", 0, 10, u64::MAX)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, "first");
}

/// Concurrent publishers to one room get 1..=n with no gaps; rooms and tenants count apart.
pub async fn notification_sequences_are_gap_free_per_room(store: &dyn NotificationRepository) {
    let t = tenant();
    let note = |room: &str, tenant: &Tenant| NotificationRecord {
        tenant: tenant.clone(),
        room: room.to_owned(),
        sequence: 0,
        id: uuid::Uuid::now_v7().to_string(),
        priority: 2,
        kind: "scan.progress".into(),
        payload: "{}".into(),
        created_at: now_micros(),
        severity: 0,
    };
    let notes: Vec<_> = (0..10).map(|_| note("scan/a", &t)).collect();
    let mut seqs: Vec<u64> =
        futures::future::join_all(notes.iter().map(|n| store.append_notification(n)))
            .await
            .into_iter()
            .map(|r| r.unwrap().sequence)
            .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        store
            .append_notification(&note("scan/b", &t))
            .await
            .unwrap()
            .sequence,
        1
    );
    assert_eq!(
        store
            .append_notification(&note("scan/a", &tenant()))
            .await
            .unwrap()
            .sequence,
        1
    );

    let after = store
        .notifications_after(&t, "scan/a", 7, 100, u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    // A byte budget ends the page in the database; its first notification always comes.
    let each = after[0].footprint() as u64;
    for (budget, want) in [
        (2 * each + 1, vec![8, 9]),
        (3 * each, vec![8, 9, 10]),
        (0, vec![8]),
    ] {
        let page = store
            .notifications_after(&t, "scan/a", 7, 100, budget)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|n| n.sequence).collect::<Vec<_>>(),
            want,
            "a budget of {budget} bytes for notifications of {each}"
        );
    }
    let limited = store
        .notifications_after(&t, "scan/a", 7, 2, u64::MAX)
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    // Retention: by count per room, then by age; the counter never goes back.
    assert!(store.prune_notifications(0, 3).await.unwrap() >= 7);
    let kept = store
        .notifications_after(&t, "scan/a", 0, 100, u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        kept.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    store
        .prune_notifications(now_micros() + 1, u64::MAX / 4)
        .await
        .unwrap();
    assert!(
        store
            .notifications_after(&t, "scan/a", 0, 100, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let next = store
        .append_notification(&note("scan/a", &t))
        .await
        .unwrap();
    assert_eq!(next.sequence, 11);
}
