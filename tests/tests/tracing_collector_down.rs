//! A collector that is down costs spans, never requests: with the OTLP endpoint pointing at
//! a port nobody listens on, scans run and calls answer as fast as without one.
//!
//! Alone in its file: it installs the process's global subscriber.

use std::time::Duration;

use phantom_kit::config::LogFormat;
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use phantom_tests::{Running, channel, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_run_and_calls_answer_while_the_collector_is_down() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.telemetry.otlp_endpoint = format!("http://{nobody}");
    cfg.telemetry.export_interval = Duration::from_millis(50);
    cfg.telemetry.export_queue = 16;
    phantom_kit::telemetry::init_with_writer(
        &cfg.telemetry,
        &phantom::config::ServiceName::ALL.map(phantom::config::ServiceName::as_str),
        &phantom_kit::telemetry::Secrets::new(),
        LogFormat::Json,
        false,
        std::io::sink,
    );
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = open.local_addr().unwrap().port();
    let system = Running::start(cfg).await;
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);

    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let scan = scans
            .create_scan(pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: port.to_string(),
                ..Default::default()
            })
            .await
            .expect("the call succeeds")
            .into_inner();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "CreateScan took {:?}",
            started.elapsed()
        );
        phantom_tests::wait_for_success(&mut scans, &scan.id).await;
    }
    system.stop().await;
}
