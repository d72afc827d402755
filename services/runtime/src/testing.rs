//! Helpers for tests that need real backends.
//!
//! `make test` starts a throwaway PostgreSQL and Redis and exports their URLs as
//! `PHANTOM_TEST_POSTGRES_URL` and `PHANTOM_TEST_REDIS_URL`, with `PHANTOM_REQUIRE_BACKENDS=1`.
//! A plain `cargo test` without them skips the backend tests (saying so); under
//! `make test` a missing backend fails the test instead of passing silently.

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

/// Whether `nmap` is installed (`make test` installs it; without it, plain `cargo test` skips
/// the nmap scenarios, and `PHANTOM_REQUIRE_BACKENDS=1` makes its absence a failure).
pub fn nmap_available() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("nmap").is_file()));
    if !found {
        assert!(
            std::env::var("PHANTOM_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "nmap is not installed but PHANTOM_REQUIRE_BACKENDS=1: run the suite through `make test`"
        );
        eprintln!("skipped: nmap is not installed (run `make test` to install it)");
    }
    found
}

/// Whether `redis-server` is installed, for tests that start (and kill) their own Redis.
pub fn redis_server_available() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join("redis-server").is_file())
    });
    if !found {
        assert!(
            std::env::var("PHANTOM_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "redis-server is not installed but PHANTOM_REQUIRE_BACKENDS=1: run the suite through `make test`"
        );
        eprintln!("skipped: redis-server is not installed (run `make test` to install it)");
    }
    found
}
