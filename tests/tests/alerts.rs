//! An alert rule on an asset scanned every two seconds: a new HIGH finding (a telnet login
//! prompt) alerts once, through the notifier's `system/alerts` room and a webhook; the next,
//! unchanged, scan alerts nobody; a second telnet listener opened later alerts once more.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::post};
use phantom_notifier::settings::WebhookConfig;
use phantom_proto::pb::{
    self, notifier_client::NotifierClient, scan_orchestrator_client::ScanOrchestratorClient,
    subscribe_response::Event,
};
use phantom_tests::{PATIENCE, Running, channel, config, next_asset_run, resume_asset};

/// The webhook's receiver: the bodies of what it was sent.
async fn receiver(got: Arc<Mutex<Vec<serde_json::Value>>>) -> SocketAddr {
    async fn receive(
        State(got): State<Arc<Mutex<Vec<serde_json::Value>>>>,
        body: axum::body::Bytes,
    ) -> StatusCode {
        if let Ok(v) = serde_json::from_slice(&body) {
            got.lock().unwrap().push(v);
        }
        StatusCode::NO_CONTENT
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(got);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A listener that greets every connection with a telnet login prompt (rated HIGH).
fn telnet() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let _ = conn.write_all(b"Ubuntu 24.04 LTS\r\nbastion login: ");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                drop(conn);
            });
        }
    });
    (port, t)
}

/// The alerts (notifications of type `alert`) in `got`, as their payloads' ports.
fn alerted_ports(got: &[serde_json::Value]) -> Vec<u64> {
    got.iter()
        .filter(|n| n["type"] == "alert")
        .filter_map(|n| {
            let payload: serde_json::Value =
                serde_json::from_str(n["payload"].as_str().unwrap_or("{}")).ok()?;
            payload["port"].as_u64()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_alerts_once_per_new_high_finding_and_not_on_an_unchanged_scan() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.scan.banner_timeout = Duration::from_millis(500);
    cfg.scan.claim_every = Duration::from_millis(200);
    cfg.scan.schedules.check_every = Duration::from_millis(200);
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let hook = receiver(hooked.clone()).await;
    cfg.notifier.webhooks = vec![WebhookConfig {
        name: "alerts".into(),
        url: format!("http://{hook}/hook").into(),
        rooms: vec!["system/alerts".into()],
        min_priority: "high".into(),
        timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..WebhookConfig::default()
    }];
    let system = Running::start(cfg).await;

    // Subscribed before anything can alert.
    let mut notifier = NotifierClient::new(channel(system.addrs.notifier).await);
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["system/alerts".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let (first, _t1) = telnet();
    let quiet = TcpListener::bind("127.0.0.1:0").unwrap();
    let quiet_port = quiet.local_addr().unwrap().port();
    // The second telnet listener's port, reserved, not listening yet.
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    let second_port = second.local_addr().unwrap().port();
    drop(second);

    let mut client = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    client
        .create_alert_rule(pb::CreateAlertRuleRequest {
            rule: Some(pb::AlertRule {
                name: "high-and-up".into(),
                min_severity: pb::Severity::High.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    client
        .create_asset(pb::CreateAssetRequest {
            name: "bastion".into(),
            targets: vec!["127.0.0.1".into()],
            ports: format!("{first},{quiet_port},{second_port}"),
            schedule: Some(pb::Schedule {
                every: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    // Run 1: the telnet port is new and HIGH: one alert, on the stream and at the webhook.
    next_asset_run(&mut client, "bastion", 0).await;
    let alert = loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an alert in time")
            .unwrap()
            .expect("the stream stays open");
        if let Some(Event::Notification(n)) = message.event
            && n.r#type == "alert"
        {
            break n;
        }
    };
    let payload: serde_json::Value = serde_json::from_str(&alert.payload).unwrap();
    assert_eq!(payload["port"], u64::from(first));
    assert_eq!(payload["change"], "new");
    assert_eq!(payload["rule"], "high-and-up");
    assert_eq!(payload["asset"], "bastion");
    assert_eq!(alert.severity(), pb::Severity::High);

    // Run 2, unchanged. Then run 3, with a second telnet listener: its alert is the only other
    // one, so run 2 (whose changes the rules look at first) alerted nobody.
    resume_asset(&mut client, "bastion").await;
    next_asset_run(&mut client, "bastion", 1).await;
    let (_l2, _t2) = {
        let l = TcpListener::bind(("127.0.0.1", second_port)).unwrap();
        let t = std::thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let _ = conn.write_all(b"router login: ");
                std::thread::sleep(Duration::from_millis(600));
            }
        });
        ((), t)
    };
    resume_asset(&mut client, "bastion").await;
    next_asset_run(&mut client, "bastion", 2).await;
    let next = loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the second alert in time")
            .unwrap()
            .expect("the stream stays open");
        if let Some(Event::Notification(n)) = message.event
            && n.r#type == "alert"
        {
            break n;
        }
    };
    let payload: serde_json::Value = serde_json::from_str(&next.payload).unwrap();
    assert_eq!(
        payload["port"],
        u64::from(second_port),
        "the unchanged scan alerted again: {payload}"
    );

    // The webhook got the same two, once each.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let ports = alerted_ports(&hooked.lock().unwrap());
        if ports.len() >= 2 {
            let mut ports = ports;
            ports.sort_unstable();
            let mut want = vec![u64::from(first), u64::from(second_port)];
            want.sort_unstable();
            assert_eq!(ports, want);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook got {ports:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rules = client
        .list_alert_rules(pb::ListAlertRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(rules.len(), 1);
    system.stop().await;
    drop(quiet);
}

/// Waits on `stream` for the next notification of type `kind`.
async fn next_of(
    stream: &mut tonic::Streaming<pb::SubscribeResponse>,
    kind: &str,
) -> pb::Notification {
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("a {kind} in time"))
            .unwrap()
            .expect("the stream stays open");
        if let Some(Event::Notification(n)) = message.event
            && n.r#type == kind
        {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yesterdays_scans_are_summed_up_in_one_digest() {
    use phantom_scan_orchestrator::repository::{
        ScanProgress, ScanRepository as _, SqlScanRepository,
        assets::AssetRepository as _,
        conformance::{sample_finding, sample_scan},
    };
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.scan.schedules.check_every = Duration::from_millis(200);
    let system = Running::start(cfg.clone()).await;
    let mut notifier = NotifierClient::new(channel(system.addrs.notifier).await);
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec!["system/alerts".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // An asset due once a year, and a scan of it that succeeded yesterday at noon (UTC), with
    // two new findings, written through the repository on the system's own database.
    let mut client = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let asset = client
        .create_asset(pb::CreateAssetRequest {
            name: "yearly".into(),
            targets: vec!["127.0.0.1".into()],
            ports: "22".into(),
            schedule: Some(pb::Schedule {
                cron: "0 3 1 1 *".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let store =
        SqlScanRepository::new(phantom_storage::Database::open(&cfg.storage).await.unwrap());
    let tenant = cfg.tenancy.default_tenant.clone();
    let record = store.get_asset(&tenant, &asset.id).await.unwrap().unwrap();
    const DAY: i64 = 24 * 3600 * 1_000_000;
    let now = phantom_kit::time::now_micros();
    let yesterday_noon = now.div_euclid(DAY) * DAY - DAY / 2;
    let mut scan = sample_scan(&tenant);
    scan.asset_id = Some(record.id.clone());
    scan.due_at = Some(record.next_due);
    scan.state = pb::ScanState::Running;
    scan.owner = "digest-test".into();
    scan.lease_until = i64::MAX;
    store
        .fire(
            &record,
            Some(&scan),
            record.next_due + DAY * 366,
            record.next_run + DAY * 366,
            now,
        )
        .await
        .unwrap();
    let found = [sample_finding(&scan, 22), sample_finding(&scan, 80)];
    let progress = ScanProgress {
        probes_done: 2,
        progress_percent: 99,
        checkpoint: String::new(),
    };
    store
        .save_progress(&tenant, &scan.id, "digest-test", &found, &progress)
        .await
        .unwrap();
    store
        .finish_scan(
            &tenant,
            &scan.id,
            pb::ScanState::Succeeded,
            "",
            yesterday_noon,
            Some("digest-test"),
        )
        .await
        .unwrap()
        .unwrap();

    // The next round sends yesterday's digest: one scan, two new findings, none alerted (no
    // rule).
    let digest = next_of(&mut stream, "alert.digest").await;
    let payload: serde_json::Value = serde_json::from_str(&digest.payload).unwrap();
    let day = jiff::Timestamp::from_microsecond(yesterday_noon)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    assert_eq!(payload["day"], day.as_str());
    assert_eq!(payload["scans"], 1);
    assert_eq!(payload["new"], 2);
    assert_eq!(payload["not_alerted"], 2);
    assert_eq!(digest.priority(), pb::Priority::Normal);
    system.stop().await;
}
