//! Throwaway databases for the repositories' conformance suites (feature `testing`; not part
//! of the production API).
//!
//! `make test` starts a throwaway PostgreSQL and Redis and exports their URLs as
//! `PHANTOM_TEST_POSTGRES_URL` and `PHANTOM_TEST_REDIS_URL`, with
//! `PHANTOM_REQUIRE_BACKENDS=1`. A plain `cargo test` without them skips the backend tests
//! (saying so); under `make test` a missing server fails the test instead of passing
//! silently.

use std::{path::Path, time::Duration};

use crate::Database;

/// Connections of a test database's pool.
const MAX_CONNECTIONS: u32 = 5;
/// How long a test waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL in the environment variable `var`, if `make test` provisioned that backend.
fn backend(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("PHANTOM_REQUIRE_BACKENDS").as_deref() != Ok("1"),
                "{var} is not set but PHANTOM_REQUIRE_BACKENDS=1: run the suite through `make test`"
            );
            eprintln!("skipped: {var} is not set (run `make test` to provision it)");
            None
        }
    }
}

/// URL of the test PostgreSQL server, if one was provisioned.
pub fn postgres_url() -> Option<String> {
    backend("PHANTOM_TEST_POSTGRES_URL")
}

/// URL of the test Redis server, if one was provisioned.
pub fn redis_url() -> Option<String> {
    backend("PHANTOM_TEST_REDIS_URL")
}

/// The URL of a new SQLite database in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("test.db").display())
}

/// A new, empty SQLite database in `dir` (a temporary directory the caller keeps).
pub async fn sqlite(dir: &Path) -> Database {
    Database::open_url(&sqlite_url(dir), MAX_CONNECTIONS, ACQUIRE_TIMEOUT)
        .await
        .expect("open a test SQLite database")
}

/// The test PostgreSQL server's database, shared by every test (suites use fresh tenants), or
/// `None` when there is no server (see [`postgres_url`]).
pub async fn postgres() -> Option<Database> {
    let url = postgres_url()?;
    Some(
        Database::open_url(&url, MAX_CONNECTIONS, ACQUIRE_TIMEOUT)
            .await
            .expect("open the test PostgreSQL database"),
    )
}

/// A new, empty database on the test PostgreSQL server, for tests that need a schema of their
/// own (migrations); `None` when there is no server. Left behind: the server is thrown away.
pub async fn fresh_postgres() -> Option<Database> {
    Some(
        Database::open_url(
            &fresh_postgres_url().await?,
            MAX_CONNECTIONS,
            ACQUIRE_TIMEOUT,
        )
        .await
        .expect("open a fresh PostgreSQL database"),
    )
}

/// Creates a new database on the test PostgreSQL server; returns its URL.
pub async fn fresh_postgres_url() -> Option<String> {
    let url = postgres_url()?;
    let server = Database::open_url(&url, 1, ACQUIRE_TIMEOUT)
        .await
        .expect("open the test PostgreSQL database");
    let name = format!("phantom_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(server.pool())
        .await
        .expect("create a test database");
    server.pool().close().await;
    // postgres://user@host:port/<database>?<options>: the same with another database.
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server_part = base[authority..]
        .find('/')
        .map_or(base, |i| &base[..authority + i]);
    Some(match query {
        Some(q) => format!("{server_part}/{name}?{q}"),
        None => format!("{server_part}/{name}"),
    })
}

/// The two tests of a repository's conformance suite: on a new SQLite database and on the
/// test PostgreSQL server's, each after `migrations` are applied, the repository built by
/// `repository` (from a [`Database`]) and checked by `suite` (an `async fn(&Repository)`).
/// For a test file of the service's (`tests/repository.rs`); it needs `tokio` and `tempfile`.
#[macro_export]
macro_rules! conformance_tests {
    (migrations: [$($migration:expr),* $(,)?], repository: $repository:expr, suite: $suite:path $(,)?) => {
        #[tokio::test]
        async fn sqlite_repository_conforms() {
            let dir = tempfile::tempdir().unwrap();
            let db = $crate::testing::sqlite(dir.path()).await;
            $(db.migrate($migration).await.unwrap();)*
            $suite(&($repository)(db)).await;
        }

        #[tokio::test]
        async fn postgres_repository_conforms() {
            let Some(db) = $crate::testing::postgres().await else {
                return;
            };
            $(db.migrate($migration).await.unwrap();)*
            $suite(&($repository)(db)).await;
        }
    };
}
