//! The repository's conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` sets after starting a
//! throwaway server. Without it the PostgreSQL run is skipped, unless
//! `PHANTOM_REQUIRE_BACKENDS=1` (set by `make test`) makes the absence a failure.

use phantom_notifier::repository::{self, SqlNotificationRepository, conformance};

phantom_storage::conformance_tests! {
    migrations: [repository::migrator()],
    repository: SqlNotificationRepository::new,
    suite: conformance::run_all,
}

use phantom_domain::Tenant;
use phantom_notifier::repository::{NewNotification, NotificationRecord, NotificationRepository};
use phantom_storage::{Database, error::Class};

/// A batch is one transaction: when one of its notifications cannot be stored, none of it is,
/// and no room's counter moves.
async fn a_batch_that_fails_stores_none_of_it(db: Database) {
    db.migrate(repository::migrator()).await.unwrap();
    let t = Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).unwrap();
    // A notification its room's counter does not know of: the room's next one collides.
    sqlx::query(
        "INSERT INTO notifications (tenant, room, sequence, id, priority, kind, payload, \
         created_at, severity, text_bytes) VALUES ($1, 'team/b', 1, 'x', 2, 'note', '', 0, 0, 0)",
    )
    .bind(t.to_string())
    .execute(db.pool())
    .await
    .unwrap();
    let store = SqlNotificationRepository::new(db);
    let note = |room: &str, key: Option<&str>| NewNotification {
        record: NotificationRecord {
            tenant: t.clone(),
            room: room.to_owned(),
            sequence: 0,
            id: uuid::Uuid::now_v7().to_string(),
            priority: 2,
            kind: "note".into(),
            payload: "{}".into(),
            created_at: phantom_kit::time::now_micros(),
            severity: 0,
        },
        key: key.map(str::to_owned),
    };
    // "team/a" (stored first: rooms go in order) and its key, then "team/b", which collides.
    let batch = [
        note("team/b", None),
        note("team/a", Some("k")),
        note("team/a", None),
    ];
    let err = store.append_notifications(&batch).await.unwrap_err();
    assert_eq!(err.class(), Class::Duplicate, "{err}");
    assert!(
        store
            .notifications_after(&t, "team/a", 0, 10, u64::MAX)
            .await
            .unwrap()
            .is_empty(),
        "nothing of the batch is stored"
    );
    assert_eq!(
        store
            .latest_notification_sequence(&t, "team/a")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .latest_notification_sequence(&t, "team/b")
            .await
            .unwrap(),
        0
    );
    // Its key was not kept either: the same notifications without the colliding one store
    // anew, from sequence 1.
    let stored = store.append_notifications(&batch[1..]).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|(n, fresh)| (n.sequence, *fresh))
            .collect::<Vec<_>>(),
        [(1, true), (2, true)]
    );
}

#[tokio::test]
async fn sqlite_a_batch_that_fails_stores_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    a_batch_that_fails_stores_none_of_it(phantom_storage::testing::sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn postgres_a_batch_that_fails_stores_none_of_it() {
    let Some(db) = phantom_storage::testing::postgres().await else {
        return;
    };
    a_batch_that_fails_stores_none_of_it(db).await;
}
