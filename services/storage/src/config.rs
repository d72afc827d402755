//! The `[storage]` section of the configuration.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Default directory of the embedded database.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `postgres://…` or `sqlite://…` (`DATABASE_URL`); empty means SQLite in `data_dir`.
    pub database_url: String,
    /// Directory of the embedded SQLite database (`PHANTOM_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection, connecting included: while the
    /// database is down, how long a call takes to answer UNAVAILABLE. Keep it under the
    /// callers' deadlines, or they time out instead of being told to retry.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(1),
        }
    }
}
