//! The key store's conformance suite against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `PHANTOM_TEST_POSTGRES_URL`, which `make test` (and
//! `tests/support/with-backends.sh`) sets after starting a throwaway server. Without it the
//! PostgreSQL run is skipped, unless `PHANTOM_REQUIRE_BACKENDS=1` makes the absence a failure.

use phantom_identity::repository::{self, SqlKeyRepository, conformance};

phantom_storage::conformance_tests! {
    migrations: [repository::migrator()],
    repository: SqlKeyRepository::new,
    suite: conformance::run_all,
}
