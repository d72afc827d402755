//! Redis loses its data under two notifier replicas (what a restart without persistence or a
//! failover to an empty replica does): the room's sequences start again, in a new epoch, and
//! a subscriber resuming from where it was is told of the reset (FAILED_PRECONDITION,
//! LOG_RESET) instead of silently skipping what the new epoch holds; subscribing again gets
//! everything. Subscribers whose streams are live across the reset are told too, on the
//! replica that publishes and on the other (through the fan-out), over gRPC and over the
//! WebSocket gateway, instead of taking the new epoch's 1, 2, 3 for repeats of the old ones.
//! Alone in its file: it empties the Redis `make test` shares.

use std::{net::SocketAddr, time::Duration};

use futures::StreamExt as _;

use phantom_proto::pb::{self, notifier_client::NotifierClient};
use phantom_tests::{PATIENCE, Running, channel, config_on_backends};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic_types::StatusExt as _;

/// `FLUSHALL` on the Redis at `url` (`redis://host:port`): Redis with none of its data.
async fn flush_all(url: &str) {
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let mut redis = tokio::net::TcpStream::connect(addr).await.unwrap();
    redis.write_all(b"*1\r\n$8\r\nFLUSHALL\r\n").await.unwrap();
    let mut reply = [0u8; 5];
    redis.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}

fn note(payload: &str) -> pb::Notification {
    pb::Notification {
        room: "team/reset".into(),
        r#type: "note".into(),
        payload: payload.into(),
        priority: pb::Priority::High as i32,
        ..Default::default()
    }
}

/// A live gRPC subscription to the room, once its `Subscribed` came.
async fn live(
    notifier: &mut NotifierClient<tonic::transport::Channel>,
) -> tonic::Streaming<pb::SubscribeResponse> {
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["team/reset".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Ok(Some(pb::SubscribeResponse {
            event: Some(pb::subscribe_response::Event::Subscribed(_)),
        }))) => stream,
        other => panic!("expected Subscribed, got {other:?}"),
    }
}

/// What a live gRPC stream delivers until it ends: the payloads, and the status it ended with.
async fn until_the_end(
    stream: &mut tonic::Streaming<pb::SubscribeResponse>,
) -> (Vec<String>, tonic::Status) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut payloads = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => panic!("the live stream never ended; it delivered {payloads:?}"),
            Ok(Ok(Some(message))) => {
                if let Some(pb::subscribe_response::Event::Notification(n)) = message.event {
                    payloads.push(n.payload);
                }
            }
            Ok(Ok(None)) => panic!("the live stream ended without a status: {payloads:?}"),
            Ok(Err(status)) => return (payloads, status),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live WebSocket subscription to the room at `addr`, once its `subscribed` frame came.
async fn live_ws(addr: SocketAddr) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?rooms=team/reset"))
        .await
        .unwrap();
    let first = ws_frames(&mut ws, 1).await;
    assert_eq!(first[0]["kind"], "subscribed", "{first:?}");
    ws
}

/// The next `n` JSON frames of `ws` (heartbeats left out), or fewer if it closes first.
async fn ws_frames(ws: &mut Ws, n: usize) -> Vec<serde_json::Value> {
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut frames = Vec::new();
    while frames.len() < n {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no more frames after {frames:?}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["kind"] != "heartbeat" {
                    frames.push(frame);
                }
            }
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    frames
}

/// Subscribes to the room after `after` in `epoch`: the `Subscribed` epoch and the payloads
/// replayed (the replay ends when a second passes with nothing), or the refusal.
async fn resume(
    notifier: &mut NotifierClient<tonic::transport::Channel>,
    after: u64,
    epoch: &str,
) -> Result<(String, Vec<String>), tonic::Status> {
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["team/reset".into()],
            after_sequence: [("team/reset".to_owned(), after)].into(),
            epoch: epoch.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut started = String::new();
    let mut payloads = Vec::new();
    while let Ok(Ok(Some(message))) =
        tokio::time::timeout(Duration::from_secs(1), stream.message()).await
    {
        match message.event {
            Some(pb::subscribe_response::Event::Subscribed(s)) => started = s.epoch,
            Some(pb::subscribe_response::Event::Notification(n)) => payloads.push(n.payload),
            _ => {}
        }
    }
    Ok((started, payloads))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_and_live_subscribers_are_told_when_redis_lost_the_log() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let Some(a_config) = config_on_backends(a_dir.path(), "reset") else {
        eprintln!("skipped: Redis is not provisioned (run through make test)");
        return;
    };
    // Two replicas of one deployment: the same tenant, database and Redis.
    let mut b_config = a_config.clone();
    b_config.storage.data_dir = b_dir.path().to_owned();
    let redis = a_config.cache.redis_url.clone();
    let a = Running::start(a_config).await;
    let b = Running::start(b_config).await;
    let mut publisher = NotifierClient::new(channel(a.addrs.notifier).await);
    let mut subscriber = NotifierClient::new(channel(b.addrs.notifier).await);

    for i in 1..=5 {
        publisher
            .publish(note(&format!("before-{i}")))
            .await
            .unwrap();
    }
    let (epoch, seen) = resume(&mut subscriber, 0, "").await.unwrap();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(!epoch.is_empty());

    // Live streams on the publishing replica and on the other one, and a WebSocket; each gets
    // what is published while they are open.
    let mut live_on_a = live(&mut publisher).await;
    let mut live_on_b = live(&mut subscriber).await;
    let mut ws_on_b = live_ws(b.addrs.ws).await;
    publisher.publish(note("before-6")).await.unwrap();
    for stream in [&mut live_on_a, &mut live_on_b] {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Ok(Ok(Some(pb::SubscribeResponse {
                event: Some(pb::subscribe_response::Event::Notification(n)),
            }))) => assert_eq!((n.payload.as_str(), n.sequence), ("before-6", 6)),
            other => panic!("expected before-6, got {other:?}"),
        }
    }
    let got = ws_frames(&mut ws_on_b, 1).await;
    assert_eq!(got[0]["payload"], "before-6", "{got:?}");

    flush_all(&redis).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut after_reset = Vec::new();
    while after_reset.len() < 3 {
        match publisher
            .publish(note(&format!("after-{}", after_reset.len() + 1)))
            .await
        {
            Ok(stored) => after_reset.push(stored.into_inner()),
            Err(status) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "publishing never resumed: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        after_reset[0].sequence, 1,
        "Redis's counters started again: what the epoch is for"
    );

    // The live streams are not handed the new epoch's 1, 2, 3 as if they followed 6 (nor
    // drop them as repeats): they end with LOG_RESET, on either replica.
    for (replica, stream) in [("A", &mut live_on_a), ("B", &mut live_on_b)] {
        let (payloads, status) = until_the_end(stream).await;
        assert!(
            payloads.is_empty(),
            "replica {replica} delivered {payloads:?}"
        );
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            status.get_details_error_info().map(|i| i.reason),
            Some("LOG_RESET".to_owned()),
            "replica {replica}"
        );
    }
    // The WebSocket's error frame says the same.
    let frames = ws_frames(&mut ws_on_b, usize::MAX).await;
    assert_eq!(frames.len(), 1, "only the error: {frames:?}");
    assert_eq!(frames[0]["kind"], "error");
    assert_eq!(frames[0]["code"], "FailedPrecondition");
    assert_eq!(frames[0]["reason"], "LOG_RESET");

    // Resuming after 6 in the old epoch would skip "after-1" to "after-3": it is refused.
    let refused = resume(&mut subscriber, 6, &epoch).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.get_details_error_info().map(|i| i.reason),
        Some("LOG_RESET".to_owned())
    );
    // Subscribing again from the start of the new epoch gets everything it holds.
    let (new_epoch, seen) = resume(&mut subscriber, 0, "").await.unwrap();
    assert_ne!(new_epoch, epoch);
    assert_eq!(seen, ["after-1", "after-2", "after-3"]);
    // And resuming within the new epoch works as before.
    let (_, rest) = resume(&mut subscriber, 2, &new_epoch).await.unwrap();
    assert_eq!(rest, ["after-3"]);
    a.stop().await;
    b.stop().await;
}
