//! Outbound webhooks, end to end: a destination that fails twice then answers receives the
//! notification (retried), signed with HMAC-SHA256; rooms and priorities not forwarded do not
//! reach it; and a destination that hangs never slows publishing or the streams.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use phantom_notifier::settings::WebhookConfig;
use phantom_proto::pb::{self, notifier_client::NotifierClient};
use phantom_tests::{PATIENCE, Running, channel, config};

#[derive(Debug, Default)]
struct Received {
    attempts: usize,
    fail_first: usize,
    hang: bool,
    delivered: Vec<(HeaderMap, Vec<u8>)>,
}

async fn receive(
    State(r): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let (hang, fail) = {
        let mut r = r.lock().unwrap();
        r.attempts += 1;
        (r.hang, r.attempts <= r.fail_first)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    if fail {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.lock().unwrap().delivered.push((headers, body.to_vec()));
    StatusCode::NO_CONTENT
}

async fn receiver(state: Arc<Mutex<Received>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn hook(name: &str, addr: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url: format!("http://{addr}/hook").into(),
        rooms: vec!["scan/*".into()],
        min_priority: "high".into(),
        // Cargo sets it for every test process: a key the test knows without touching the
        // environment.
        secret_env: "CARGO_PKG_NAME".into(),
        timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..WebhookConfig::default()
    }
}

fn note(room: &str, priority: pb::Priority, payload: &str) -> pb::Notification {
    pb::Notification {
        room: room.into(),
        priority: priority as i32,
        r#type: "finding".into(),
        payload: payload.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_retried_signed_filtered_and_never_block_the_streams() {
    let good = Arc::new(Mutex::new(Received {
        fail_first: 2,
        ..Received::default()
    }));
    let stuck = Arc::new(Mutex::new(Received {
        hang: true,
        ..Received::default()
    }));
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.notifier.webhooks = vec![
        hook("good", receiver(good.clone()).await),
        hook("stuck", receiver(stuck.clone()).await),
    ];
    let system = Running::start(cfg).await;
    let mut client = NotifierClient::new(channel(system.addrs.notifier).await);

    client
        .publish(note("scan/1", pb::Priority::Low, "not forwarded: LOW"))
        .await
        .unwrap();
    client
        .publish(note(
            "system",
            pb::Priority::Critical,
            "not forwarded: room",
        ))
        .await
        .unwrap();
    let sent = client
        .publish(note("scan/1", pb::Priority::Critical, "forwarded"))
        .await
        .unwrap()
        .into_inner();

    let (headers, body) = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(d) = good.lock().unwrap().delivered.first().cloned() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("delivered after the destination's failures");
    assert_eq!(
        good.lock().unwrap().attempts,
        3,
        "two failures, then success"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["payload"], "forwarded");
    assert_eq!(v["priority"], "CRITICAL");
    assert_eq!(v["sequence"], sent.sequence);
    assert_eq!(headers["x-phantom-delivery"], sent.id.as_str());
    assert_eq!(
        headers["x-phantom-signature"].to_str().unwrap(),
        phantom_notifier::webhook::sign(b"phantom-tests", &body)
    );

    // The stuck destination holds its own queue only: publishing and streams go on.
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["scan/2".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for i in 0..20 {
        tokio::time::timeout(
            PATIENCE,
            client.publish(note("scan/2", pb::Priority::High, &format!("n{i}"))),
        )
        .await
        .expect("publishing is not held by a stuck webhook")
        .unwrap();
    }
    let mut got = 0;
    while got < 20 {
        let item = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut stream))
            .await
            .expect("in time")
            .unwrap()
            .unwrap();
        if let Some(pb::subscribe_response::Event::Notification(_)) = item.event {
            got += 1;
        }
    }
    assert!(stuck.lock().unwrap().delivered.is_empty());
    // The good destination gets them all, in order.
    tokio::time::timeout(PATIENCE, async {
        while good.lock().unwrap().delivered.len() < 21 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every HIGH of scan/* delivered");
    let payloads: Vec<String> = good.lock().unwrap().delivered[1..]
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<serde_json::Value>(b).unwrap()["payload"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        payloads,
        (0..20).map(|i| format!("n{i}")).collect::<Vec<_>>()
    );
    system.stop().await;
}
