//! The `phantom.v1.Notifier` gRPC service: durable publish, resumable subscribe.
//!
//! Publish stores first and fans out second (to this replica's subscribers, then to the other
//! replicas through Redis), so a notification a client saw acknowledged is never lost. It
//! stores through the replica's writer ([`crate::writer`]), which commits publishes in
//! batches, most urgent first, and fans each out to this replica's subscribers in commit
//! order. A
//! subscriber joins the live feed *before* replaying what it missed; its cursor drops what it
//! was already given (by sequence): nothing falls in the gap between replay and live, and
//! nothing arrives twice. Live delivery goes through the subscriber's priority queue
//! ([`crate::hub`]).
//!
//! Positions are in one epoch of the log ([`crate::log`]): a resume from another epoch is
//! refused, and a live stream that meets a notification of another epoch ends, both with
//! FAILED_PRECONDITION and the reason LOG_RESET.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures::Stream;
use phantom_domain::Tenant;
use phantom_kit::{
    CancellationToken, Ready,
    server::{remote_addr_of, tenant_of},
    time::{now_micros, timestamp_now},
};
use phantom_layers::{Error, FieldViolation, auth::Principal, status::echo};
use phantom_proto::pb::{self, notifier_server::Notifier};
use tokio::sync::mpsc;

use crate::{
    fanout::RedisFanout,
    hub::{Filter, Hub, Subscriber},
    limits::{Admission, Caller, Subscriptions},
    log::{NotificationLog, Page, Stored},
    repository::{NewNotification, NotificationRecord},
    writer::{Committed, Writer},
};
use tonic::{Request, Response, Status};

/// Longest epoch a subscriber may send back.
const MAX_EPOCH_LEN: usize = 64;

/// Longest idempotency key of a Publish.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Longest room name.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest type name.
pub const MAX_TYPE_LEN: usize = 64;
/// Largest payload.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most rooms one subscription may follow (and so most `after_sequence` entries, whose keys
/// must be among its rooms).
pub const MAX_ROOMS_PER_SUBSCRIPTION: usize = 64;
/// Most types one subscription may filter on.
pub const MAX_TYPES_PER_SUBSCRIPTION: usize = 32;
/// Longest tenant id ([`phantom_layers::Tenant`]).
const MAX_TENANT_LEN: usize = 63;
/// Length of a notification id (a UUID).
const ID_LEN: usize = 36;
/// The largest [`NotificationRecord::footprint`] a notification accepted by `Publish` can have.
pub const MAX_RECORD_BYTES: usize = std::mem::size_of::<NotificationRecord>()
    + MAX_TENANT_LEN
    + MAX_ROOM_LEN
    + ID_LEN
    + MAX_TYPE_LEN
    + MAX_PAYLOAD_BYTES;
/// What a replay reads from the store at a time: a stream that stops reading holds one page.
pub const REPLAY_PAGE: Page = Page {
    items: 500,
    bytes: 256 * 1024,
};
/// Items buffered between a subscriber's queue and its transport: small, so a slow
/// subscriber's backlog waits in the priority queue, where urgency decides, and is bounded
/// in bytes there.
const TRANSPORT_BUFFER: usize = 2;
/// What the transport holds beyond [`TRANSPORT_BUFFER`]: the message being encoded and the
/// HTTP/2 data waiting for the peer's flow-control window (one message or one 32 KiB chunk).
const TRANSPORT_SLACK: usize = 128 * 1024;
/// Most bytes a subscription holds besides its queue: a replay page and its transport.
pub const SUBSCRIPTION_BYTES: usize =
    REPLAY_PAGE.bytes + TRANSPORT_BUFFER * MAX_RECORD_BYTES + TRANSPORT_SLACK;

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Durable log of notifications, for replays.
    pub log: Arc<dyn NotificationLog>,
    /// Writes publishes to `log`, most urgent first, and delivers them live.
    pub writer: Writer,
    /// Fan-out to the other replicas, when Redis is configured.
    pub fanout: Option<RedisFanout>,
}

/// The live delivery of a notification just stored, run by the writer in commit order
/// ([`crate::writer`]): to this replica's subscribers, with the epoch it was appended in (so
/// subscribers of an older one learn that the log was reset), and to the webhooks.
pub fn live_delivery(hub: Arc<Hub>, webhooks: crate::webhook::Webhooks) -> Committed {
    Box::new(move |stored: &Stored| {
        let shared = Arc::new(stored.record.clone());
        hub.fan_out(&shared, &stored.epoch);
        webhooks.offer(&shared);
    })
}

/// How subscriptions are served.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Queue capacity per subscriber.
    pub queue_capacity: usize,
    /// Bytes queued at most per subscriber.
    pub queue_bytes: usize,
    /// Heartbeat period on idle streams.
    pub heartbeat: Duration,
    /// Most subscriptions open at once on this replica.
    pub max_subscriptions: usize,
    /// Most subscriptions open at once for one caller.
    pub max_subscriptions_per_caller: usize,
}

impl Delivery {
    /// The delivery `config` asks for; a cap it leaves unset is what fits in `memory`
    /// ([`crate::memory`]).
    pub fn from_config(config: &crate::settings::NotifierConfig, memory: u64) -> Self {
        let each = SUBSCRIPTION_BYTES + config.queue_bytes;
        Self {
            queue_capacity: config.queue_capacity,
            queue_bytes: config.queue_bytes,
            heartbeat: config.heartbeat,
            max_subscriptions: config
                .max_subscriptions
                .unwrap_or_else(|| crate::memory::fit(memory, each, 16, 10_000)),
            max_subscriptions_per_caller: config.max_subscriptions_per_caller,
        }
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct NotifierService {
    core: Ready<Core>,
    hub: Arc<Hub>,
    delivery: Delivery,
    subscriptions: Arc<Subscriptions>,
    shutdown: CancellationToken,
}

impl NotifierService {
    /// A service that serves `core` once it is set, delivering to the subscribers in `hub`;
    /// its streams end when `shutdown` fires.
    pub fn new(
        core: Ready<Core>,
        hub: Arc<Hub>,
        delivery: Delivery,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            core,
            subscriptions: Subscriptions::new(
                delivery.max_subscriptions,
                delivery.max_subscriptions_per_caller,
                &hub.registry,
            ),
            hub,
            delivery,
            shutdown,
        }
    }

    /// Subscriptions open now, and callers that have at least one.
    pub fn open_subscriptions(&self) -> (usize, usize) {
        self.subscriptions.open()
    }
}

const ROOM_RULE: &str = "1-128 characters of [A-Za-z0-9/_.:-]";
const TYPE_RULE: &str = "a lowercase token of 1-64 characters: [a-z0-9] then [a-z0-9._-]";

/// Whether `room` is one PHANTOM's services publish into: a scan's events (`scan/<id>`,
/// which webhooks sign and deliver, and whose watchers trust them) and `system`. Only a
/// service identity may publish there; users may publish into any other room of their
/// tenant.
fn is_system_room(room: &str) -> bool {
    room.starts_with("scan/") || room == "system" || room.starts_with("system/")
}

fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.:".contains(&b))
}

/// A notification type is a token (`scan.progress`, `finding`), never free text: clients
/// print it, and a type carrying terminal escapes would reach their users' terminals.
fn valid_type(kind: &str) -> bool {
    let bytes = kind.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TYPE_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn validate_publish(n: &pb::Notification) -> Result<(), Error> {
    let mut v = Vec::new();
    if !valid_room(&n.room) {
        v.push(FieldViolation::new(
            "room",
            format!("{} is not a room name: {ROOM_RULE}", echo(&n.room)),
        ));
    }
    if !valid_type(&n.r#type) {
        v.push(FieldViolation::new(
            "type",
            format!("{} is not a type: {TYPE_RULE}", echo(&n.r#type)),
        ));
    }
    if n.idempotency_key.len() > MAX_IDEMPOTENCY_KEY
        || n.idempotency_key.chars().any(char::is_control)
    {
        v.push(FieldViolation::new(
            "idempotency_key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY} printable characters"),
        ));
    }
    if n.payload.len() > MAX_PAYLOAD_BYTES {
        v.push(FieldViolation::new(
            "payload",
            format!(
                "{} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
                n.payload.len()
            ),
        ));
    }
    if pb::Priority::try_from(n.priority).is_err() {
        v.push(FieldViolation::new(
            "priority",
            format!("unknown priority {}", n.priority),
        ));
    }
    if pb::Severity::try_from(n.severity).is_err() {
        v.push(FieldViolation::new(
            "severity",
            format!("unknown severity {}", n.severity),
        ));
    }
    Error::unless_violated(v)
}

/// Checks a subscription and turns it into a filter and resume points. Sizes are checked
/// first, before anything is looked at one by one; then each check is linear in the request.
pub(crate) fn validate_subscribe(
    tenant: Tenant,
    req: pb::SubscribeRequest,
) -> Result<(Filter, HashMap<String, u64>, String), Error> {
    let too_many = |field: &str, n: usize, max: usize| {
        Err(Error::invalid(field, format!("{n} entries; at most {max}")))
    };
    if req.rooms.len() > MAX_ROOMS_PER_SUBSCRIPTION {
        return too_many("rooms", req.rooms.len(), MAX_ROOMS_PER_SUBSCRIPTION);
    }
    if req.after_sequence.len() > req.rooms.len() {
        // Its keys must be among the rooms: it cannot have more entries than there are rooms.
        return Err(Error::invalid(
            "after_sequence",
            format!(
                "{} entries for {} rooms: its keys must be among `rooms`",
                req.after_sequence.len(),
                req.rooms.len()
            ),
        ));
    }
    if req.types.len() > MAX_TYPES_PER_SUBSCRIPTION {
        return too_many("types", req.types.len(), MAX_TYPES_PER_SUBSCRIPTION);
    }
    let mut v = Vec::new();
    if req.rooms.is_empty() {
        v.push(FieldViolation::new(
            "rooms",
            "at least one room is required",
        ));
    }
    for (i, room) in req.rooms.iter().enumerate() {
        if !valid_room(room) {
            v.push(FieldViolation::new(
                format!("rooms[{i}]"),
                format!("{} is not a room name: {ROOM_RULE}", echo(room)),
            ));
        }
    }
    let rooms: HashSet<&str> = req.rooms.iter().map(String::as_str).collect();
    for room in req.after_sequence.keys() {
        if !rooms.contains(room.as_str()) {
            v.push(FieldViolation::new(
                "after_sequence",
                format!("{} is not one of `rooms`", echo(room)),
            ));
        }
    }
    for (i, kind) in req.types.iter().enumerate() {
        if !valid_type(kind) {
            v.push(FieldViolation::new(
                format!("types[{i}]"),
                format!("{} is not a type: {TYPE_RULE}", echo(kind)),
            ));
        }
    }
    if pb::Priority::try_from(req.min_priority).is_err() {
        v.push(FieldViolation::new(
            "min_priority",
            format!("unknown priority {}", req.min_priority),
        ));
    }
    if pb::Severity::try_from(req.min_severity).is_err() {
        v.push(FieldViolation::new(
            "min_severity",
            format!("unknown severity {}", req.min_severity),
        ));
    }
    if req.epoch.len() > MAX_EPOCH_LEN || req.epoch.chars().any(|c| !c.is_ascii_graphic()) {
        v.push(FieldViolation::new(
            "epoch",
            format!("is not an epoch: at most {MAX_EPOCH_LEN} visible ASCII characters"),
        ));
    }
    Error::unless_violated(v)?;
    let mut rooms = req.rooms;
    rooms.sort();
    rooms.dedup();
    Ok((
        Filter {
            tenant,
            rooms,
            min_priority: req.min_priority,
            types: req.types,
            min_severity: req.min_severity,
        },
        req.after_sequence,
        req.epoch,
    ))
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// A subscriber's feed: notifications and heartbeats, then an error status when the feed
/// ends for a reason the subscriber should know (shutdown, storage failure).
pub(crate) type Feed = mpsc::Receiver<Result<pb::SubscribeResponse, Status>>;

impl NotifierService {
    /// A place for one more subscription of `caller` ([`Subscriptions::admit`]).
    pub(crate) fn admit(&self, caller: Caller) -> Result<Admission, Error> {
        self.subscriptions.admit(caller)
    }

    /// Starts feeding a validated subscription, which holds `admission` for as long as it
    /// lasts: replay, then live. Shared by the gRPC `Subscribe` and the WebSocket gateway.
    ///
    /// `epoch` is the log's epoch `after` belongs to (empty: not checked); positions of an
    /// epoch the log no longer has are refused (LOG_RESET), never served from the wrong place.
    pub(crate) async fn feed(
        &self,
        filter: Filter,
        mut after: HashMap<String, u64>,
        epoch: &str,
        admission: Admission,
    ) -> Result<Feed, Status> {
        let log = self.core.get()?.log.clone();
        let current = log.epoch().await?;
        if !epoch.is_empty() && epoch != current && !after.is_empty() {
            return Err(log_reset(epoch, &current).into());
        }
        // A room followed live only starts at its current sequence: whatever comes after is
        // delivered, even a notification a more urgent one (or another replica's) overtook.
        for room in &filter.rooms {
            if !after.contains_key(room) {
                let latest = log.latest(&filter.tenant, room).await?;
                after.insert(room.clone(), latest);
            }
        }
        let subscriber = Arc::new(Subscriber::new(
            filter,
            &after,
            &current,
            self.delivery.queue_capacity,
            self.delivery.queue_bytes,
        ));
        // Join the live feed first, so nothing published during the replay is missed.
        let registration = self.hub.register(&subscriber);
        let (tx, rx) = mpsc::channel(TRANSPORT_BUFFER);
        let held = Held {
            _registration: registration,
            _admission: admission,
        };
        tokio::spawn(deliver(
            log,
            subscriber,
            held,
            (after, current),
            tx,
            self.delivery.heartbeat,
            self.shutdown.clone(),
        ));
        Ok(rx)
    }
}

#[tonic::async_trait]
impl Notifier for NotifierService {
    async fn publish(
        &self,
        request: Request<pb::Notification>,
    ) -> Result<Response<pb::Notification>, Status> {
        let tenant = tenant_of(&request)?;
        phantom_layers::auth::audit::target(&request, || {
            format!("room {}", echo(&request.get_ref().room))
        });
        if is_system_room(&request.get_ref().room)
            && request
                .extensions()
                .get::<Principal>()
                .is_some_and(|p| !p.is_service())
        {
            return Err(Error::PermissionDenied {
                reason: "SYSTEM_ROOM",
                message: "scan/… and system rooms take notifications from PHANTOM's services only"
                    .into(),
            }
            .into());
        }
        let n = request.into_inner();
        validate_publish(&n)?;
        let core = self.core.get()?;
        let priority = if n.priority == pb::Priority::Unspecified as i32 {
            pb::Priority::Normal as i32
        } else {
            n.priority
        };
        let record = NotificationRecord {
            tenant,
            room: n.room,
            sequence: 0,
            id: uuid::Uuid::now_v7().to_string(),
            priority,
            kind: n.r#type,
            payload: n.payload,
            created_at: now_micros(),
            severity: n.severity,
        };
        // A caller that stopped waiting gets no write it would retry blindly.
        if phantom_layers::request_id::current()
            .and_then(|c| c.deadline)
            .is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return Err(Error::Timeout {
                message: "the call's deadline passed before the notification was stored".into(),
            }
            .into());
        }
        let key = n.idempotency_key.trim();
        let entry = NewNotification {
            record,
            key: (!key.is_empty()).then(|| key.to_owned()),
        };
        // Delivered to this replica's subscribers by the writer, once stored.
        let (stored, fresh) = core.writer.append(entry).await?;
        // A retry that found its first Publish delivered nothing new. With the epoch it was
        // appended in: the other replicas' subscribers of an older one learn that the log
        // was reset.
        if fresh && let Some(fanout) = &core.fanout {
            fanout.publish(&stored).await;
        }
        Ok(Response::new(stored.record.into()))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let tenant = tenant_of(&request)?;
        let peer = remote_addr_of(&request).map(|a| a.ip());
        let (filter, after, epoch) = validate_subscribe(tenant, request.into_inner())?;
        // Before any work for it: a caller at its limit costs nothing more.
        let admission = self.admit(Caller::new(filter.tenant.clone(), peer))?;
        let rx = self.feed(filter, after, &epoch, admission).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The refusal of positions of `epoch` when the log is now in `current`: the log lost its data
/// and its sequences started again. The same for a resume and for a live stream, so a client
/// handles both alike (subscribe again, from sequence 0 of the new epoch).
fn log_reset(epoch: &str, current: &str) -> Error {
    Error::FailedPrecondition {
        reason: "LOG_RESET",
        message: format!(
            "the notification log lost its data since epoch {epoch} and its sequences \
             started again: subscribe again with epoch {current} from sequence 0"
        ),
    }
}

fn notification(n: NotificationRecord) -> pb::SubscribeResponse {
    pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Notification(n.into())),
    }
}

/// Sends `item` unless the subscriber is gone or the server shuts down first. False: stop.
async fn send(
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    item: Result<pb::SubscribeResponse, Status>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// What a subscription holds until its delivery ends, however it ends: its place in the hub
/// and its place among the subscriptions.
#[derive(Debug)]
struct Held {
    _registration: crate::hub::Registration,
    _admission: Admission,
}

/// Sends the stored notifications of `room` after `from` (and before `until`) that the
/// subscriber was not given yet, a [`REPLAY_PAGE`] at a time. False: stop.
async fn replay_room(
    log: &dyn NotificationLog,
    sub: &Subscriber,
    room: &str,
    mut from: u64,
    until: Option<u64>,
    tx: &mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        // Once the log was reset under the subscriber, the store holds another epoch.
        if until.is_some_and(|u| sub.covered(room, u)) || sub.reset().is_some() {
            return true;
        }
        let page = match log.after(&sub.filter.tenant, room, from, REPLAY_PAGE).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, room, "Replay failed");
                let status = Status::unavailable("replay from storage failed; resubscribe");
                let _ = tx.send(Err(status)).await;
                return false;
            }
        };
        if page.is_empty() {
            return true;
        }
        for n in page {
            if until.is_some_and(|u| n.sequence >= u) {
                return true;
            }
            from = n.sequence;
            if sub.claim(&n)
                && sub.filter.matches(&n)
                && !send(tx, Ok(notification(n)), shutdown).await
            {
                return false;
            }
        }
    }
}

/// Feeds one subscriber: replay, then its live queue (most urgent first), filling gaps from
/// the store, with heartbeats, until it goes away, overflows, or the server shuts down.
async fn deliver(
    log: Arc<dyn NotificationLog>,
    sub: Arc<Subscriber>,
    _held: Held,
    (after, epoch): (HashMap<String, u64>, String),
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    let started = pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Subscribed(pb::Subscribed {
            after_sequence: after.clone(),
            epoch,
        })),
    };
    if !send(&tx, Ok(started), &shutdown).await {
        return;
    }
    for room in &sub.filter.rooms {
        if let Some(&from) = after.get(room)
            && !replay_room(&*log, &sub, room, from, None, &tx, &shutdown).await
        {
            return;
        }
    }
    sub.replay_done();
    let mut idle_since = tokio::time::Instant::now();
    loop {
        for (room, from, until) in sub.take_gaps() {
            tracing::debug!(
                room,
                from,
                until,
                "Filling a gap in the live feed from storage"
            );
            if !replay_room(&*log, &sub, &room, from, Some(until), &tx, &shutdown).await {
                return;
            }
            // Read through: what the store did not have is gone, not to be fetched again.
            sub.settle(&room, until - 1);
        }
        if sub.overflowed() {
            let status = Status::resource_exhausted(
                "subscriber too slow: a HIGH or CRITICAL notification could not be queued; \
                 resubscribe with after_sequence to resume",
            );
            let _ = tx.send(Err(status)).await;
            return;
        }
        if let Some(n) = sub.pop() {
            if !send(&tx, Ok(notification((*n).clone())), &shutdown).await {
                return;
            }
            idle_since = tokio::time::Instant::now();
            continue;
        }
        // After what was queued (all of the subscriber's epoch): the new epoch's sequences
        // are not positions in the old one, so the client must subscribe again.
        if let Some(current) = sub.reset() {
            // Debug: a reset ends every live subscription of the replica at once.
            tracing::debug!(
                epoch = sub.epoch(),
                current,
                "The notification log was reset under a live subscription; ending it"
            );
            let _ = tx.send(Err(log_reset(sub.epoch(), &current).into())).await;
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("server shutting down; resubscribe with after_sequence"))).await;
                return;
            }
            () = tx.closed() => return,
            () = sub.wake.notified() => {}
            () = tokio::time::sleep_until(idle_since + heartbeat) => {
                let (dropped_low, dropped_normal) = sub.dropped();
                let beat = pb::SubscribeResponse {
                    event: Some(pb::subscribe_response::Event::Heartbeat(pb::Heartbeat {
                        time: Some(timestamp_now()),
                        dropped_low,
                        dropped_normal,
                    })),
                };
                if !send(&tx, Ok(beat), &shutdown).await {
                    return;
                }
                idle_since = tokio::time::Instant::now();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
