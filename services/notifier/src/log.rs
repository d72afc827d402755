//! Where notifications are kept: Redis Streams when `REDIS_URL` is set, the database otherwise.
//!
//! Either way a notification is stored, with its room's next sequence number, before
//! `Publish` answers; replays read it back by sequence; retention bounds each room by count
//! and age. Notifications are appended in batches ([`NotificationLog::append_batch`]), each
//! atomic: the writer ([`crate::writer`]) commits what is waiting, most urgent first, as one
//! transaction (one script in Redis).
//!
//! In Redis, a room is a stream whose entry ids are the sequence numbers (`<seq>-0`), so a
//! replay after `n` is one `XRANGE (n+1)-0 +`. The sequence comes from a counter key kept
//! apart from the stream, so trimming never makes a number come back. Appending a batch (for
//! each notification: check its publish key, count the sequence, add the entry, cap the
//! stream, index the room) is one Lua script: nothing interleaves with it, and one round
//! trip. Unlike a transaction, a script that fails midway keeps what it wrote before the
//! failure. Only an `XADD` can fail after a write, when a room's counter was lost apart from
//! its stream (evicted: the notifier's Redis must not evict keys); the batch's publishers are
//! then answered UNAVAILABLE, as after a timeout, and a retry with its idempotency key
//! answers what was stored. (The per-notification script this replaced kept its `INCR` in
//! that case the same way.)
//!
//! A replay reads a page at a time, bounded in bytes as well as in count ([`Page`]): a
//! subscriber that stops reading holds at most one page, whatever the room holds.
//!
//! # Epochs
//! Redis may lose its data (restarted without persistence, failed over to an empty replica):
//! its counters then start again at 1, and a subscriber resuming "after 599" would silently
//! skip the first 599 notifications of the new life. So the log has an epoch, a random id
//! kept in Redis beside the counters and created with the first append (or read) that finds
//! none: a reset loses it with everything else, and the next one is new. Subscribers are told
//! the epoch their positions belong to and send it back when they resume; a stale one is
//! refused (LOG_RESET), never served from the wrong place.
//!
//! Live streams are told too. An append reads the epoch in the same script that counts the
//! sequence (no extra round trip), and live delivery carries it, to this replica's
//! subscribers and, in the fan-out message, to the other replicas' ([`crate::fanout`]). A
//! subscriber remembers the epoch it was subscribed in; a live notification of another epoch
//! is not delivered (its sequence would pass for one of the old epoch, and be dropped as a
//! duplicate or move the client's resume position into the wrong life): what was queued
//! before it is, then the stream ends with the same LOG_RESET, and the client subscribes
//! again from the start of the new epoch. A fan-out message without an epoch (from a replica
//! of an older version) is not checked; the database log's epoch never changes
//! ([`DATABASE_EPOCH`]). The stream ends at the first notification of the new epoch in one of
//! its rooms, not at the reset itself: a room nobody publishes into stays quiet until someone
//! does, and a replay (or a gap fill) that reads the emptied store in that window may pass
//! what the new epoch holds so far for the old one's, until that notification ends the
//! stream. (A failover to a replica that lagged keeps the epoch and loses the last writes:
//! that case is not detected.)

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::repository::{NewNotification, NotificationRecord, NotificationRepository};
use async_trait::async_trait;
use fred::prelude::*;
use phantom_domain::Tenant;
use phantom_layers::Error;

/// How much one read of the log may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many notifications.
    pub items: u32,
    /// Whose [`NotificationRecord::footprint`]s add up to at most this, except that the first
    /// notification is always returned (a notification larger than a page still gets through).
    pub bytes: usize,
}

/// A notification as the log stored it, and the epoch its sequence belongs to: what live
/// delivery passes on (to this replica's subscribers and to the other replicas), so a
/// subscriber following another epoch learns of the reset instead of taking the new epoch's
/// sequences for ones it was given (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The notification, with its sequence.
    pub record: NotificationRecord,
    /// The epoch it was appended in (read in the same step as its sequence was counted).
    pub epoch: String,
}

/// The log of notifications.
#[async_trait]
pub trait NotificationLog: Send + Sync + std::fmt::Debug + 'static {
    /// `"database"` or `"redis"`.
    fn backend(&self) -> &'static str;
    /// Stores `batch` in one step that no other write interleaves with: each notification with
    /// the next sequence of its room, in the batch's order, except one whose idempotency key
    /// its room already has (within [`KEY_RETENTION`] at least, and from earlier in the batch
    /// too): that one stores nothing and returns the notification stored with the key.
    /// Returns, per entry and in the batch's order, the notification as stored, with its
    /// epoch, and whether it was stored now: only then is it delivered. On error nothing of
    /// the batch is stored (in Redis, with one exception: see the [module docs](self)).
    async fn append_batch(&self, batch: &[NewNotification]) -> Result<Vec<(Stored, bool)>, Error>;
    /// Stores `n` with the next sequence of its room; returns it as stored, with its epoch.
    async fn append(&self, n: &NotificationRecord) -> Result<Stored, Error> {
        let batch = [NewNotification {
            record: n.clone(),
            key: None,
        }];
        Ok(self.append_batch(&batch).await?.remove(0).0)
    }
    /// Stores `n` unless a notification of its room was stored with idempotency `key`; then
    /// returns that one and stores nothing. The flag says whether it was stored now.
    async fn append_once(
        &self,
        n: &NotificationRecord,
        key: &str,
    ) -> Result<(Stored, bool), Error> {
        let batch = [NewNotification {
            record: n.clone(),
            key: Some(key.to_owned()),
        }];
        Ok(self.append_batch(&batch).await?.remove(0))
    }
    /// The notifications of a room after `after`, in order, at most a `page` of them. An empty
    /// page: there are no more.
    async fn after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        page: Page,
    ) -> Result<Vec<NotificationRecord>, Error>;
    /// Removes notifications created before `older_than` (microseconds) and all but the
    /// last `keep_per_room` of each room. Returns how many.
    async fn prune(&self, older_than: i64, keep_per_room: u64) -> Result<u64, Error>;
    /// The last sequence given in a room (0 before its first notification).
    async fn latest(&self, tenant: &Tenant, room: &str) -> Result<u64, Error>;
    /// The life of the log its sequences belong to: a new one when the log lost its data
    /// and its sequences started again (see the [module docs](self)).
    async fn epoch(&self) -> Result<String, Error>;
}

/// The epoch of the database log: its counters live with its notifications, so they never
/// start again while the notifications are kept.
pub const DATABASE_EPOCH: &str = "database";

/// The database as the log.
#[derive(Debug, Clone)]
pub struct StoreLog(pub Arc<dyn NotificationRepository>);

#[async_trait]
impl NotificationLog for StoreLog {
    fn backend(&self) -> &'static str {
        "database"
    }

    async fn append_batch(&self, batch: &[NewNotification]) -> Result<Vec<(Stored, bool)>, Error> {
        let stored = self.0.append_notifications(batch).await?;
        Ok(stored
            .into_iter()
            .map(|(record, fresh)| {
                let epoch = DATABASE_EPOCH.to_owned();
                (Stored { record, epoch }, fresh)
            })
            .collect())
    }

    async fn epoch(&self) -> Result<String, Error> {
        Ok(DATABASE_EPOCH.to_owned())
    }

    async fn after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        page: Page,
    ) -> Result<Vec<NotificationRecord>, Error> {
        // The query stops at the page's byte budget itself (a running sum of the footprints).
        let bytes = u64::try_from(page.bytes).unwrap_or(u64::MAX);
        Ok(self
            .0
            .notifications_after(tenant, room, after, page.items.max(1), bytes)
            .await?)
    }

    async fn prune(&self, older_than: i64, keep_per_room: u64) -> Result<u64, Error> {
        Ok(self
            .0
            .prune_notifications(older_than, keep_per_room)
            .await?)
    }

    async fn latest(&self, tenant: &Tenant, room: &str) -> Result<u64, Error> {
        Ok(self.0.latest_notification_sequence(tenant, room).await?)
    }
}

/// Redis Streams as the log.
#[derive(Clone)]
pub struct RedisLog {
    client: Client,
    max_len: u64,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// How long a publish key is remembered in Redis (the database keeps them as long as the
/// notifications): longer than any retry of a Publish.
pub const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// KEYS: epoch, rooms index, then three per notification: its stream, its room's sequence
/// counter, and the key of its publish key (its stream's when it has none). ARGV: max length,
/// a publish key's lifetime (seconds), a new epoch (taken if the log has none: it lost its
/// data, or is new), then three per notification: created_at, record JSON, `1` if it has a
/// publish key. Returns `{epoch, {stored now, sequence}...}`, one pair per notification, in
/// order. The epoch comes back with the sequences, in the same round trip and the same atomic
/// step, so live delivery knows which life they belong to. What a failure midway keeps: see
/// the [module docs](self).
const APPEND_BATCH_LUA: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[1], epoch)
end
local out = {epoch}
for i = 0, (#KEYS - 2) / 3 - 1 do
  local stream, counter, key = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  local keyed = ARGV[6 + 3 * i] == '1'
  local prior = keyed and redis.call('GET', key)
  if prior then
    out[#out + 1] = {0, tonumber(prior)}
  else
    local seq = redis.call('INCR', counter)
    redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], seq .. '-0', 't', ARGV[4 + 3 * i], 'n', ARGV[5 + 3 * i])
    redis.call('SADD', KEYS[2], stream)
    if keyed then redis.call('SET', key, seq, 'EX', ARGV[2]) end
    out[#out + 1] = {1, seq}
  end
end
return out
";

/// Every room's stream, for retention.
const ROOMS: &str = "phantom:notify:rooms";

/// The key of the log's epoch.
const EPOCH: &str = "phantom:notify:epoch";

/// KEYS: epoch. ARGV: a new epoch. Returns the log's epoch, taking the new one if it has none.
const EPOCH_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// KEYS: stream. ARGV: first id, most entries, most bytes, bytes counted per entry besides its
/// JSON. Reads a page of the stream in Redis, so that no more than the page crosses the network
/// or is decoded. A record's JSON is at least as long as its text, so the page's
/// [`NotificationRecord::footprint`]s fit in the budget too.
const PAGE_LUA: &str = r"
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local budget = tonumber(ARGV[3])
local out = {}
local used = 0
for _, e in ipairs(entries) do
  local size = tonumber(ARGV[4])
  for i = 1, #e[2], 2 do
    if e[2][i] == 'n' then size = size + #e[2][i + 1] end
  end
  if #out > 0 and used + size > budget then break end
  used = used + size
  out[#out + 1] = e
end
return out
";

/// KEYS: stream. ARGV: cutoff (microseconds). Deletes the expired head of the stream.
const PRUNE_AGE_LUA: &str = r"
local removed = 0
while true do
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
  if #head == 0 then return removed end
  local expired = {}
  for _, e in ipairs(head) do
    if tonumber(e[2][2]) >= tonumber(ARGV[1]) then break end
    expired[#expired + 1] = e[1]
  end
  if #expired == 0 then return removed end
  removed = removed + redis.call('XDEL', KEYS[1], unpack(expired))
  if #expired < #head then return removed end
end
";

/// A fresh epoch id.
fn new_epoch() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn stream_key(tenant: &Tenant, room: &str) -> String {
    // Length-prefixed: no tenant and room pair can produce another pair's key.
    format!("phantom:notify:{}:{tenant}:{room}", tenant.as_str().len())
}

fn unavailable(err: &fred::error::Error) -> Error {
    Error::Unavailable {
        message: format!("notification log (Redis) failed: {err}"),
        retry_after: Some(Duration::from_secs(1)),
    }
}

impl RedisLog {
    /// A log in the Redis at `url`, keeping at most about `max_len` notifications per room.
    /// Connects (and reconnects) in the background; calls fail while Redis is away.
    pub fn connect(url: &str, max_len: u64) -> Result<Self, fred::error::Error> {
        let client = phantom_layers::redis::connect(url, Duration::from_secs(3))?;
        Ok(Self {
            client,
            max_len: max_len.max(1),
        })
    }

    /// The notification of `n`'s room at `sequence`, as stored (unless trimmed since: then
    /// `n`'s fields with that sequence): what a Publish retried with its key answers.
    async fn stored(
        &self,
        n: &NotificationRecord,
        sequence: u64,
    ) -> Result<NotificationRecord, Error> {
        let page = Page {
            items: 1,
            bytes: usize::MAX,
        };
        Ok(self
            .after(&n.tenant, &n.room, sequence.saturating_sub(1), page)
            .await?
            .into_iter()
            .find(|r| r.sequence == sequence)
            .unwrap_or_else(|| NotificationRecord {
                sequence,
                ..n.clone()
            }))
    }

    /// Waits until Redis answers (or `timeout`).
    pub async fn ready(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.client.wait_for_connect())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl NotificationLog for RedisLog {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn append_batch(&self, batch: &[NewNotification]) -> Result<Vec<(Stored, bool)>, Error> {
        let mut keys = Vec::with_capacity(2 + 3 * batch.len());
        keys.extend([EPOCH.to_owned(), ROOMS.to_owned()]);
        let mut args = Vec::with_capacity(3 + 3 * batch.len());
        args.extend([
            self.max_len.to_string(),
            KEY_RETENTION.as_secs().to_string(),
            new_epoch(),
        ]);
        for NewNotification { record: n, key } in batch {
            let stream = stream_key(&n.tenant, &n.room);
            let counter = format!("{stream}:seq");
            // Length-prefixed like the stream's: no key can pass for another's.
            let published = key.as_ref().map_or_else(
                || stream.clone(),
                |key| format!("{stream}:key:{}:{key}", key.len()),
            );
            keys.extend([stream, counter, published]);
            args.push(n.created_at.to_string());
            args.push(serde_json::to_string(n).map_err(Error::internal)?);
            args.push(if key.is_some() { "1" } else { "0" }.to_owned());
        }
        let reply: Vec<fred::types::Value> = self
            .client
            .eval(APPEND_BATCH_LUA, keys, args)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut reply = reply.into_iter();
        let epoch: String = reply
            .next()
            .and_then(|e| e.convert().ok())
            .ok_or_else(|| Error::internal("the Redis log answered an append without its epoch"))?;
        let mut out = Vec::with_capacity(batch.len());
        for (entry, result) in batch.iter().zip(reply) {
            let (fresh, seq): (u8, u64) = result.convert().map_err(|e| unavailable(&e))?;
            let record = if fresh == 1 {
                NotificationRecord {
                    sequence: seq,
                    ..entry.record.clone()
                }
            } else {
                self.stored(&entry.record, seq).await?
            };
            let epoch = epoch.clone();
            out.push((Stored { record, epoch }, fresh == 1));
        }
        if out.len() != batch.len() {
            return Err(Error::internal(
                "the Redis log answered an append for fewer notifications than it was given",
            ));
        }
        Ok(out)
    }

    async fn after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        page: Page,
    ) -> Result<Vec<NotificationRecord>, Error> {
        let entries: Vec<(String, HashMap<String, String>)> = self
            .client
            .eval(
                PAGE_LUA,
                vec![stream_key(tenant, room)],
                vec![
                    format!("{}-0", after.saturating_add(1)),
                    page.items.max(1).to_string(),
                    page.bytes.to_string(),
                    std::mem::size_of::<NotificationRecord>().to_string(),
                ],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let sequence = id.split_once('-').and_then(|(s, _)| s.parse::<u64>().ok());
            let record = fields
                .get("n")
                .and_then(|json| serde_json::from_str::<NotificationRecord>(json).ok());
            match (sequence, record) {
                (Some(sequence), Some(record)) => {
                    out.push(NotificationRecord { sequence, ..record })
                }
                _ => tracing::error!(id, room, "Unreadable notification in the Redis log skipped"),
            }
        }
        Ok(out)
    }

    async fn latest(&self, tenant: &Tenant, room: &str) -> Result<u64, Error> {
        let seq: Option<u64> = self
            .client
            .get(format!("{}:seq", stream_key(tenant, room)))
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(seq.unwrap_or(0))
    }

    async fn epoch(&self) -> Result<String, Error> {
        self.client
            .eval(EPOCH_LUA, vec![EPOCH.to_owned()], vec![new_epoch()])
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn prune(&self, older_than: i64, keep_per_room: u64) -> Result<u64, Error> {
        let rooms: Vec<String> = self
            .client
            .smembers(ROOMS)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut removed = 0u64;
        for key in rooms {
            let by_age: u64 = self
                .client
                .eval(
                    PRUNE_AGE_LUA,
                    vec![key.clone()],
                    vec![older_than.to_string()],
                )
                .await
                .map_err(|e| unavailable(&e))?;
            let by_count: u64 = self
                .client
                .xtrim(
                    &key,
                    ("MAXLEN", i64::try_from(keep_per_room).unwrap_or(i64::MAX)),
                )
                .await
                .map_err(|e| unavailable(&e))?;
            removed += by_age + by_count;
        }
        Ok(removed)
    }
}
