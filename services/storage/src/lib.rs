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
