//! The repository's conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` sets after starting a
//! throwaway server. Without it the PostgreSQL run is skipped, unless
//! `PHANTOM_REQUIRE_BACKENDS=1` (set by `make test`) makes the absence a failure.

use phantom_storage::{Database, testing};
use phantom_vuln_analyzer::repository::{self, SqlAnalysisRepository, conformance};

/// The repository over `db`, once its migrations are applied.
async fn repository(db: Database) -> SqlAnalysisRepository {
    db.migrate(repository::migrator()).await.unwrap();
    SqlAnalysisRepository::new(db)
}

#[tokio::test]
async fn sqlite_repository_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = repository(testing::sqlite(dir.path()).await).await;
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn postgres_repository_conforms() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    conformance::run_all(&repository(db).await).await;
}
