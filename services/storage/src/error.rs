//! Why a storage operation failed.

/// Why a storage operation failed. Callers treat every variant as internal; the distinction
/// serves logs and health checks.
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

impl From<StoreError> for phantom_layers::Error {
    fn from(err: StoreError) -> Self {
        let category = match &err {
            StoreError::DataDir { .. } | StoreError::DataFile { .. } => {
                phantom_layers::Category::FileSystem
            }
            _ => phantom_layers::Category::Database,
        };
        phantom_layers::Error::internal_in(category, err)
    }
}
