//! Why a storage operation failed.

/// Why a storage operation failed. What the caller is told follows from what the failure
/// says about the store, not from the variant ([`StoreError::class`]): a store that is away
/// or full is UNAVAILABLE with `RetryInfo`, a collision is ALREADY_EXISTS or ABORTED, and
/// only what no retry can fix (a corrupt row, a failed migration, a query the database
/// refuses) is INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (corrupt row, or written by a newer version).
    #[error("corrupt stored value in {column}: {message}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded database's file could not be created or made private.
    #[error("cannot create or protect database file {path}: {source}")]
    DataFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a storage failure says about the store: the one classification every service's
/// errors go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The database cannot be reached or is not answering now (pool timeout, connection
    /// refused or reset, failover, shutdown, a busy or locked SQLite file): retry soon.
    Unavailable,
    /// The database's disk is full: writes fail until space is freed; reads still work.
    Full,
    /// A unique value is already taken.
    Duplicate,
    /// The database aborted the transaction to keep transactions serializable (or to break
    /// a deadlock): running it again may succeed.
    Aborted,
    /// Anything no retry fixes: a bug, a corrupt row, a failed migration.
    Bug,
}

/// How long a caller should wait before retrying against a database that is away.
pub const RETRY_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a caller should wait before retrying a write on a full disk.
pub const RETRY_FULL: std::time::Duration = std::time::Duration::from_secs(5);

impl StoreError {
    /// What this failure says about the store.
    pub fn class(&self) -> Class {
        match self {
            Self::Database(err) => class_of(err),
            Self::DataDir { source, .. } | Self::DataFile { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Class::Full,
                _ => Class::Bug,
            },
            Self::Migrate(_) | Self::Corrupt { .. } => Class::Bug,
        }
    }
}

fn class_of(err: &sqlx::Error) -> Class {
    use sqlx::error::ErrorKind;
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => Class::Unavailable,
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Class::Full,
            _ => Class::Unavailable,
        },
        sqlx::Error::Database(db) => {
            match db.kind() {
                ErrorKind::UniqueViolation => return Class::Duplicate,
                ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation => return Class::Bug,
                _ => {}
            }
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The primary result code is the low byte of an extended one.
                let code = db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map_or(0, |c| c & 0xff);
                return match code {
                    // SQLITE_FULL
                    13 => Class::Full,
                    // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN,
                    // SQLITE_READONLY (a file made read-only under us)
                    5 | 6 | 10 | 14 | 8 => Class::Unavailable,
                    _ => Class::Bug,
                };
            }
            match db.code().as_deref() {
                // disk_full
                Some("53100") => Class::Full,
                // serialization_failure, deadlock_detected
                Some("40001" | "40P01") => Class::Aborted,
                // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
                // read_only_sql_transaction (a replica after failover), out of memory
                Some("57P01" | "57P02" | "57P03" | "53300" | "25006" | "53200") => {
                    Class::Unavailable
                }
                // connection_exception (class 08)
                Some(code) if code.starts_with("08") => Class::Unavailable,
                _ => Class::Bug,
            }
        }
        _ => Class::Bug,
    }
}

impl From<StoreError> for phantom_layers::Error {
    fn from(err: StoreError) -> Self {
        match err.class() {
            Class::Unavailable => {
                tracing::debug!(error = %err, "Database unavailable");
                phantom_layers::Error::Unavailable {
                    message: "the database is unavailable; retry".to_owned(),
                    retry_after: Some(RETRY_UNAVAILABLE),
                }
            }
            Class::Full => {
                tracing::debug!(error = %err, "Database disk full");
                phantom_layers::Error::Unavailable {
                    message: "the database's disk is full: writes are refused until space is freed"
                        .to_owned(),
                    retry_after: Some(RETRY_FULL),
                }
            }
            Class::Duplicate => phantom_layers::Error::Conflict {
                reason: "ALREADY_EXISTS",
                message: "a record with the same key already exists".to_owned(),
                retryable: false,
            },
            Class::Aborted => phantom_layers::Error::Conflict {
                reason: "SERIALIZATION_FAILURE",
                message: "the write collided with a concurrent one; retry".to_owned(),
                retryable: true,
            },
            Class::Bug => {
                let category = match &err {
                    StoreError::DataDir { .. } | StoreError::DataFile { .. } => {
                        phantom_layers::Category::FileSystem
                    }
                    _ => phantom_layers::Category::Database,
                };
                phantom_layers::Error::internal_in(category, err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SQLite file: a taken key is a duplicate, a file that cannot grow is full (what
    /// `max_page_count` makes of it), and the message says so.
    #[tokio::test]
    async fn sqlite_failures_are_told_apart_on_a_real_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::Database::open_url(&url, 1, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let pool = db.pool();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a', 'x')")
            .execute(pool)
            .await
            .unwrap();
        let taken = sqlx::query("INSERT INTO t VALUES ('a', 'y')")
            .execute(pool)
            .await
            .unwrap_err();
        let taken = phantom_layers::Error::from(StoreError::Database(taken));
        assert_eq!(taken.code(), tonic::Code::AlreadyExists);

        sqlx::query("PRAGMA max_page_count = 4")
            .execute(pool)
            .await
            .unwrap();
        let mut full = None;
        for i in 0..1000 {
            let row = sqlx::query("INSERT INTO t VALUES ($1, $2)")
                .bind(format!("k{i}"))
                .bind("v".repeat(4000))
                .execute(pool)
                .await;
            if let Err(err) = row {
                full = Some(StoreError::Database(err));
                break;
            }
        }
        let full = full.expect("the file stops growing");
        assert_eq!(full.class(), Class::Full, "{full}");
        let status = phantom_layers::Error::from(full);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.to_string().contains("disk is full"));
        // Reads still work.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(n >= 1);
    }

    #[test]
    fn a_store_that_is_away_is_unavailable_with_retry_info_and_a_bug_is_internal() {
        let away = phantom_layers::Error::from(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(away.code(), tonic::Code::Unavailable);
        assert!(away.retryable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            StoreError::Database(sqlx::Error::Io(reset)).class(),
            Class::Unavailable
        );
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let full = phantom_layers::Error::from(StoreError::Database(sqlx::Error::Io(full)));
        assert_eq!(full.code(), tonic::Code::Unavailable);
        assert!(full.to_string().contains("disk is full"));
        let corrupt = StoreError::Corrupt {
            column: "scans.state",
            message: "99".into(),
        };
        assert_eq!(
            phantom_layers::Error::from(corrupt).code(),
            tonic::Code::Internal
        );
    }
}
