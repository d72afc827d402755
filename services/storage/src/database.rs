//! [`Database`]: the pool over sqlx's `Any` driver, SQLite or PostgreSQL, chosen by URL at
//! start-up; and the embedded database's file, private to the user running PHANTOM.
//!
//! Repositories write each query once, with `$n` placeholders (both databases accept them) and
//! only the types both share (BIGINT, DOUBLE PRECISION, TEXT); where the two differ (row locks)
//! they ask [`Database::dialect`].

use std::time::Duration;

use sqlx::{AnyPool, any::AnyPoolOptions, migrate::Migrator};

use crate::{StorageConfig, StoreError};

/// Which database a [`Database`] speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded database (a file under the data directory).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Dialect {
    /// Its name in health reports: "sqlite" or "postgres".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The database system, as OpenTelemetry names it (`db.system.name`).
    pub fn system(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}

/// A connection pool's state, for health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Connections open.
    pub size: u32,
    /// Of which idle.
    pub idle: u32,
    /// In use (`size - idle`).
    pub in_use: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// The database all services share: a connection pool and its dialect. Cheap to clone (the
/// pool is shared). Opening it touches no schema; each service applies its own migrations
/// with [`Database::migrate`].
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
}

impl Database {
    /// Opens the configured database (SQLite under `data_dir` when no URL is set) without
    /// touching its schema.
    pub async fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        Self::open_url(
            &Self::url(config)?,
            config.max_connections,
            config.acquire_timeout,
        )
        .await
    }

    /// The URL of the configured database: `DATABASE_URL`, or SQLite in the data directory
    /// (created if needed, private to the user running PHANTOM: see [`private_sqlite_file`]).
    fn url(config: &StorageConfig) -> Result<String, StoreError> {
        if !config.database_url.is_empty() {
            return Ok(config.database_url.clone());
        }
        let file = private_sqlite_file(&config.data_dir)?;
        Ok(format!("sqlite://{}?mode=rwc", file.display()))
    }

    /// Opens the database at `url` without touching its schema.
    pub async fn open_url(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        // sqlx's SQLite defaults give a 5 s busy timeout and foreign keys, but leave the
        // journal as SQLite's DELETE: WAL is asked for here. Readers then never block the
        // writer, and with `synchronous = NORMAL` a commit is one fsync of the log rather
        // than several (a committed transaction is still durable across a process crash; an
        // OS crash may lose the last ones, as with PostgreSQL's default of a WAL flush).
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout);
        if dialect == Dialect::Sqlite {
            // Each pooled connection keeps its own page cache (SQLite's default: 2 MB): a burst
            // of replays that opened every connection kept about 4 MiB each, 35 MiB of a
            // 256 MiB pod, long after it ended. A 1 MiB cache per connection, and connections
            // idle for 30 s closed, give that memory back.
            options = options
                .idle_timeout(SQLITE_IDLE_TIMEOUT)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        use sqlx::Executor as _;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA cache_size = -1024").await?;
                        Ok(())
                    })
                })
                // A connection goes back to the pool only with no transaction open, in
                // sqlx's view and in SQLite's. A write that failed on a full disk can leave
                // them apart (SQLite rolled the transaction back itself, or kept it while
                // sqlx's ROLLBACK failed); the next transaction on that connection then
                // nested inside the dead one as a SAVEPOINT, answered OK, and was lost at
                // exit with every write after it (24 acknowledged notifications once).
                // Such a connection is closed, which rolls back what it held.
                .after_release(|conn, _meta| {
                    Box::pin(async move {
                        use sqlx::{Connection as _, Executor as _};
                        // Runs whatever rollback the dropped transaction queued.
                        conn.execute("SELECT 1").await?;
                        if conn.is_in_transaction() {
                            return Ok(false);
                        }
                        // SQLite refuses BEGIN inside a transaction.
                        if conn.execute("BEGIN").await.is_err() {
                            return Ok(false);
                        }
                        conn.execute("ROLLBACK").await?;
                        Ok(true)
                    })
                });
        }
        let pool = options.connect(url).await?;
        Ok(Self { pool, dialect })
    }

    /// Applies the pending migrations of one service.
    ///
    /// Every service keeps its applied versions in sqlx's default `_sqlx_migrations` table of
    /// the one shared database, so `migrator` must tolerate versions it does not know (its
    /// `set_ignore_missing(true)`): the other services', and the versions 1-7 of the schema
    /// all services shared before each owned its tables. Services number their migrations
    /// in disjoint ranges, so none applies another's. sqlx's migration lock (PostgreSQL's
    /// advisory lock) still serializes services migrating at once.
    pub async fn migrate(&self, migrator: &'static Migrator) -> Result<(), StoreError> {
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool, for a repository's queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The database system, as OpenTelemetry names it (`db.system.name`).
    pub fn system(&self) -> &'static str {
        self.dialect.system()
    }

    /// Whether the database takes writes now: what readiness follows. On SQLite a tiny write
    /// (the header's `user_version`, set to what it is: a page rewritten, no table touched),
    /// because a full disk fails writes while reads go on; on PostgreSQL a trivial query (the
    /// server keeps its own disk).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "probe", otel.kind = "client", db.system.name = self.system(), db.operation.name = "probe"))]
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => {
                let mut conn = self.pool.acquire().await?;
                let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&mut *conn)
                    .await?;
                // An integer the database itself returned: nothing of a caller's is in it.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "PRAGMA user_version = {version}"
                )))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
            Dialect::Postgres => self.ping().await,
        }
    }

    /// Whether a new connection opens now, outside the pool: what tells a database that is
    /// down (refused, unreachable) from a pool that is only busy, when a query through the
    /// pool timed out.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "connect", otel.kind = "client", db.system.name = self.system(), db.operation.name = "connect"))]
    pub async fn reachable(&self) -> Result<(), StoreError> {
        use sqlx::Connection as _;
        let conn = sqlx::AnyConnection::connect_with(&self.pool.connect_options()).await?;
        conn.close().await?;
        Ok(())
    }

    /// Runs a trivial query.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "ping", otel.kind = "client", db.system.name = self.system(), db.operation.name = "ping"))]
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The connection pool's state.
    pub fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            size,
            idle,
            in_use: size.saturating_sub(idle),
            max: self.pool.options().get_max_connections(),
        }
    }
}

/// How long an idle SQLite connection (and its page cache) is kept.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The embedded database's file name in the data directory.
const SQLITE_FILE: &str = "phantom.db";

/// Files SQLite keeps beside the database (write-ahead log, shared memory, rollback journal).
const SQLITE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The embedded database in `dir`, made private to the user running PHANTOM whatever the
/// umask: the directory 0700 when created here, the database file created 0600 before sqlx
/// opens it (SQLite gives its `-wal` and `-shm` files the database's mode).
///
/// A database or companion file left readable by others (by an older version) is tightened
/// to 0600, and so is an existing directory that holds nothing but these files; a directory
/// that holds anything else (a home directory, `/tmp`) is not PHANTOM's to change, and is
/// only warned about.
fn private_sqlite_file(dir: &std::path::Path) -> Result<std::path::PathBuf, StoreError> {
    let dir_error = |source| StoreError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let file = dir.join(SQLITE_FILE);
    let file_error = |source| StoreError::DataFile {
        path: file.clone(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let existed = dir.is_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_error)?;
        if !existed {
            // The umask may have taken more than group and other bits away.
            set_mode(dir, 0o700).map_err(dir_error)?;
        } else {
            tighten_dir(dir).map_err(dir_error)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&file)
            .map_err(file_error)?;
        tighten(&file).map_err(file_error)?;
        for suffix in SQLITE_COMPANIONS {
            let companion = dir.join(format!("{SQLITE_FILE}{suffix}"));
            if companion.exists() {
                tighten(&companion).map_err(|source| StoreError::DataFile {
                    path: companion.clone(),
                    source,
                })?;
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    Ok(file)
}

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes a database file 0600 if it is not already, saying so.
#[cfg(unix)]
fn tighten(file: &std::path::Path) -> std::io::Result<()> {
    let mode = mode_of(file)?;
    if mode != 0o600 {
        set_mode(file, 0o600)?;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %file.display(),
                mode = format!("{mode:o}"),
                "Database file was open to other users; it is now 0600"
            );
        }
    }
    Ok(())
}

/// Makes an existing data directory 0700 if it holds only the database's files; warns if it
/// is open to others and holds anything else.
#[cfg(unix)]
fn tighten_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mode = mode_of(dir)?;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = std::fs::read_dir(dir)?.all(|entry| {
        entry.is_ok_and(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == SQLITE_FILE
                || SQLITE_COMPANIONS
                    .iter()
                    .any(|s| name.strip_prefix(SQLITE_FILE) == Some(s))
        })
    });
    if ours {
        match set_mode(dir, 0o700) {
            Ok(()) => tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "Data directory was open to other users; it is now 0700"
            ),
            // A volume mounted for a group (Kubernetes' fsGroup) belongs to root: not ours to
            // change, and the database files in it are private anyway.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "Data directory is open to other users and not ours to change: left as it is (the database files are 0600)"
            ),
            Err(e) => return Err(e),
        }
    } else {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{mode:o}"),
            "Data directory is open to other users and holds other files: left as it is (the database files are 0600)"
        );
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The mode of `path` in octal, as `ls` and `chmod` say it.
    fn mode(path: &std::path::Path) -> String {
        let mode = mode_of(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        format!("{mode:o}")
    }

    fn config(dir: &std::path::Path) -> StorageConfig {
        StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        }
    }

    #[tokio::test]
    async fn a_fresh_sqlite_store_is_private_to_its_user() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data").join("phantom");
        let store = Database::open(&config(&dir)).await.unwrap();
        // A write, so that the write-ahead log and its shared memory exist.
        store.ping().await.unwrap();
        sqlx::query("CREATE TABLE probe (x BIGINT NOT NULL)")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(mode(&dir), "700", "the data directory");
        assert_eq!(mode(&dir.join("phantom.db")), "600", "the database");
        for companion in ["phantom.db-wal", "phantom.db-shm"] {
            assert_eq!(mode(&dir.join(companion)), "600", "{companion}");
        }
    }

    #[tokio::test]
    async fn an_existing_database_open_to_others_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755).unwrap();
        for file in ["phantom.db", "phantom.db-wal"] {
            std::fs::write(dir.join(file), b"").unwrap();
            set_mode(&dir.join(file), 0o644).unwrap();
        }
        let store = Database::open(&config(&dir)).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(mode(&dir), "700");
        assert_eq!(mode(&dir.join("phantom.db")), "600");
        assert_eq!(mode(&dir.join("phantom.db-wal")), "600");
    }

    #[tokio::test]
    async fn a_shared_directory_keeps_its_mode_but_not_the_database() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        std::fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o755).unwrap();
        std::fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        let store = Database::open(&config(&dir)).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(mode(&dir), "755", "not PHANTOM's directory: left alone");
        assert_eq!(mode(&dir.join("phantom.db")), "600");
    }
}
