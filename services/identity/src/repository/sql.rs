//! [`KeyRepository`] in SQL, one text for SQLite and PostgreSQL (see
//! [`phantom_storage::database`]).

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_layers::auth::Scopes;
use phantom_storage::{Database, StoreError};
use sqlx::{Row, any::AnyRow};

use super::{KeyInfo, KeyRecord, KeyRepository};

/// The SQL implementation of [`KeyRepository`].
#[derive(Debug, Clone)]
pub struct SqlKeyRepository {
    db: Database,
}

impl SqlKeyRepository {
    /// The repository over `db`, whose schema [`super::migrator`] brought up to date.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// `SELECT <every key column> FROM api_keys <rest>`, as one `&'static str` (sqlx takes only
/// static SQL without an explicit `AssertSqlSafe`).
macro_rules! select_keys {
    ($rest:literal) => {
        concat!(
            "SELECT id, tenant, scopes, name, hash, created_at, expires_at, last_used_at, \
             revoked_at FROM api_keys ",
            $rest
        )
    };
}

fn info_of(row: &AnyRow) -> Result<KeyInfo, StoreError> {
    let tenant: String = row.try_get("tenant")?;
    let tenant = Tenant::try_from(tenant).map_err(|e| StoreError::Corrupt {
        column: "api_keys.tenant",
        message: e.to_string(),
    })?;
    let scopes: String = row.try_get("scopes")?;
    let scopes = Scopes::parse_list(&scopes).map_err(|e| StoreError::Corrupt {
        column: "api_keys.scopes",
        message: e.to_string(),
    })?;
    Ok(KeyInfo {
        id: row.try_get("id")?,
        tenant,
        scopes,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn record_of(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    let hash: String = row.try_get("hash")?;
    Ok(KeyRecord {
        info: info_of(row)?,
        hash: hex::decode(hash).map_err(|e| StoreError::Corrupt {
            column: "api_keys.hash",
            message: e.to_string(),
        })?,
    })
}

#[async_trait]
impl KeyRepository for SqlKeyRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "insert_key", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "insert_key"))]
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let k = &key.info;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, scopes, name, hash, created_at, expires_at, \
             last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(k.id.clone())
        .bind(k.tenant.to_string())
        .bind(k.scopes.to_string())
        .bind(k.name.clone())
        .bind(hex::encode(&key.hash))
        .bind(k.created_at)
        .bind(k.expires_at)
        .bind(k.last_used_at)
        .bind(k.revoked_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "find_key", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "find_key"))]
    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(select_keys!("WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(record_of).transpose()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list_keys", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "list_keys"))]
    async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query(select_keys!("WHERE tenant = $1 ORDER BY created_at, id"))
                    .bind(t.to_string())
                    .fetch_all(self.db.pool())
                    .await?
            }
            None => {
                sqlx::query(select_keys!("ORDER BY created_at, id"))
                    .fetch_all(self.db.pool())
                    .await?
            }
        };
        rows.iter().map(info_of).collect()
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "revoke_key", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "revoke_key"))]
    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id.to_owned())
                .bind(at)
                .execute(self.db.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "touch_key", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "touch_key"))]
    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id.to_owned())
        .bind(at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}
