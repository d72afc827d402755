//! The repository's conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` sets after starting a
//! throwaway server. Without it the PostgreSQL run is skipped, unless
//! `PHANTOM_REQUIRE_BACKENDS=1` (set by `make test`) makes the absence a failure.

use std::time::Duration;

use phantom_domain::Analysis;
use phantom_scan_orchestrator::repository::{
    self, ScanRepository as _, SqlScanRepository, conformance,
};
use phantom_storage::{Database, testing};
use phantom_vuln_analyzer::repository::{AnalysisRepository as _, SqlAnalysisRepository};

/// The analyzer's table, through the analyzer's repository.
struct Analyses(SqlAnalysisRepository);

#[async_trait::async_trait]
impl conformance::AnalysesTable for Analyses {
    async fn put_analysis(&self, analysis: &Analysis) {
        self.0.put_analysis(analysis).await.unwrap();
    }

    async fn upgrade_analysis(&self, analysis: &Analysis) -> bool {
        self.0.upgrade_analysis(analysis).await.unwrap()
    }
}

/// The orchestrator's repository over `db` once its migrations and the analyzer's are
/// applied, and the analyzer's table over the same database (whose analyses the findings
/// show).
async fn repositories(db: Database) -> (SqlScanRepository, Analyses) {
    for migrator in [
        repository::migrator(),
        phantom_vuln_analyzer::repository::migrator(),
    ] {
        db.migrate(migrator).await.unwrap();
    }
    (
        SqlScanRepository::new(db.clone()),
        Analyses(SqlAnalysisRepository::new(db)),
    )
}

#[tokio::test]
async fn sqlite_repository_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let (scans, analyses) = repositories(testing::sqlite(dir.path()).await).await;
    conformance::run_all(&scans, &analyses).await;
}

#[tokio::test]
async fn postgres_repository_conforms() {
    let Some(db) = testing::postgres().await else {
        return;
    };
    let (scans, analyses) = repositories(db).await;
    conformance::run_all(&scans, &analyses).await;
}

#[tokio::test]
async fn sqlite_data_survives_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let url = testing::sqlite_url(dir.path());
    let tenant = phantom_domain::Tenant::parse("default").unwrap();
    let scan = conformance::sample_scan(&tenant);
    {
        let db = Database::open_url(&url, 1, Duration::from_secs(5))
            .await
            .unwrap();
        let (store, _) = repositories(db).await;
        store.insert_scan(&scan).await.unwrap();
    }
    let db = Database::open_url(&url, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let (store, _) = repositories(db).await;
    assert_eq!(store.get_scan(&tenant, &scan.id).await.unwrap(), Some(scan));
}
