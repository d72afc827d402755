//! The stores every PHANTOM service may use — the database and the cache — and nothing of
//! any service.
//!
//! All services use one database (`DATABASE_URL`, or SQLite under `PHANTOM_DATA_DIR`), each
//! through a repository of its own (`phantom_scan_orchestrator::repository`, ...) that owns
//! its tables, its queries and its migrations. What they have in common lives here: opening
//! the database ([`Database`], over sqlx's `Any` driver: SQLite or PostgreSQL, chosen by URL),
//! applying a service's migrations ([`Database::migrate`]), its health ([`Database::ping`],
//! [`PoolStats`]), and its errors ([`StoreError`]). The cache ([`cache::CacheManager`]) is
//! in-process or Redis, behind a breaker, with its statistics registered as a metrics source.
//!
//! # Layout
//! - [`cache`]: the cache, its backends and its `[cache]` settings.
//! - [`config`]: [`StorageConfig`], the `[storage]` section of the configuration.
//! - [`database`]: [`Database`], the connection pool, its dialect, and the embedded database's
//!   file handling.
//! - [`error`]: [`StoreError`], why a storage operation failed.
//! - [`row`]: decoding helpers the repositories share.
//! - [`migrator!`]: the `migrator()` each service's repository defines over its embedded
//!   `./migrations`.
//! - `testing` (feature `testing`): throwaway databases for the repositories' conformance
//!   suites.

pub mod cache;
pub mod config;
pub mod database;
pub mod error;
pub mod row;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{DEFAULT_DATA_DIR, StorageConfig};
pub use database::{Database, Dialect, PoolStats};
pub use error::StoreError;
/// A service's migrations, as `sqlx::migrate!` embeds them (see [`Database::migrate`]).
pub use sqlx::migrate::Migrator;

/// Defines `$vis fn $name() -> &'static Migrator`: the calling crate's migrations, embedded
/// from its `./migrations` directory (`sqlx::migrate!` is expanded in the caller, so the path
/// is relative to the caller's `Cargo.toml`; the caller depends on `sqlx` with its `migrate`
/// feature), loaded once, with missing migrations ignored (every service's migrations share
/// one `_sqlx_migrations` table, so each sees the others' as unknown; see
/// [`Database::migrate`]).
///
/// ```ignore
/// phantom_storage::migrator! {
///     /// The orchestrator's migrations.
///     pub fn migrator
/// }
/// ```
#[macro_export]
macro_rules! migrator {
    ($(#[$attr:meta])* $vis:vis fn $name:ident) => {
        $(#[$attr])*
        $vis fn $name() -> &'static $crate::Migrator {
            static MIGRATOR: ::std::sync::LazyLock<$crate::Migrator> =
                ::std::sync::LazyLock::new(|| {
                    let mut migrator = ::sqlx::migrate!("./migrations");
                    migrator.set_ignore_missing(true);
                    migrator
                });
            &MIGRATOR
        }
    };
}
