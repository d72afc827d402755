//! The database: a connection (opened on first use, retried on the next round), a timed
//! `SELECT 1`, and the pool's size, idle and in-use connections. An exhausted pool degrades
//! it.

use std::time::{Duration, Instant};

use phantom_kit::config::{StorageConfig, redact};
use tokio::sync::OnceCell;

use super::{Check, CheckError, Found};

/// The check of the database.
pub struct DatabaseCheck {
    config: Box<StorageConfig>,
    store: OnceCell<phantom_storage::Database>,
}

impl std::fmt::Debug for DatabaseCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCheck").finish_non_exhaustive()
    }
}

impl DatabaseCheck {
    /// The check of the database `config` describes; nothing is opened until it runs.
    pub fn new(config: &StorageConfig) -> Self {
        Self {
            config: Box::new(config.clone()),
            store: OnceCell::new(),
        }
    }
}

/// A driver's error as a report may quote it: without the password of a URL it quotes.
fn failed(e: impl std::fmt::Display) -> CheckError {
    CheckError::Failed {
        reason: redact(&e.to_string()),
    }
}

#[tonic::async_trait]
impl Check for DatabaseCheck {
    async fn check(&self, _timeout: Duration) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let store = self
            .store
            .get_or_try_init(|| phantom_storage::Database::open(&self.config))
            .await
            .map_err(failed)?;
        let started = Instant::now();
        store.ping().await.map_err(failed)?;
        found.details.insert(
            "query_ms".into(),
            format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        );
        let pool = store.pool_stats();
        for (k, v) in [
            ("pool_size", pool.size),
            ("pool_idle", pool.idle),
            ("pool_in_use", pool.in_use),
            ("pool_max", pool.max),
        ] {
            found.details.insert(k.into(), v.to_string());
        }
        if pool.max > 0 && pool.in_use >= pool.max {
            found.degraded = Some(format!(
                "pool exhausted: {} of {} in use",
                pool.in_use, pool.max
            ));
        }
        Ok(found)
    }
}
