//! The notifier's delivery guarantees: priorities on a slow subscriber, drops counted and
//! never of HIGH/CRITICAL, exact resume after a reconnection (gRPC and WebSocket), and
//! fan-out across two notifier replicas sharing one PostgreSQL and one Redis.

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use phantom_kit::{CancellationToken, Listeners};
use phantom_proto::pb::{self, notifier_client::NotifierClient, subscribe_response::Event};
use phantom_tests::{PATIENCE, Running, channel, config};

fn note(room: &str, priority: pb::Priority, payload: String) -> pb::Notification {
    pb::Notification {
        room: room.into(),
        priority: priority as i32,
        r#type: "test".into(),
        payload,
        ..Default::default()
    }
}

async fn next_event(stream: &mut tonic::Streaming<pb::SubscribeResponse>) -> Event {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("no error")
        .event
        .expect("an event")
}

async fn next_notification(
    stream: &mut tonic::Streaming<pb::SubscribeResponse>,
) -> pb::Notification {
    loop {
        if let Event::Notification(n) = next_event(stream).await {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_gets_critical_ahead_of_its_low_backlog_and_loses_only_low() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.notifier.queue_capacity = 32;
    cfg.notifier.heartbeat = Duration::from_millis(300);
    let system = Running::start(cfg).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);
    let room = "scan/slow";
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // The subscriber reads nothing while a flood of LOW (large enough to fill the transport's
    // buffers) and then a few CRITICAL are published.
    const LOW: usize = 400;
    const CRITICAL: usize = 5;
    let filler = "x".repeat(48 * 1024);
    for _ in 0..LOW {
        client
            .publish(note(room, pb::Priority::Low, filler.clone()))
            .await
            .unwrap();
    }
    for i in 0..CRITICAL {
        client
            .publish(note(room, pb::Priority::Critical, format!("alert {i}")))
            .await
            .unwrap();
    }

    // Now it reads: everything queued, then a heartbeat on the idle stream.
    let mut order = Vec::new();
    let dropped_low = loop {
        match next_event(&mut stream).await {
            Event::Notification(n) => order.push(n.priority),
            Event::Heartbeat(h)
                if order
                    .iter()
                    .filter(|&&p| p == pb::Priority::Critical as i32)
                    .count()
                    == CRITICAL =>
            {
                assert_eq!(h.dropped_normal, 0);
                break h.dropped_low;
            }
            Event::Heartbeat(_) => {}
            // First: a room followed from now on starts at its current sequence (none yet).
            Event::Subscribed(start) => {
                assert!(order.is_empty());
                assert_eq!(start.after_sequence[room], 0);
            }
        }
    };
    let low = pb::Priority::Low as i32;
    let lows = order.iter().filter(|&&p| p == low).count();
    let first_critical = order
        .iter()
        .position(|&p| p == pb::Priority::Critical as i32)
        .unwrap();
    let last_low = order.iter().rposition(|&p| p == low).unwrap();
    assert!(
        first_critical < last_low,
        "a CRITICAL overtook the queued LOWs (first CRITICAL at {first_critical}, last LOW at {last_low})"
    );
    assert!(dropped_low > 0, "the LOW flood overflowed the queue");
    assert_eq!(
        lows as u64 + dropped_low,
        LOW as u64,
        "every LOW delivered or counted as dropped"
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_grpc_and_websocket_clients_get_every_missed_message_once_in_order() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);
    let room = "scan/reconnect";
    let publish = async |client: &mut NotifierClient<tonic::transport::Channel>, n: usize| {
        for i in 0..n {
            let p = [pb::Priority::Low, pb::Priority::Normal, pb::Priority::High][i % 3];
            client
                .publish(note(room, p, format!("m{i}")))
                .await
                .unwrap();
        }
    };
    publish(&mut client, 4).await;

    // gRPC: read 3 of 4 from the start, disconnect, miss 5, resume after the last one seen.
    let subscribe = |after: u64| pb::SubscribeRequest {
        rooms: vec![room.into()],
        after_sequence: HashMap::from([(room.into(), after)]),
        ..Default::default()
    };
    let mut stream = client.subscribe(subscribe(0)).await.unwrap().into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_notification(&mut stream).await.sequence);
    }
    drop(stream);
    publish(&mut client, 5).await;
    let mut stream = client
        .subscribe(subscribe(*seen.last().unwrap()))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..6 {
        seen.push(next_notification(&mut stream).await.sequence);
    }
    publish(&mut client, 1).await;
    seen.push(next_notification(&mut stream).await.sequence);
    assert_eq!(seen, (1..=10).collect::<Vec<u64>>(), "each once, in order");

    // WebSocket: the same, resuming with `after=room:sequence`.
    let ws_url = |after: u64| {
        format!(
            "ws://{}/ws?rooms={room}&after={room}:{after}",
            system.addrs.ws
        )
    };
    async fn next_seq(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> u64 {
        loop {
            let msg = tokio::time::timeout(PATIENCE, ws.next())
                .await
                .expect("in time")
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["kind"] == "notification" {
                    return v["sequence"].as_u64().unwrap();
                }
            }
        }
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(8)).await.unwrap();
    let mut seen = vec![next_seq(&mut ws).await, next_seq(&mut ws).await];
    drop(ws);
    publish(&mut client, 3).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(*seen.last().unwrap()))
        .await
        .unwrap();
    for _ in 0..3 {
        seen.push(next_seq(&mut ws).await);
    }
    assert_eq!(seen, (9..=13).collect::<Vec<u64>>(), "each once, in order");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifier_replicas_on_one_redis_deliver_each_others_messages_once() {
    let data = tempfile::tempdir().unwrap();
    let Some(cfg) = phantom_tests::config_on_backends(data.path(), "fanout") else {
        return;
    };
    let a = Running::start(cfg.clone()).await;

    // Replica B: a second notifier process's worth, on the same database and Redis.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let stop_b = CancellationToken::new();
    let b = tokio::spawn(phantom_notifier::run(
        cfg.notifier(),
        Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        stop_b.clone(),
    ));
    phantom_tests::wait_for_status(
        b_addr,
        "phantom.v1.Notifier",
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;

    let room = "system";
    let mut on_a = NotifierClient::new(channel(a.addrs.notifier).await);
    let mut on_b = NotifierClient::new(channel(b_addr).await);
    let mut stream = on_b
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // B's subscription is live-only: give its Redis subscription a moment to be in place by
    // publishing until the first one arrives.
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            on_a.publish(note(room, pb::Priority::High, "hello".into()))
                .await
                .unwrap();
            if let Ok(Some(Ok(item))) =
                tokio::time::timeout(Duration::from_millis(200), stream.next()).await
                && let Some(Event::Notification(n)) = item.event
            {
                return n;
            }
        }
    })
    .await
    .expect("a notification published on A reaches a subscriber on B");
    // Then every one, from either replica, exactly once and in order.
    let mut last = 0;
    for i in 0..6 {
        let publisher = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        last = publisher
            .publish(note(room, pb::Priority::Normal, format!("n{i}")))
            .await
            .unwrap()
            .into_inner()
            .sequence;
    }
    let expected: Vec<u64> = (first.sequence..=last).collect();
    let mut seqs = vec![first.sequence];
    while seqs.len() < expected.len() {
        seqs.push(next_notification(&mut stream).await.sequence);
    }
    // Publishes on two replicas race through Redis: one may overtake the other's (the
    // subscriber then fetches the gap from the log), but each arrives exactly once.
    seqs.sort_unstable();
    assert_eq!(seqs, expected, "each once");
    // Nothing more (no duplicate) arrives: the next event is a heartbeat or nothing.
    if let Ok(Some(Ok(item))) =
        tokio::time::timeout(Duration::from_millis(500), stream.next()).await
    {
        assert!(matches!(item.event, Some(Event::Heartbeat(_))), "{item:?}");
    }
    stop_b.cancel();
    let _ = b.await;
    a.stop().await;
}
