//! Decoding helpers the repositories share: the databases' common types (BIGINT, TEXT) to
//! and from ours.

use sqlx::{Row, any::AnyRow};

use crate::StoreError;

/// A non-negative BIGINT column.
pub fn u64_of(row: &AnyRow, col: &'static str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        column: col,
        message: format!("negative value {v}"),
    })
}

/// A TEXT column holding JSON.
pub fn json_of<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &'static str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        column: col,
        message: e.to_string(),
    })
}

/// A count or size as a BIGINT (saturating: no stored count comes near `i64::MAX`).
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whether `err` is a unique-constraint violation (both databases report it alike).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
