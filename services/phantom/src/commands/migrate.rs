//! `phantom migrate`: applies every service's schema migrations, says which, and exits.
//!
//! The services apply pending migrations themselves at start-up (idempotently, under sqlx's
//! migration lock), so this command is not required for correctness. It exists for
//! Kubernetes: the chart runs it as a `pre-install,pre-upgrade` Job, so a new schema is in
//! place before the first pod of a new version starts, and a migration that fails stops the
//! upgrade instead of crash-looping every Deployment at once.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use phantom_kit::config::{StorageConfig, redact};
use phantom_storage::{Database, StoreError};
use sqlx::{Connection as _, migrate::Migrate as _};

use super::{errln, outln};

/// Where sqlx keeps the applied migrations (its default, which every service keeps).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
/// First pause between connection attempts; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between connection attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Opens the configured database and applies every service's migrations.
pub(crate) async fn migrate_all(config: &StorageConfig) -> Result<Database, StoreError> {
    let db = Database::open(config).await?;
    for migrator in crate::config::Config::migrations() {
        db.migrate(migrator).await?;
    }
    Ok(db)
}

/// Waits up to `wait` for the database to accept connections, applies pending migrations and
/// prints which. Exit status 1 when the database stays unreachable or a migration fails.
pub async fn run(config: &StorageConfig, wait: Duration) -> ExitCode {
    let url = url(config);
    let shown = redact(&url);

    // The database may still be starting (a fresh cluster, a failover): wait for it, but only
    // on errors that waiting can cure. A wrong password or a missing database fails at once.
    let started = Instant::now();
    let deadline = started + wait;
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = config.clone();
    loop {
        // Each attempt waits at most for what is left of `wait` (a refused connection is
        // retried inside the pool until its acquire timeout).
        attempt.acquire_timeout = config
            .acquire_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(FIRST_RETRY_DELAY);
        match Database::open(&attempt).await {
            Ok(_) => break,
            Err(err) if is_transient(&err) && Instant::now() + delay < deadline => {
                errln!("phantom migrate: {shown} is not reachable yet ({err}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(err) if is_transient(&err) => {
                errln!(
                    "phantom migrate: {shown} is still unreachable after {}s (--wait {}): {err}\n  \
                     is the database running, and DATABASE_URL right?",
                    started.elapsed().as_secs(),
                    humantime::format_duration(wait)
                );
                return ExitCode::FAILURE;
            }
            Err(err) => {
                errln!("phantom migrate: cannot open {shown}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }

    let before = match applied(&url).await {
        Ok(v) => v,
        Err(err) => {
            errln!("phantom migrate: cannot read the applied migrations of {shown}: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = migrate_all(config).await {
        errln!("phantom migrate: migrating {shown} failed: {err}");
        return ExitCode::FAILURE;
    }
    let after = match applied(&url).await {
        Ok(v) => v,
        Err(err) => {
            errln!("phantom migrate: cannot read the applied migrations of {shown}: {err}");
            return ExitCode::FAILURE;
        }
    };

    let new: Vec<String> = after
        .iter()
        .filter(|v| !before.contains(v))
        .map(i64::to_string)
        .collect();
    let version = after.last().copied().unwrap_or_default();
    if new.is_empty() {
        outln!("phantom migrate: {shown}: up to date at version {version}");
    } else {
        outln!(
            "phantom migrate: {shown}: applied {} migration(s) ({}); now at version {version}",
            new.len(),
            new.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// The URL [`Database::open`] connects to: `DATABASE_URL`, or the embedded SQLite file (whose
/// directory it has created by the time this is used).
fn url(config: &StorageConfig) -> String {
    if config.database_url.is_empty() {
        format!(
            "sqlite://{}?mode=rwc",
            config.data_dir.join("phantom.db").display()
        )
    } else {
        config.database_url.clone()
    }
}

/// Versions of the migrations applied to the database at `url`, in order.
async fn applied(url: &str) -> Result<Vec<i64>, StoreError> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    // What the migrator does first anyway; on a new database the table does not exist yet.
    conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
    let applied = conn.list_applied_migrations(MIGRATIONS_TABLE).await?;
    conn.close().await?;
    Ok(applied.into_iter().map(|m| m.version).collect())
}

/// Whether waiting can cure `err`: the server is unreachable or not accepting connections yet.
fn is_transient(err: &StoreError) -> bool {
    match err {
        StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
        // PostgreSQL's cannot_connect_now: starting up, shutting down, or in recovery.
        StoreError::Database(sqlx::Error::Database(db)) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}
