//! The notifier's repository: the notifications of each room, with gap-free sequences.
//!
//! [`NotificationRepository`] is what the notifier's database log ([`crate::log::StoreLog`])
//! stores; [`SqlNotificationRepository`] speaks it to the shared database (see
//! [`phantom_storage::Database`]). The tables (`notifications`, `room_sequences`) and their
//! migrations (`services/notifier/migrations`) are the notifier's.
//!
//! Every method takes the tenant (or works across tenants by design, said so) and every query
//! filters on it: a record of another tenant is indistinguishable from a missing one.

mod sql;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_kit::time::timestamp;
use phantom_proto::pb;
use phantom_storage::StoreError;
use serde::{Deserialize, Serialize};

pub use sql::SqlNotificationRepository;

phantom_storage::migrator! {
    /// The migrations the notifier applies before it uses the database. Numbered
    /// 202611290300-202611290399 (see [`phantom_storage::Database::migrate`]).
    pub fn migrator
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Owner.
    pub tenant: Tenant,
    /// Room.
    pub room: String,
    /// Position in the room; assigned when it is stored
    /// ([`NotificationRepository::append_notifications`]).
    pub sequence: u64,
    /// UUIDv7.
    pub id: String,
    /// A `pb::Priority` value.
    pub priority: i32,
    /// Event type.
    pub kind: String,
    /// Payload.
    pub payload: String,
    /// Accepted at.
    pub created_at: i64,
    /// A `pb::Severity` value, for notifications about a finding (0 otherwise).
    pub severity: i32,
}

impl NotificationRecord {
    /// Memory a notification takes once read: its fields and its text. Pages of a room's log
    /// are bounded by it ([`NotificationRepository::notifications_after`] computes the same sum in SQL).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.tenant.as_str().len()
            + self.room.len()
            + self.id.len()
            + self.kind.len()
            + self.payload.len()
    }
}

impl From<NotificationRecord> for pb::Notification {
    fn from(r: NotificationRecord) -> Self {
        pb::Notification {
            room: r.room,
            priority: r.priority,
            r#type: r.kind,
            payload: r.payload,
            sequence: r.sequence,
            id: r.id,
            created_at: Some(timestamp(r.created_at)),
            severity: r.severity,
            // What a publisher sent, not part of what is stored or delivered.
            idempotency_key: String::new(),
        }
    }
}

/// A notification to store, and the idempotency key its publisher gave, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The notification (its `sequence` is assigned when it is stored).
    pub record: NotificationRecord,
    /// Stored at most once per room with this key: a retried Publish gives one notification.
    pub key: Option<String>,
}

/// What the notifier stores: notifications, numbered per room.
#[async_trait]
pub trait NotificationRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `batch` in one transaction: all of it or, on error, none of it. Each notification
    /// takes the next sequence of its room in the order of the batch, except one whose key its
    /// room already has (from an earlier batch or this one): that one stores nothing and
    /// returns the notification stored with the key (with the fields it was stored with, or,
    /// if retention removed it, its sequence and the new one's fields). Returns one
    /// `(notification, stored now)` per entry, in the batch's order.
    ///
    /// Rooms are locked in one order (tenant, room) whatever the batch's order, each room's
    /// counter before its keys, so batches committed at once by several replicas never wait
    /// on each other in a cycle.
    async fn append_notifications(
        &self,
        batch: &[NewNotification],
    ) -> Result<Vec<(NotificationRecord, bool)>, StoreError>;

    /// Stores a notification, assigning the next sequence number of its room (a batch of one).
    async fn append_notification(
        &self,
        notification: &NotificationRecord,
    ) -> Result<NotificationRecord, StoreError> {
        let batch = [NewNotification {
            record: notification.clone(),
            key: None,
        }];
        let mut stored = self.append_notifications(&batch).await?;
        Ok(stored.remove(0).0)
    }

    /// Stores a notification unless one of its room was stored with the same idempotency
    /// `key`, in which case nothing is stored and that one is returned (as
    /// [`NotificationRepository::append_notifications`] says). The flag says whether it was
    /// stored now.
    async fn append_notification_once(
        &self,
        notification: &NotificationRecord,
        key: &str,
    ) -> Result<(NotificationRecord, bool), StoreError> {
        let batch = [NewNotification {
            record: notification.clone(),
            key: Some(key.to_owned()),
        }];
        Ok(self.append_notifications(&batch).await?.remove(0))
    }

    /// Deletes notifications created before `older_than`, and all but the last
    /// `keep_per_room` of each room. Returns how many were deleted. Sequences are not reused:
    /// a room's counter stays where it is.
    async fn prune_notifications(
        &self,
        older_than: i64,
        keep_per_room: u64,
    ) -> Result<u64, StoreError>;

    /// The last sequence given in a room (0 before its first notification).
    async fn latest_notification_sequence(
        &self,
        tenant: &Tenant,
        room: &str,
    ) -> Result<u64, StoreError>;

    /// Notifications of one room with a sequence above `after`, in order: at most `limit`,
    /// whose [`NotificationRecord::footprint`]s add up to at most `max_bytes` (the first is
    /// always returned, however large).
    async fn notifications_after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        limit: u32,
        max_bytes: u64,
    ) -> Result<Vec<NotificationRecord>, StoreError>;
}
