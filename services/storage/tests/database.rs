//! The database as every service opens it.

use std::time::Duration;

use phantom_storage::Database;

#[tokio::test]
async fn sqlite_databases_use_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wal.db").display());
    let _store = Database::open_url(&url, 2, Duration::from_secs(5))
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
