//! Helpers for tests that need real backends (feature `testing`; not part of the production
//! API): the database and Redis `make test` provisions (see `phantom_storage::testing`), and
//! the tools it installs.

pub use phantom_storage::testing::{postgres_url, redis_url};

/// Whether `program` is on the `PATH`. `make test` installs what the suite needs; without it,
/// plain `cargo test` skips the scenarios (saying so), and `PHANTOM_REQUIRE_BACKENDS=1` makes
/// its absence a failure.
fn installed(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        assert!(
            std::env::var("PHANTOM_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "{program} is not installed but PHANTOM_REQUIRE_BACKENDS=1: run the suite through `make test`"
        );
        eprintln!("skipped: {program} is not installed (run `make test` to install it)");
    }
    found
}

/// Whether `nmap` is installed, for the nmap scenarios.
pub fn nmap_available() -> bool {
    installed("nmap")
}

/// Whether `redis-server` is installed, for tests that start (and kill) their own Redis.
pub fn redis_server_available() -> bool {
    installed("redis-server")
}
