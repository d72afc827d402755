//! The notifier through its public APIs: gRPC `Publish`/`Subscribe` and the WebSocket gateway.

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use phantom_proto::pb::{self, notifier_client::NotifierClient};
use phantom_tests::{PATIENCE, Running, channel, config};

fn note(room: &str, priority: pb::Priority, kind: &str) -> pb::Notification {
    pb::Notification {
        room: room.into(),
        priority: priority as i32,
        r#type: kind.into(),
        payload: format!("{{\"kind\":\"{kind}\"}}"),
        ..Default::default()
    }
}

async fn next_notification(
    stream: &mut tonic::Streaming<pb::SubscribeResponse>,
) -> pb::Notification {
    loop {
        let item = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a notification in time")
            .expect("stream open")
            .expect("no error");
        if let Some(pb::subscribe_response::Event::Notification(n)) = item.event {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_exactly_after_its_last_sequence_then_follows_live() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);
    let room = "scan/resume";

    for (p, kind) in [
        (pb::Priority::Low, "a"),
        (pb::Priority::Normal, "b"),
        (pb::Priority::High, "c"),
    ] {
        client.publish(note(room, p, kind)).await.unwrap();
    }
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.into()],
            min_priority: pb::Priority::Normal as i32,
            after_sequence: HashMap::from([(room.into(), 1)]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = [
        next_notification(&mut stream).await,
        next_notification(&mut stream).await,
    ];
    assert_eq!(
        replayed.iter().map(|n| n.sequence).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(replayed[0].r#type, "b");

    // Live, after the replay: a filtered-out LOW does not stall the cursor.
    client
        .publish(note(room, pb::Priority::Low, "d"))
        .await
        .unwrap();
    client
        .publish(note(room, pb::Priority::Critical, "e"))
        .await
        .unwrap();
    let live = next_notification(&mut stream).await;
    assert_eq!((live.sequence, live.r#type.as_str()), (5, "e"));
    assert_eq!(live.priority, pb::Priority::Critical as i32);

    // Another room, another tenant's view: nothing leaks into this subscription.
    client
        .publish(note("scan/other", pb::Priority::Critical, "x"))
        .await
        .unwrap();
    client
        .publish(note(room, pb::Priority::High, "f"))
        .await
        .unwrap();
    let live = next_notification(&mut stream).await;
    assert_eq!((live.sequence, live.r#type.as_str()), (6, "f"));
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_gateway_replays_and_streams_json() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);
    client
        .publish(note("system", pb::Priority::High, "one"))
        .await
        .unwrap();
    client
        .publish(note("system", pb::Priority::High, "two"))
        .await
        .unwrap();

    let url = format!("ws://{}/ws?rooms=system&after=system:1", system.addrs.ws);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut next_json = async || loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = msg {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["kind"] == "notification" {
                return v;
            }
        }
    };
    let replayed = next_json().await;
    assert_eq!(
        (replayed["sequence"].as_u64(), replayed["type"].as_str()),
        (Some(2), Some("two"))
    );
    assert_eq!(replayed["priority"], "HIGH");
    client
        .publish(note("system", pb::Priority::Normal, "three"))
        .await
        .unwrap();
    let live = next_json().await;
    assert_eq!(
        (live["sequence"].as_u64(), live["type"].as_str()),
        (Some(3), Some("three"))
    );
    let _ = ws.close(None).await;

    // Malformed subscriptions are refused before the upgrade, with the reason.
    for query in [
        "rooms=",
        "rooms=a&after=a:x",
        "rooms=a&min_priority=urgent",
        "rooms=bad%20room",
    ] {
        let url = format!("ws://{}/ws?{query}", system.addrs.ws);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{query}")
            }
            other => panic!("{query}: {other:?}"),
        }
    }
    // The client may ping; anything else closes the socket with the matching code.
    use tokio_tungstenite::tungstenite::Message;
    let open = async || {
        tokio_tungstenite::connect_async(format!("ws://{}/ws?rooms=system", system.addrs.ws))
            .await
            .unwrap()
            .0
    };
    let closed_with = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    let mut ws = open().await;
    ws.send(Message::Text(r#"{"kind":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["kind"] == "subscribed" {
                // First, where the subscription starts: "system" from its current sequence.
                assert!(v["after"]["system"].is_u64(), "{v}");
            } else if v["kind"] != "heartbeat" {
                break v;
            }
        }
    };
    assert_eq!(pong["kind"], "pong");
    for (frame, code) in [
        (Message::Text("hello".into()), 1007),
        (Message::Text(r#"{"kind":"subscribe"}"#.into()), 1008),
        (Message::Binary(vec![1, 2, 3].into()), 1003),
        (Message::Text("x".repeat(64 * 1024).into()), 1009),
    ] {
        let mut ws = open().await;
        ws.send(frame).await.unwrap();
        assert_eq!(closed_with(&mut ws).await, Some(code));
    }
    // Browsers from origins not in notifier.ws.allowed_origins are refused before the upgrade.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/ws?rooms=system",
            system.addrs.ws
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example.com".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("{other:?}"),
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_with_its_idempotency_key_is_one_notification() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);
    let room = "team/retried";
    let mut live = client
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keyed = || pb::Notification {
        idempotency_key: "deploy-42".into(),
        ..note(room, pb::Priority::High, "deploy")
    };
    // The first attempt may have been stored even if its caller timed out: the retry, with
    // the same key, answers the stored one and stores (and delivers) nothing new.
    let first = client.publish(keyed()).await.unwrap().into_inner();
    let retried = client.publish(keyed()).await.unwrap().into_inner();
    assert_eq!((retried.sequence, &retried.id), (first.sequence, &first.id));
    let other = client
        .publish(note(room, pb::Priority::High, "after"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.sequence, first.sequence + 1);
    // Delivered once: the next live notification after the first is the unkeyed one.
    assert_eq!(next_notification(&mut live).await.id, first.id);
    assert_eq!(next_notification(&mut live).await.id, other.id);
    system.stop().await;
}
