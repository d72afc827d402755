//! The repository's conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` sets after starting a
//! throwaway server. Without it the PostgreSQL run is skipped, unless
//! `PHANTOM_REQUIRE_BACKENDS=1` (set by `make test`) makes the absence a failure.

use phantom_vuln_analyzer::repository::{self, SqlAnalysisRepository, conformance};

phantom_storage::conformance_tests! {
    migrations: [repository::migrator()],
    repository: SqlAnalysisRepository::new,
    suite: conformance::run_all,
}
