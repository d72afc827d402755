//! [`NotificationRepository`] in SQL, one text for SQLite and PostgreSQL (see
//! [`phantom_storage::database`]).

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_storage::{
    Database, StoreError,
    row::{to_i64, u64_of},
};
use sqlx::{Row, any::AnyRow};

use super::{NotificationRecord, NotificationRepository};

/// The SQL implementation of [`NotificationRepository`].
#[derive(Debug, Clone)]
pub struct SqlNotificationRepository {
    db: Database,
}

impl SqlNotificationRepository {
    /// The repository over `db`, whose schema [`super::migrator`] brought up to date.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The part of a [`NotificationRecord::footprint`] that is not its text.
const FIXED_BYTES: u64 = std::mem::size_of::<NotificationRecord>() as u64;

/// The bytes of a notification's text: its footprint without [`FIXED_BYTES`] (stored as
/// `text_bytes`, so that replay pages are sized without reading payloads).
fn text_bytes(n: &NotificationRecord) -> u64 {
    (n.footprint() as u64).saturating_sub(FIXED_BYTES)
}

/// The `tenant` column (stored only after the edge validated it; checked again as any
/// stored value is).
fn tenant_in(row: &AnyRow) -> Result<Tenant, StoreError> {
    let text: String = row.try_get("tenant")?;
    Tenant::try_from(text).map_err(|e| StoreError::Corrupt {
        column: "notifications.tenant",
        message: e.to_string(),
    })
}

fn notification_of(row: &AnyRow) -> Result<NotificationRecord, StoreError> {
    let priority: i64 = row.try_get("priority")?;
    Ok(NotificationRecord {
        tenant: tenant_in(row)?,
        room: row.try_get("room")?,
        sequence: u64_of(row, "sequence")?,
        id: row.try_get("id")?,
        priority: i32::try_from(priority).unwrap_or(0),
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
        severity: i32::try_from(row.try_get::<i64, _>("severity")?).unwrap_or(0),
    })
}

/// Takes the next sequence of `n`'s room and stores `n` with it, within `tx`.
async fn insert_notification(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    n: &NotificationRecord,
) -> Result<NotificationRecord, StoreError> {
    // The upsert takes a row lock on the room's counter (PostgreSQL) or the database write
    // lock (SQLite), so concurrent publishers to one room get distinct, gap-free numbers.
    let row = sqlx::query(
        "INSERT INTO room_sequences (tenant, room, sequence) VALUES ($1, $2, 1) \
         ON CONFLICT (tenant, room) DO UPDATE SET sequence = room_sequences.sequence + 1 \
         RETURNING sequence",
    )
    .bind(n.tenant.to_string())
    .bind(n.room.clone())
    .fetch_one(&mut **tx)
    .await?;
    let sequence = u64_of(&row, "sequence")?;
    sqlx::query(
        "INSERT INTO notifications (tenant, room, sequence, id, priority, kind, payload, \
         created_at, severity, text_bytes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(n.tenant.to_string())
    .bind(n.room.clone())
    .bind(to_i64(sequence))
    .bind(n.id.clone())
    .bind(i64::from(n.priority))
    .bind(n.kind.clone())
    .bind(n.payload.clone())
    .bind(n.created_at)
    .bind(i64::from(n.severity))
    .bind(to_i64(text_bytes(n)))
    .execute(&mut **tx)
    .await?;
    Ok(NotificationRecord {
        sequence,
        ..n.clone()
    })
}

impl SqlNotificationRepository {
    /// The notification `n`'s room stored with `key`, if one was.
    async fn published_with(
        &self,
        n: &NotificationRecord,
        key: &str,
    ) -> Result<Option<NotificationRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT sequence FROM publish_keys WHERE tenant = $1 AND room = $2 AND key = $3",
        )
        .bind(n.tenant.to_string())
        .bind(n.room.clone())
        .bind(key.to_owned())
        .fetch_optional(self.db.pool())
        .await?
        else {
            return Ok(None);
        };
        let sequence = u64_of(&row, "sequence")?;
        let stored = sqlx::query(
            "SELECT tenant, room, sequence, id, priority, kind, payload, created_at, severity \
             FROM notifications WHERE tenant = $1 AND room = $2 AND sequence = $3",
        )
        .bind(n.tenant.to_string())
        .bind(n.room.clone())
        .bind(to_i64(sequence))
        .fetch_optional(self.db.pool())
        .await?;
        Ok(Some(match stored {
            Some(row) => notification_of(&row)?,
            None => NotificationRecord {
                sequence,
                ..n.clone()
            },
        }))
    }
}

#[async_trait]
impl NotificationRepository for SqlNotificationRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "prune_notifications", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "prune_notifications"))]
    async fn latest_notification_sequence(
        &self,
        tenant: &Tenant,
        room: &str,
    ) -> Result<u64, StoreError> {
        let row =
            sqlx::query("SELECT sequence FROM room_sequences WHERE tenant = $1 AND room = $2")
                .bind(tenant.to_string())
                .bind(room.to_owned())
                .fetch_optional(self.db.pool())
                .await?;
        row.as_ref().map_or(Ok(0), |r| u64_of(r, "sequence"))
    }

    async fn prune_notifications(
        &self,
        older_than: i64,
        keep_per_room: u64,
    ) -> Result<u64, StoreError> {
        let by_age = sqlx::query("DELETE FROM notifications WHERE created_at < $1")
            .bind(older_than)
            .execute(self.db.pool())
            .await?;
        // A key is kept as long as a notification could be: by age.
        sqlx::query("DELETE FROM publish_keys WHERE created_at < $1")
            .bind(older_than)
            .execute(self.db.pool())
            .await?;
        let by_count = sqlx::query(
            "DELETE FROM notifications WHERE sequence <= \
             (SELECT r.sequence FROM room_sequences r \
              WHERE r.tenant = notifications.tenant AND r.room = notifications.room) - $1",
        )
        .bind(to_i64(keep_per_room))
        .execute(self.db.pool())
        .await?;
        Ok(by_age.rows_affected() + by_count.rows_affected())
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "append_notification", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "append_notification"))]
    async fn append_notification(
        &self,
        n: &NotificationRecord,
    ) -> Result<NotificationRecord, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let stored = insert_notification(&mut tx, n).await?;
        tx.commit().await?;
        Ok(stored)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "append_notification_once", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "append_notification_once"))]
    async fn append_notification_once(
        &self,
        n: &NotificationRecord,
        key: &str,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        // Two attempts: a concurrent publish with the same key may win the race between our
        // look-up and our insert; its key row then makes ours fail, and the second look-up
        // finds it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(first) = self.published_with(n, key).await? {
                return Ok((first, false));
            }
            let mut tx = self.db.pool().begin().await?;
            let stored = insert_notification(&mut tx, n).await?;
            let keyed = sqlx::query(
                "INSERT INTO publish_keys (tenant, room, key, sequence, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(n.tenant.to_string())
            .bind(n.room.clone())
            .bind(key.to_owned())
            .bind(to_i64(stored.sequence))
            .bind(n.created_at)
            .execute(&mut *tx)
            .await;
            match keyed {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok((stored, true));
                }
                Err(sqlx::Error::Database(db))
                    if attempt < 2 && db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                {
                    // Rolled back on drop: the sequence this attempt took is given back.
                    drop(tx);
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "notifications_after", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "notifications_after"))]
    async fn notifications_after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        // The page ends where the running sum of the records' footprints (their stored
        // `text_bytes` and the fixed part) passes the budget, decided over the first `limit`
        // rows' sizes alone: no payload is read that the page does not return. The first row
        // always comes.
        let rows = sqlx::query(
            "SELECT tenant, room, sequence, id, priority, kind, payload, created_at, severity \
             FROM notifications \
             WHERE tenant = $1 AND room = $2 AND sequence > $3 AND sequence <= ( \
               SELECT MAX(sequence) FROM ( \
                 SELECT sequence, ROW_NUMBER() OVER (ORDER BY sequence) AS n, \
                        SUM(text_bytes + $6) OVER (ORDER BY sequence) AS upto \
                 FROM (SELECT sequence, text_bytes FROM notifications \
                       WHERE tenant = $1 AND room = $2 AND sequence > $3 \
                       ORDER BY sequence LIMIT $4) AS firsts \
               ) AS sized WHERE n = 1 OR upto <= $5) \
             ORDER BY sequence",
        )
        .bind(tenant.to_string())
        .bind(room.to_owned())
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .bind(to_i64(max_bytes))
        .bind(to_i64(FIXED_BYTES))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(notification_of).collect()
    }
}
