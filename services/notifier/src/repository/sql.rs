//! [`NotificationRepository`] in SQL, one text for SQLite and PostgreSQL (see
//! [`phantom_storage::database`]).

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_storage::{
    Database, StoreError,
    row::{to_i64, u64_of},
};
use sqlx::{Row, any::AnyRow};

use super::{NewNotification, NotificationRecord, NotificationRepository};

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

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Reserves `count` sequences of `tenant`'s `room` within `tx`; returns the last sequence
/// given before them (0 in a new room). The upsert takes a row lock on the room's counter
/// (PostgreSQL) or the database write lock (SQLite) until `tx` ends, so concurrent writers to
/// one room get distinct, gap-free numbers. What is not used of the reservation (keys already
/// taken) is given back by [`release_unused`] before the commit.
async fn reserve(
    tx: &mut Tx<'_>,
    tenant: &Tenant,
    room: &str,
    count: u64,
) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO room_sequences (tenant, room, sequence) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant, room) DO UPDATE SET sequence = room_sequences.sequence + $3 \
         RETURNING sequence",
    )
    .bind(tenant.to_string())
    .bind(room.to_owned())
    .bind(to_i64(count))
    .fetch_one(&mut **tx)
    .await?;
    Ok(u64_of(&row, "sequence")?.saturating_sub(count))
}

/// Sets the counter of `tenant`'s `room` back to `last`, the last sequence the transaction
/// used of those it reserved.
async fn release_unused(
    tx: &mut Tx<'_>,
    tenant: &Tenant,
    room: &str,
    last: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE room_sequences SET sequence = $3 WHERE tenant = $1 AND room = $2")
        .bind(tenant.to_string())
        .bind(room.to_owned())
        .bind(to_i64(last))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes `key` in `n`'s room for `sequence`, within `tx`: false when the room already has the
/// key (then nothing is written). A transaction of another writer that took the same key and
/// has not ended is waited for (PostgreSQL), then counts as having it if it committed.
async fn claim_key(
    tx: &mut Tx<'_>,
    n: &NotificationRecord,
    key: &str,
    sequence: u64,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO publish_keys (tenant, room, key, sequence, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, room, key) DO NOTHING \
         RETURNING sequence",
    )
    .bind(n.tenant.to_string())
    .bind(n.room.clone())
    .bind(key.to_owned())
    .bind(to_i64(sequence))
    .bind(n.created_at)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(claimed.is_some())
}

/// The notification that `n`'s room stored with `key`, read within `tx` (so one stored earlier
/// in the same batch is found too): with the fields it was stored with, or, if retention
/// removed it, its sequence and `n`'s fields.
async fn published_with(
    tx: &mut Tx<'_>,
    n: &NotificationRecord,
    key: &str,
) -> Result<NotificationRecord, StoreError> {
    let row = sqlx::query(
        "SELECT sequence FROM publish_keys WHERE tenant = $1 AND room = $2 AND key = $3",
    )
    .bind(n.tenant.to_string())
    .bind(n.room.clone())
    .bind(key.to_owned())
    .fetch_one(&mut **tx)
    .await?;
    let sequence = u64_of(&row, "sequence")?;
    let stored = sqlx::query(
        "SELECT tenant, room, sequence, id, priority, kind, payload, created_at, severity \
         FROM notifications WHERE tenant = $1 AND room = $2 AND sequence = $3",
    )
    .bind(n.tenant.to_string())
    .bind(n.room.clone())
    .bind(to_i64(sequence))
    .fetch_optional(&mut **tx)
    .await?;
    match stored {
        Some(row) => notification_of(&row),
        None => Ok(NotificationRecord {
            sequence,
            ..n.clone()
        }),
    }
}

/// Stores `n` with `sequence`, within `tx`.
async fn insert_notification(
    tx: &mut Tx<'_>,
    n: &NotificationRecord,
    sequence: u64,
) -> Result<NotificationRecord, StoreError> {
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

/// Stores the entries `group` of `batch` (all of one room, in the batch's order) within `tx`,
/// each into its place in `out`.
async fn append_room(
    tx: &mut Tx<'_>,
    batch: &[NewNotification],
    group: &[usize],
    out: &mut [Option<(NotificationRecord, bool)>],
) -> Result<(), StoreError> {
    let first = &batch[group[0]].record;
    // One statement reserves the group's numbers and locks the room before any of its keys is
    // looked at: every writer takes a room's counter before its keys, the one order in which
    // two writers of a room never wait on each other in a cycle.
    let reserved = group.len() as u64;
    let before = reserve(tx, &first.tenant, &first.room, reserved).await?;
    let mut last = before;
    for &i in group {
        let NewNotification { record, key } = &batch[i];
        if let Some(key) = key
            && !claim_key(tx, record, key, last + 1).await?
        {
            out[i] = Some((published_with(tx, record, key).await?, false));
            continue;
        }
        last += 1;
        out[i] = Some((insert_notification(tx, record, last).await?, true));
    }
    if last < before + reserved {
        release_unused(tx, &first.tenant, &first.room, last).await?;
    }
    Ok(())
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

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "append_notifications", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "append_notifications", batch = batch.len()))]
    async fn append_notifications(
        &self,
        batch: &[NewNotification],
    ) -> Result<Vec<(NotificationRecord, bool)>, StoreError> {
        // Room by room in (tenant, room) order, whatever the batch's order, so that writers
        // committing at once (replicas sharing PostgreSQL) take rooms in the same order; the
        // sort is stable, so each room's entries keep the batch's order, the order of their
        // sequences.
        let room_of = |i: &usize| {
            let r = &batch[*i].record;
            (r.tenant.as_str(), r.room.as_str())
        };
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|a, b| room_of(a).cmp(&room_of(b)));
        let mut out = vec![None; batch.len()];
        let mut tx = self.db.pool().begin().await?;
        for group in order.chunk_by(|a, b| room_of(a) == room_of(b)) {
            append_room(&mut tx, batch, group, &mut out).await?;
        }
        tx.commit().await?;
        Ok(out.into_iter().flatten().collect())
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
