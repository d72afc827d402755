//! Hostile calls to `Publish` and `Subscribe`: each is refused, or served, within a bound on
//! time, reply size and memory.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::StreamExt;
use tonic::{Code, transport::server::TcpConnectInfo};
use tonic_types::StatusExt;

use super::*;

/// Notifications in memory, counting the bytes it hands out to replays.
#[derive(Debug, Default)]
pub(crate) struct MemoryLog {
    rooms: Mutex<HashMap<(Tenant, String), Vec<NotificationRecord>>>,
    keys: Mutex<HashMap<(Tenant, String, String), NotificationRecord>>,
    pub(crate) handed_out: AtomicUsize,
    /// Times the log lost its data ([`MemoryLog::reset`]): its epoch.
    resets: AtomicUsize,
}

impl MemoryLog {
    /// Loses every notification, as a Redis that restarted empty: sequences start again at 1,
    /// in a new epoch.
    pub(crate) fn reset(&self) {
        self.rooms.lock().unwrap().clear();
        self.keys.lock().unwrap().clear();
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    fn current_epoch(&self) -> String {
        format!("memory-{}", self.resets.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl NotificationLog for MemoryLog {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn append_batch(&self, batch: &[NewNotification]) -> Result<Vec<(Stored, bool)>, Error> {
        let mut rooms = self.rooms.lock().unwrap();
        let mut keys = self.keys.lock().unwrap();
        let epoch = self.current_epoch();
        let mut out = Vec::with_capacity(batch.len());
        for NewNotification { record: n, key } in batch {
            let slot = key
                .as_ref()
                .map(|key| (n.tenant.clone(), n.room.clone(), key.clone()));
            if let Some(first) = slot.as_ref().and_then(|slot| keys.get(slot)) {
                let record = first.clone();
                out.push((
                    Stored {
                        record,
                        epoch: epoch.clone(),
                    },
                    false,
                ));
                continue;
            }
            let room = rooms.entry((n.tenant.clone(), n.room.clone())).or_default();
            let record = NotificationRecord {
                sequence: room.last().map_or(1, |l| l.sequence + 1),
                ..n.clone()
            };
            room.push(record.clone());
            if let Some(slot) = slot {
                keys.insert(slot, record.clone());
            }
            out.push((
                Stored {
                    record,
                    epoch: epoch.clone(),
                },
                true,
            ));
        }
        Ok(out)
    }

    async fn epoch(&self) -> Result<String, Error> {
        Ok(self.current_epoch())
    }

    async fn after(
        &self,
        tenant: &Tenant,
        room: &str,
        after: u64,
        page: Page,
    ) -> Result<Vec<NotificationRecord>, Error> {
        let mut used = 0;
        let page: Vec<NotificationRecord> = self
            .rooms
            .lock()
            .unwrap()
            .get(&(tenant.clone(), room.to_owned()))
            .map(|r| {
                r.iter()
                    .filter(|n| n.sequence > after)
                    .take(page.items as usize)
                    .take_while(|n| {
                        used += n.footprint();
                        used == n.footprint() || used <= page.bytes
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let bytes: usize = page.iter().map(|n| n.payload.len()).sum();
        self.handed_out.fetch_add(bytes, Ordering::Relaxed);
        Ok(page)
    }

    async fn prune(&self, _older_than: i64, _keep_per_room: u64) -> Result<u64, Error> {
        Ok(0)
    }

    async fn latest(&self, tenant: &Tenant, room: &str) -> Result<u64, Error> {
        Ok(self
            .rooms
            .lock()
            .unwrap()
            .get(&(tenant.clone(), room.to_owned()))
            .and_then(|r| r.last())
            .map_or(0, |n| n.sequence))
    }
}

pub(crate) struct Fixture {
    pub(crate) service: NotifierService,
    pub(crate) hub: Arc<Hub>,
    pub(crate) log: Arc<MemoryLog>,
}

pub(crate) fn fixture() -> Fixture {
    fixture_with(Delivery::from_config(
        &crate::settings::NotifierConfig::default(),
        crate::memory::FALLBACK_BYTES,
    ))
}

pub(crate) fn fixture_with(delivery: Delivery) -> Fixture {
    let log = Arc::new(MemoryLog::default());
    let core = Ready::new();
    let hub = Arc::new(Hub::default());
    let writer = Writer::start(
        log.clone(),
        &crate::settings::WriteConfig::default(),
        live_delivery(hub.clone(), crate::webhook::Webhooks::default()),
        &hub.registry,
    );
    core.set(Core {
        log: log.clone(),
        writer,
        fanout: None,
    });
    let service = NotifierService::new(core, hub.clone(), delivery, CancellationToken::new());
    Fixture { service, hub, log }
}

/// A request from `peer`, acting for tenant `t`, as the server's stack hands it over.
pub(crate) fn request<T>(message: T, peer: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .extensions_mut()
        .insert(phantom_layers::Tenant::parse("t").unwrap());
    request.extensions_mut().insert(TcpConnectInfo {
        local_addr: None,
        remote_addr: Some(peer.parse::<SocketAddr>().unwrap()),
    });
    request
}

/// The caller's address as the transport would report it: a documentation address, only a
/// label in the request's metadata (what the per-caller limits count by), never dialled.
pub(crate) const PEER: &str = "192.0.2.7:40000";

/// Bytes a status costs its caller: its message and its details, as sent in the trailers.
fn reply_size(status: &Status) -> usize {
    status.message().len() + status.details().len()
}

/// Runs `call` on a thread of its own and waits for it at most `limit`: a call that costs more
/// fails the test instead of holding it up.
fn answered_within<T: Send + 'static>(
    limit: Duration,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        let out = runtime.block_on(call);
        let _ = tx.send((out, started.elapsed()));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
}

fn subscription(rooms: &[&str]) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        ..Default::default()
    }
}

pub(crate) fn note(room: &str, kind: &str, payload: String) -> pb::Notification {
    pb::Notification {
        room: room.into(),
        priority: pb::Priority::Normal as i32,
        r#type: kind.into(),
        payload,
        ..Default::default()
    }
}

async fn subscribe_err(f: &Fixture, req: pb::SubscribeRequest) -> Status {
    match f.service.subscribe(request(req, PEER)).await {
        Ok(_) => panic!("subscription accepted"),
        Err(status) => status,
    }
}

#[test]
fn huge_rooms_and_after_sequence_maps_are_refused_at_once_with_a_small_error() {
    let rooms: Vec<String> = (0..600_000).map(|i| format!("scan/{i}")).collect();
    let after_sequence: HashMap<String, u64> =
        (0..150_000).map(|i| (format!("other/{i}"), 1)).collect();
    let req = pb::SubscribeRequest {
        rooms,
        after_sequence,
        ..Default::default()
    };
    let (status, took) = answered_within(Duration::from_secs(20), async move {
        // Within the call's runtime: the fixture's writer is a task of it.
        subscribe_err(&fixture(), req).await
    });
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(took < Duration::from_secs(2), "validation took {took:?}");
    assert!(
        reply_size(&status) < 8 * 1024,
        "the error is {} bytes",
        reply_size(&status)
    );
}

#[tokio::test]
async fn many_invalid_entries_are_reported_up_to_a_cap_with_a_count_of_the_rest() {
    let f = fixture();
    let rooms: Vec<String> = (0..64)
        .map(|i| format!("bad\u{1b}[2J{}{i}", "x".repeat(200)))
        .collect();
    let mut req = pb::SubscribeRequest {
        rooms,
        ..Default::default()
    };
    req.rooms[0] = "scan/ok".into();
    let status = subscribe_err(&f, req).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().expect("BadRequest");
    assert!(
        bad.field_violations.len() <= 11,
        "{} violations reported",
        bad.field_violations.len()
    );
    let last = &bad.field_violations.last().unwrap().description;
    assert!(last.contains("more"), "says how many more: {last}");
    assert!(
        !status.message().contains('\u{1b}'),
        "control characters are escaped"
    );
    assert!(reply_size(&status) < 8 * 1024);
}

#[tokio::test]
async fn after_sequence_may_only_name_subscribed_rooms() {
    let f = fixture();
    let mut req = subscription(&["scan/a"]);
    req.after_sequence.insert("scan/b".into(), 3);
    let status = subscribe_err(&f, req).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = status.get_details_bad_request().unwrap();
    assert!(bad.field_violations[0].field.starts_with("after_sequence"));
    assert!(bad.field_violations[0].description.contains("\"scan/b\""));
}

#[tokio::test]
async fn publish_refuses_a_type_that_is_not_a_short_token() {
    let f = fixture();
    for kind in [
        "scan.progress\u{1b}]0;pwned\u{7}",
        "Finding",
        "",
        "has space",
        ".dot-first",
        &"a".repeat(65),
    ] {
        let status = f
            .service
            .publish(request(note("scan/a", kind, "{}".into()), PEER))
            .await
            .expect_err(kind);
        assert_eq!(status.code(), Code::InvalidArgument, "{kind:?}");
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "type", "{kind:?}");
        assert!(!status.message().contains('\u{1b}'));
    }
    for kind in ["scan.progress", "finding", "a", "scan_started-2"] {
        f.service
            .publish(request(note("scan/a", kind, "{}".into()), PEER))
            .await
            .unwrap_or_else(|s| panic!("{kind:?}: {s:?}"));
    }
}

#[tokio::test]
async fn publish_names_each_oversize_or_unknown_field() {
    let f = fixture();
    let mut n = note(
        &"r".repeat(4000),
        "finding",
        "x".repeat(MAX_PAYLOAD_BYTES + 1),
    );
    n.severity = 99;
    n.priority = 42;
    let status = f.service.publish(request(n, PEER)).await.unwrap_err();
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["room", "payload", "priority", "severity"]);
    assert!(reply_size(&status) < 8 * 1024);
}

#[tokio::test]
async fn a_subscription_filter_refuses_types_that_are_not_tokens() {
    let f = fixture();
    let mut req = subscription(&["scan/a"]);
    req.types = vec!["finding".into(), "x\u{1b}[2J".into()];
    let status = subscribe_err(&f, req).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.get_details_bad_request().unwrap().field_violations[0].field,
        "types[1]"
    );
    let mut req = subscription(&["scan/a"]);
    req.types = (0..1000).map(|i| format!("t{i}")).collect();
    assert_eq!(subscribe_err(&f, req).await.code(), Code::InvalidArgument);
}

#[tokio::test(start_paused = true)]
async fn too_many_streams_from_one_caller_are_refused_with_resource_exhausted() {
    let f = fixture();
    let mut open = Vec::new();
    loop {
        match f
            .service
            .subscribe(request(subscription(&["scan/a"]), PEER))
            .await
        {
            Ok(stream) => open.push(stream.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    status.get_details_retry_info().is_some(),
                    "says when to retry"
                );
                break;
            }
        }
        assert!(open.len() <= 64, "64 streams from one caller accepted");
    }
    let cap = open.len();
    // Another caller is not held back by this one.
    let other = f
        .service
        .subscribe(request(subscription(&["scan/a"]), "198.51.100.1:1"))
        .await;
    assert!(other.is_ok());
    // A stream that ends gives its place back.
    open.pop();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        f.service
            .subscribe(request(subscription(&["scan/a"]), PEER))
            .await
            .is_ok(),
        "a place freed after {cap} streams"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replaying_stream_that_does_not_read_holds_a_bounded_number_of_bytes() {
    let f = fixture();
    let big = "x".repeat(60 * 1024);
    for _ in 0..600 {
        f.service
            .publish(request(note("scan/a", "finding", big.clone()), PEER))
            .await
            .unwrap();
    }
    let mut req = subscription(&["scan/a"]);
    req.after_sequence.insert("scan/a".into(), 0);
    let mut stream = f
        .service
        .subscribe(request(req, PEER))
        .await
        .unwrap()
        .into_inner();
    // The client reads one message, then stops reading; the server does all it would.
    let _ = stream.next().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = f.log.handed_out.load(Ordering::Relaxed);
    assert!(
        held <= 1024 * 1024,
        "{held} bytes read from the store for a stream that reads nothing"
    );
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn a_live_stream_that_does_not_read_holds_a_bounded_number_of_bytes() {
    let f = fixture();
    let _stream = f
        .service
        .subscribe(request(subscription(&["scan/a"]), PEER))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let big = "x".repeat(60 * 1024);
    for _ in 0..600 {
        f.service
            .publish(request(note("scan/a", "finding", big.clone()), PEER))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = f.hub.buffered_bytes();
    assert!(
        queued <= 512 * 1024,
        "{queued} bytes queued for a stream that reads nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_streams_leave_nothing_behind_in_the_hub() {
    let f = fixture();
    let mut streams = Vec::new();
    for i in 0..8 {
        let peer = format!("192.0.2.{i}:1");
        let rooms = [format!("scan/{i}"), "system".to_owned()];
        let req = pb::SubscribeRequest {
            rooms: rooms.to_vec(),
            ..Default::default()
        };
        streams.push(
            f.service
                .subscribe(request(req, &peer))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!((f.hub.subscribers(), f.hub.rooms()), (8, 9));
    drop(streams);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!((f.hub.subscribers(), f.hub.rooms()), (0, 0));
}

/// The next message of `stream` that is not a heartbeat, within a (paused-clock) minute.
async fn next_event(stream: &mut SubscribeStream) -> Option<Result<pb::SubscribeResponse, Status>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream said nothing but heartbeats for a minute");
        if let Some(Ok(pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Heartbeat(_)),
        })) = item
        {
            continue;
        }
        return item;
    }
}

fn sequence_of(item: Option<Result<pb::SubscribeResponse, Status>>) -> u64 {
    match item {
        Some(Ok(pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Notification(n)),
        })) => n.sequence,
        other => panic!("expected a notification, got {other:?}"),
    }
}

fn assert_log_reset(item: Option<Result<pb::SubscribeResponse, Status>>) {
    let status = match item {
        Some(Err(status)) => status,
        other => panic!("expected LOG_RESET, got {other:?}"),
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.get_details_error_info().map(|i| i.reason),
        Some("LOG_RESET".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn a_live_stream_is_told_when_the_log_is_reset_under_it() {
    let f = fixture();
    let mut stream = f
        .service
        .subscribe(request(subscription(&["scan/a"]), PEER))
        .await
        .unwrap()
        .into_inner();
    match next_event(&mut stream).await {
        Some(Ok(pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Subscribed(s)),
        })) => assert_eq!(s.epoch, "memory-0"),
        other => panic!("expected Subscribed, got {other:?}"),
    }
    for _ in 0..3 {
        f.service
            .publish(request(note("scan/a", "finding", "old".into()), PEER))
            .await
            .unwrap();
    }
    for seq in 1..=3 {
        assert_eq!(sequence_of(next_event(&mut stream).await), seq);
    }
    // The log loses its data: the next notification is 1 again, in a new epoch. Delivered,
    // it would be dropped as a repeat of the old 1 (or, above 3, pass for the old epoch's).
    f.log.reset();
    let stored = f
        .service
        .publish(request(note("scan/a", "finding", "new".into()), PEER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.sequence, 1);
    assert_log_reset(next_event(&mut stream).await);
    assert!(next_event(&mut stream).await.is_none(), "the stream ended");
    assert_eq!(f.hub.subscribers(), 0, "and left the hub");
}

#[tokio::test(start_paused = true)]
async fn another_replicas_notification_of_a_new_epoch_ends_a_live_stream_after_what_was_queued() {
    let f = fixture();
    let mut stream = f
        .service
        .subscribe(request(subscription(&["scan/a"]), PEER))
        .await
        .unwrap()
        .into_inner();
    assert!(next_event(&mut stream).await.is_some(), "Subscribed");
    f.service
        .publish(request(note("scan/a", "finding", "old".into()), PEER))
        .await
        .unwrap();
    // What the fan-out delivers from another replica that appended after the reset; this
    // replica's log has not seen the new epoch yet.
    let mut theirs = NotificationRecord {
        tenant: Tenant::parse("t").unwrap(),
        room: "scan/a".into(),
        sequence: 5,
        id: "other".into(),
        priority: pb::Priority::Critical as i32,
        kind: "finding".into(),
        payload: "new".into(),
        created_at: 0,
        severity: 0,
    };
    f.hub.fan_out(&Arc::new(theirs.clone()), "memory-1");
    theirs.sequence = 6;
    f.hub.fan_out(&Arc::new(theirs), "memory-1");
    // The old epoch's 1 was queued before: delivered; the new epoch's 5 and 6 (even as
    // CRITICAL) are not.
    assert_eq!(sequence_of(next_event(&mut stream).await), 1);
    assert_log_reset(next_event(&mut stream).await);
    assert!(next_event(&mut stream).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_notification_of_the_subscribers_own_epoch_is_delivered_as_before() {
    let f = fixture();
    let mut stream = f
        .service
        .subscribe(request(subscription(&["scan/a"]), PEER))
        .await
        .unwrap()
        .into_inner();
    assert!(next_event(&mut stream).await.is_some(), "Subscribed");
    let mine = NotificationRecord {
        tenant: Tenant::parse("t").unwrap(),
        room: "scan/a".into(),
        sequence: 1,
        id: "same".into(),
        priority: pb::Priority::Normal as i32,
        kind: "finding".into(),
        payload: String::new(),
        created_at: 0,
        severity: 0,
    };
    f.hub.fan_out(&Arc::new(mine.clone()), "memory-0");
    // And a replica that predates epochs sends none: not checked.
    f.hub.fan_out(
        &Arc::new(NotificationRecord {
            sequence: 2,
            ..mine
        }),
        "",
    );
    assert_eq!(sequence_of(next_event(&mut stream).await), 1);
    assert_eq!(sequence_of(next_event(&mut stream).await), 2);
}
