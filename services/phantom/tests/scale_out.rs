//! Scale-out as the chart's HPA produces it: two replicas of every service, each a `phantom
//! serve` process on loopback, sharing one PostgreSQL and one Redis. A batch of scans created
//! on both orchestrators runs to the end with no scan run twice and none lost, both replicas
//! taking part; and a subscriber on one notifier replica receives what the other published,
//! once each, in order. Needs `make test` (PostgreSQL and Redis).

mod common;

use std::{
    collections::HashSet,
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use phantom_proto::pb::{
    self, notifier_client::NotifierClient, scan_orchestrator_client::ScanOrchestratorClient,
};
use phantom_scan_orchestrator::repository::{ScanRepository as _, SqlScanRepository};
use phantom_storage::Database;

use common::{Killed, free_port, serving};

const BIN: &str = env!("CARGO_BIN_EXE_phantom");
const PATIENCE: Duration = Duration::from_secs(120);

/// One replica of each service: their addresses.
struct Replica {
    orchestrator: u16,
    analyzer: u16,
    notifier: u16,
    aggregator: u16,
}

async fn channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_share_the_work_and_the_notifications() {
    let (Some(db), Some(redis)) = (
        phantom_kit::testing::postgres_url(),
        phantom_kit::testing::redis_url(),
    ) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (0..2)
        .map(|_| Replica {
            orchestrator: free_port(),
            analyzer: free_port(),
            notifier: free_port(),
            aggregator: free_port(),
        })
        .collect();
    let mut processes = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        for service in [
            "scan-orchestrator",
            "vuln-analyzer",
            "notifier",
            "health-aggregator",
        ] {
            let child = Command::new(BIN)
                .args(["serve", service])
                .env(
                    "PHANTOM_DATA_DIR",
                    data.path().join(format!("{service}-{i}")),
                )
                .env("DATABASE_URL", &db)
                .env("REDIS_URL", &redis)
                .env(
                    "PHANTOM_SCAN_ORCHESTRATOR_ADDR",
                    format!("127.0.0.1:{}", r.orchestrator),
                )
                .env(
                    "PHANTOM_VULN_ANALYZER_ADDR",
                    format!("127.0.0.1:{}", r.analyzer),
                )
                .env("PHANTOM_NOTIFIER_ADDR", format!("127.0.0.1:{}", r.notifier))
                .env(
                    "PHANTOM_HEALTH_AGGREGATOR_ADDR",
                    format!("127.0.0.1:{}", r.aggregator),
                )
                .env("PHANTOM_HTTP_ADDR", "127.0.0.1:0")
                .env("PHANTOM_WS_ADDR", "127.0.0.1:0")
                .env("PHANTOM__SCAN__MAX_CONCURRENT_SCANS", "2")
                // Who may call is not this test's subject (tests/tests/identity.rs).
                .env("PHANTOM__AUTH__ENABLED", "false")
                .env("PHANTOM__SCAN__BANNER_TIMEOUT", "250ms")
                .env("PHANTOM__SCAN__CLAIM_EVERY", "200ms")
                .env_remove("OPENAI_API_KEY")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("phantom serve starts");
            processes.push(Killed(child));
        }
    }
    for r in &replicas {
        for port in [r.orchestrator, r.analyzer, r.notifier, r.aggregator] {
            serving(port).await;
        }
    }

    // A batch of scans, created on both orchestrators, of services that accept and stay
    // silent (each scan takes a moment, so one replica cannot take them all).
    let silent: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports = silent
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(ScanOrchestratorClient::new(channel(r.orchestrator).await));
    }
    let mut ids = Vec::new();
    for i in 0..8 {
        let scan = clients[i % 2]
            .create_scan(pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: ports.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(scan.id);
    }
    let store = SqlScanRepository::new(
        Database::open_url(&db, 2, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let deadline = Instant::now() + PATIENCE;
    let finished = loop {
        let mut scans = Vec::new();
        for id in &ids {
            scans.push(
                store
                    .get_scan(
                        &phantom_layers::Tenant::parse("default").unwrap(),
                        &phantom_domain::ScanId::parse(id).unwrap(),
                    )
                    .await
                    .unwrap()
                    .expect("not lost"),
            );
        }
        if scans.iter().all(|s| s.state == pb::ScanState::Succeeded) {
            break scans;
        }
        assert!(Instant::now() < deadline, "the batch never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        finished.iter().all(|s| s.claims == 1),
        "a scan ran twice: {:?}",
        finished.iter().map(|s| s.claims).collect::<Vec<_>>()
    );
    assert!(finished.iter().all(|s| s.findings_count == 2));
    let owners: HashSet<&str> = finished.iter().map(|s| s.owner.as_str()).collect();
    assert_eq!(owners.len(), 2, "both replicas took part: {owners:?}");

    // A subscriber on notifier replica 0 gets what replica 1 (and 0) publish, once each.
    let room = format!("scale/{}", ids[0]);
    let mut on_0 = NotifierClient::new(channel(replicas[0].notifier).await);
    let mut on_1 = NotifierClient::new(channel(replicas[1].notifier).await);
    let mut stream = on_0
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.clone()],
            after_sequence: [(room.clone(), 0)].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    for i in 0..6 {
        let publisher = if i % 2 == 0 { &mut on_1 } else { &mut on_0 };
        last = publisher
            .publish(pb::Notification {
                room: room.clone(),
                priority: pb::Priority::High as i32,
                r#type: "test".into(),
                payload: format!("n{i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sequence;
    }
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let item = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("no error");
        if let Some(pb::subscribe_response::Event::Notification(n)) = item.event {
            seen.push(n.sequence);
        }
    }
    // Publishes on two replicas race through Redis: a notification may overtake one from the
    // other replica (it is then fetched from the log), but each arrives exactly once.
    assert_eq!(last, 6);
    seen.sort_unstable();
    assert_eq!(seen, (1..=6).collect::<Vec<u64>>(), "each once");
    drop(processes);
    drop(silent);
}
