//! The storage conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` sets after starting a
//! throwaway server. Without it the PostgreSQL run is skipped, unless
//! `PHANTOM_REQUIRE_BACKENDS=1` (set by `make test`) makes the absence a failure.

use std::time::Duration;

use phantom_runtime::storage::{SqlStore, conformance};

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = SqlStore::connect_url(&url, 5, Duration::from_secs(5))
        .await
        .unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(url) = phantom_runtime::testing::postgres_url() else {
        return;
    };
    let store = SqlStore::connect_url(&url, 5, Duration::from_secs(5))
        .await
        .unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn sqlite_data_survives_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let scan = conformance::sample_scan("default");
    {
        use phantom_runtime::storage::Store;
        let store = SqlStore::connect_url(&url, 1, Duration::from_secs(5))
            .await
            .unwrap();
        store.insert_scan(&scan).await.unwrap();
    }
    use phantom_runtime::storage::Store;
    let store = SqlStore::connect_url(&url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        store.get_scan("default", &scan.id).await.unwrap(),
        Some(scan)
    );
}

#[tokio::test]
async fn sqlite_databases_use_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wal.db").display());
    let _store = SqlStore::connect_url(&url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    // The journal mode is a property of the file: a plain connection sees it too.
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}
