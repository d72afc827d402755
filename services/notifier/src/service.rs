//! The `phantom.v1.Notifier` gRPC service: durable publish, resumable subscribe.
//!
//! Publish stores first and fans out second, so a notification a client saw acknowledged is
//! never lost. A subscriber joins the live feed *before* replaying what it missed, then drops
//! live notifications it already replayed (by sequence): nothing falls in the gap between
//! replay and live, and nothing arrives twice. A subscriber that falls behind the live feed
//! catches up from the store the same way.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use phantom_layers::{Error, FieldViolation};
use phantom_proto::pb::{self, notifier_server::Notifier};
use phantom_runtime::{
    CancellationToken, Ready,
    server::tenant_of,
    storage::{NotificationRecord, Store},
    time::{now_micros, timestamp_now},
};
use tokio::sync::{broadcast, mpsc};
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
/// An idle stream gets a heartbeat this often.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// Live notifications buffered per process before slow subscribers must catch up from the store.
const HUB_CAPACITY: usize = 4096;

/// What the service needs once its dependencies are up.
#[derive(Debug)]
pub struct Core {
    /// Durable log of notifications.
    pub store: Arc<dyn Store>,
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct NotifierService {
    core: Ready<Core>,
    hub: broadcast::Sender<Arc<NotificationRecord>>,
    shutdown: CancellationToken,
}

impl NotifierService {
    /// A service that serves `core` once it is set; its streams end when `shutdown` fires.
    pub fn new(core: Ready<Core>, shutdown: CancellationToken) -> Self {
        Self {
            core,
            hub: broadcast::channel(HUB_CAPACITY).0,
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

/// What a subscription asked for.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    tenant: String,
    rooms: Vec<String>,
    min_priority: i32,
    types: Vec<String>,
}

impl Filter {
    fn matches(&self, n: &NotificationRecord) -> bool {
        n.tenant == self.tenant
            && self.rooms.contains(&n.room)
            && n.priority >= self.min_priority
            && (self.types.is_empty() || self.types.contains(&n.kind))
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
    pub(crate) fn feed(&self, filter: Filter, after: HashMap<String, u64>) -> Result<Feed, Status> {
        let store = self.core.get()?.store.clone();
        // Join the live feed first, so nothing published during the replay is missed.
        let live = self.hub.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(deliver(
            store,
            filter,
            after,
            live,
            tx,
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
            .store
            .append_notification(&NotificationRecord {
                tenant,
                room: n.room,
                sequence: 0,
                id: uuid::Uuid::now_v7().to_string(),
                priority,
                kind: n.r#type,
                payload: n.payload,
                created_at: now_micros(),
            })
            .await
            .map_err(Error::from)?;
        // No receiver is not an error: nobody is listening right now.
        let _ = self.hub.send(Arc::new(stored.clone()));
        Ok(Response::new(stored.into()))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let tenant = tenant_of(&request)?;
        let (filter, after) = validate_subscribe(tenant, request.into_inner())?;
        let store = self.core.get()?.store.clone();
        // Join the live feed first, so nothing published during the replay is missed.
        let live = self.hub.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(deliver(
            store,
            filter,
            after,
            live,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Feeds one subscriber: replay, then live, with heartbeats, until it goes away or the
/// server shuts down.
async fn deliver(
    store: Arc<dyn Store>,
    filter: Filter,
    after: HashMap<String, u64>,
    mut live: broadcast::Receiver<Arc<NotificationRecord>>,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    shutdown: CancellationToken,
) {
    // Last sequence delivered per room. Rooms without `after_sequence` start live-only: their
    // cursor is set by the first live notification.
    let mut cursor: HashMap<String, u64> = after;
    let send = |n: NotificationRecord| pb::SubscribeResponse {
        event: Some(pb::subscribe_response::Event::Notification(n.into())),
    };

    macro_rules! catch_up {
        () => {
            for room in &filter.rooms {
                let Some(&from) = cursor.get(room) else { continue };
                let mut from = from;
                loop {
                    let page = match store.notifications_after(&filter.tenant, room, from, REPLAY_PAGE).await {
                        Ok(page) => page,
                        Err(err) => {
                            tracing::warn!(error = %err, room = %room, "Replay failed");
                            let _ = tx.send(Err(Status::unavailable("replay from storage failed; resubscribe"))).await;
                            return;
                        }
                    };
                    let done = page.len() < REPLAY_PAGE as usize;
                    for n in page {
                        from = n.sequence;
                        if filter.matches(&n) && tx.send(Ok(send(n))).await.is_err() {
                            return;
                        }
                    }
                    cursor.insert(room.clone(), from);
                    if done {
                        break;
                    }
                }
            }
        };
    }

    catch_up!();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("server shutting down; resubscribe with after_sequence"))).await;
                return;
            }
            () = tx.closed() => return,
            msg = tokio::time::timeout(HEARTBEAT_EVERY, live.recv()) => match msg {
                Err(_idle) => {
                    let beat = pb::SubscribeResponse {
                        event: Some(pb::subscribe_response::Event::Heartbeat(pb::Heartbeat { time: Some(timestamp_now()) })),
                    };
                    if tx.send(Ok(beat)).await.is_err() {
                        return;
                    }
                }
                Ok(Ok(n)) => {
                    if n.tenant != filter.tenant || !filter.rooms.contains(&n.room) {
                        continue;
                    }
                    let last = cursor.get(&n.room).copied();
                    if last.is_some_and(|last| n.sequence <= last) {
                        continue; // already replayed
                    }
                    if let Some(last) = last
                        && n.sequence > last + 1 {
                            // Published elsewhere or overtaken: fill the gap from the store.
                            catch_up!();
                            continue;
                        }
                    cursor.insert(n.room.clone(), n.sequence);
                    if filter.matches(&n) && tx.send(Ok(send((*n).clone()))).await.is_err() {
                        return;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "Subscriber lagged; catching up from storage");
                    catch_up!();
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
            }
        }
    }
}
