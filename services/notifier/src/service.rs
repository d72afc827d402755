//! The `phantom.v1.Notifier` gRPC service: durable publish, resumable subscribe.
//!
//! Publish stores first and fans out second (to this replica's subscribers, then to the other
//! replicas through Redis), so a notification a client saw acknowledged is never lost. A
//! subscriber joins the live feed *before* replaying what it missed; its cursor drops what it
//! was already given (by sequence): nothing falls in the gap between replay and live, and
//! nothing arrives twice. Live delivery goes through the subscriber's priority queue
//! ([`crate::hub`]).

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use phantom_layers::{Error, FieldViolation};
use phantom_proto::pb::{self, notifier_server::Notifier};
use phantom_runtime::{
    CancellationToken, Ready,
    server::tenant_of,
    storage::NotificationRecord,
    time::{now_micros, timestamp_now},
};
use tokio::sync::mpsc;

use crate::{
    fanout::RedisFanout,
    hub::{Filter, Hub, Subscriber},
    log::NotificationLog,
};
use tonic::{Request, Response, Status};

/// Longest room name.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest type name.
pub const MAX_TYPE_LEN: usize = 64;
/// Largest payload.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most rooms one subscription may follow.
pub const MAX_ROOMS_PER_SUBSCRIPTION: usize = 64;
/// Notifications read from the store per replay query.
const REPLAY_PAGE: u32 = 500;
/// Items buffered between a subscriber's queue and its transport: small, so a slow
/// subscriber's backlog waits in the priority queue, where urgency decides.
const TRANSPORT_BUFFER: usize = 8;

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Durable log of notifications.
    pub log: Arc<dyn NotificationLog>,
    /// Fan-out to the other replicas, when Redis is configured.
    pub fanout: Option<RedisFanout>,
    /// Outbound webhooks.
    pub webhooks: crate::webhook::Webhooks,
}

/// How subscriptions are served.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Queue capacity per subscriber.
    pub queue_capacity: usize,
    /// Heartbeat period on idle streams.
    pub heartbeat: Duration,
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct NotifierService {
    core: Ready<Core>,
    hub: Arc<Hub>,
    delivery: Delivery,
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
            hub,
            delivery,
            shutdown,
        }
    }
}

fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.:".contains(&b))
}

fn validate_publish(n: &pb::Notification) -> Result<(), Error> {
    let mut v = Vec::new();
    if !valid_room(&n.room) {
        v.push(FieldViolation::new(
            "room",
            format!("must be 1-{MAX_ROOM_LEN} characters of [A-Za-z0-9/_.:-]"),
        ));
    }
    if n.r#type.is_empty() || n.r#type.len() > MAX_TYPE_LEN {
        v.push(FieldViolation::new(
            "type",
            format!("must be 1-{MAX_TYPE_LEN} characters"),
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
    if v.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(v))
    }
}

pub(crate) fn validate_subscribe(
    tenant: String,
    req: pb::SubscribeRequest,
) -> Result<(Filter, HashMap<String, u64>), Error> {
    let mut v = Vec::new();
    if req.rooms.is_empty() {
        v.push(FieldViolation::new(
            "rooms",
            "at least one room is required",
        ));
    }
    if req.rooms.len() > MAX_ROOMS_PER_SUBSCRIPTION {
        v.push(FieldViolation::new(
            "rooms",
            format!("at most {MAX_ROOMS_PER_SUBSCRIPTION} rooms"),
        ));
    }
    for (i, room) in req.rooms.iter().enumerate() {
        if !valid_room(room) {
            v.push(FieldViolation::new(
                format!("rooms[{i}]"),
                format!("{room:?} is not a valid room name"),
            ));
        }
    }
    for room in req.after_sequence.keys() {
        if !req.rooms.contains(room) {
            v.push(FieldViolation::new(
                format!("after_sequence[{room}]"),
                "names a room that is not in `rooms`",
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
    if !v.is_empty() {
        return Err(Error::InvalidArgument(v));
    }
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
    ))
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// A subscriber's feed: notifications and heartbeats, then an error status when the feed
/// ends for a reason the subscriber should know (shutdown, storage failure).
pub(crate) type Feed = mpsc::Receiver<Result<pb::SubscribeResponse, Status>>;

impl NotifierService {
    /// Starts feeding a validated subscription: replay, then live. Shared by the gRPC
    /// `Subscribe` and the WebSocket gateway.
    pub(crate) async fn feed(
        &self,
        filter: Filter,
        mut after: HashMap<String, u64>,
    ) -> Result<Feed, Status> {
        let log = self.core.get()?.log.clone();
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
            self.delivery.queue_capacity,
        ));
        // Join the live feed first, so nothing published during the replay is missed.
        let registration = self.hub.register(&subscriber);
        let (tx, rx) = mpsc::channel(TRANSPORT_BUFFER);
        tokio::spawn(deliver(
            log,
            subscriber,
            registration,
            after,
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
        let n = request.into_inner();
        validate_publish(&n)?;
        let core = self.core.get()?;
        let priority = if n.priority == pb::Priority::Unspecified as i32 {
            pb::Priority::Normal as i32
        } else {
            n.priority
        };
        let stored = core
            .log
            .append(&NotificationRecord {
                tenant,
                room: n.room,
                sequence: 0,
                id: uuid::Uuid::now_v7().to_string(),
                priority,
                kind: n.r#type,
                payload: n.payload,
                created_at: now_micros(),
                severity: n.severity,
            })
            .await?;
        let shared = Arc::new(stored.clone());
        self.hub.fan_out(&shared);
        core.webhooks.offer(&shared);
        if let Some(fanout) = &core.fanout {
            fanout.publish(&stored).await;
        }
        Ok(Response::new(stored.into()))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let tenant = tenant_of(&request)?;
        let (filter, after) = validate_subscribe(tenant, request.into_inner())?;
        let rx = self.feed(filter, after).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
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

/// Sends the stored notifications of `room` after `from` (and up to `until`) that the
/// subscriber was not given yet. False: stop.
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
        let page = match log.after(&sub.filter.tenant, room, from, REPLAY_PAGE).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, room, "Replay failed");
                let status = Status::unavailable("replay from storage failed; resubscribe");
                let _ = tx.send(Err(status)).await;
                return false;
            }
        };
        let done = page.len() < REPLAY_PAGE as usize;
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
        if done {
            return true;
        }
    }
}

/// Feeds one subscriber: replay, then its live queue (most urgent first), filling gaps from
/// the store, with heartbeats, until it goes away, overflows, or the server shuts down.
async fn deliver(
    log: Arc<dyn NotificationLog>,
    sub: Arc<Subscriber>,
    _registration: crate::hub::Registration,
    after: HashMap<String, u64>,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    let started = pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Subscribed(pb::Subscribed {
            after_sequence: after.clone(),
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
