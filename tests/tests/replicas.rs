//! Two scan-orchestrator replicas on one PostgreSQL share a batch of scans: every scan runs
//! once, and both replicas take part.

use std::{collections::HashSet, time::Duration};

use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use phantom_scan_orchestrator::repository::{ScanRepository as _, SqlScanRepository};
use phantom_storage::Database;
use phantom_tests::{PATIENCE, Running, channel, config, second_orchestrator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_a_batch_without_running_any_scan_twice() {
    let Some(db) = phantom_kit::testing::postgres_url() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.storage.database_url = db.clone();
    cfg.tenancy.default_tenant =
        phantom_layers::Tenant::parse(&format!("replicas-{}", std::process::id())).unwrap();
    cfg.scan.max_concurrent_scans = 2;
    cfg.scan.max_in_flight = 1;
    cfg.scan.banner_timeout = Duration::from_millis(250);
    cfg.scan.claim_every = Duration::from_millis(200);
    let a = Running::start(cfg.clone()).await;

    // Replica B: another orchestrator on the same database.
    let (stop_b, b) = second_orchestrator(&cfg, &a).await;

    // Silent services: each scan takes a moment, so one replica cannot take them all.
    let silent: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports = silent
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut client = ScanOrchestratorClient::new(channel(a.addrs.scan_orchestrator).await);
    let mut ids = Vec::new();
    for _ in 0..8 {
        let scan = client
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
    let tenant = cfg.tenancy.default_tenant.clone();
    let deadline = std::time::Instant::now() + PATIENCE;
    let finished = loop {
        let mut scans = Vec::new();
        for id in &ids {
            let id = phantom_domain::ScanId::parse(id).unwrap();
            scans.push(store.get_scan(&tenant, &id).await.unwrap().unwrap());
        }
        if scans.iter().all(|s| s.state == pb::ScanState::Succeeded) {
            break scans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never finished"
        );
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

    stop_b.cancel();
    b.await.unwrap().unwrap();
    a.stop().await;
    drop(silent);
}
