//! Redis loses its data under two notifier replicas (what a restart without persistence or a
//! failover to an empty replica does): the room's sequences start again, in a new epoch, and
//! a subscriber resuming from where it was is told of the reset (FAILED_PRECONDITION,
//! LOG_RESET) instead of silently skipping what the new epoch holds; subscribing again gets
//! everything. Alone in its file: it empties the Redis `make test` shares.

use std::time::Duration;

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
async fn a_resuming_subscriber_is_told_when_redis_lost_the_log() {
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

    // Resuming after 5 in the old epoch would skip "after-1" to "after-3": it is refused.
    let refused = resume(&mut subscriber, 5, &epoch).await.unwrap_err();
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
