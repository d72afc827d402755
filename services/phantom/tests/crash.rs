//! Crash survival: an orchestrator killed with SIGKILL in the middle of a scan, and a second
//! process finishing it with exactly the findings a clean run gives.

mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::Command,
    time::{Duration, Instant},
};

use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};

use common::Killed;

const PATIENCE: Duration = Duration::from_secs(120);

/// `phantom up` on `data`, every port 0; returns the process and the orchestrator's URL.
fn up(data: &std::path::Path) -> (Killed, String) {
    let mut child = common::phantom_up(data)
        // A slow scan (one socket at a time, silent services waited for) and a short lease.
        .env("PHANTOM__SCAN__MAX_IN_FLIGHT", "1")
        .env("PHANTOM__SCAN__BANNER_TIMEOUT", "700ms")
        .env("PHANTOM__SCAN__LEASE", "1s")
        // Who may call is not this test's subject (tests/tests/identity.rs).
        .env("PHANTOM__AUTH__ENABLED", "false")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("phantom up prints its addresses")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("scan-orchestrator") {
            break format!("http://{}", rest.trim());
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Killed(child), url)
}

async fn client(url: &str) -> ScanOrchestratorClient<tonic::transport::Channel> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Ready means answering, not only listening: its database must be open.
        if let Ok(mut c) = ScanOrchestratorClient::connect(url.to_owned()).await
            && c.list_scans(pb::ListScansRequest::default()).await.is_ok()
        {
            return c;
        }
        assert!(Instant::now() < deadline, "orchestrator never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(
    client: &mut ScanOrchestratorClient<tonic::transport::Channel>,
    id: &str,
    done: impl Fn(&pb::Scan) -> bool,
) -> pb::Scan {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(scan) = client
            .get_scan(pb::GetScanRequest { id: id.to_owned() })
            .await
        {
            let scan = scan.into_inner();
            if done(&scan) {
                return scan;
            }
        }
        assert!(Instant::now() < deadline, "scan {id} never got there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn findings(
    client: &mut ScanOrchestratorClient<tonic::transport::Channel>,
    id: &str,
) -> Vec<(String, u32)> {
    let mut f: Vec<(String, u32)> = client
        .list_findings(pb::ListFindingsRequest {
            scan_id: id.to_owned(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .findings
        .into_iter()
        .map(|f| (f.fingerprint, f.port))
        .collect();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_interrupted_by_sigkill_is_finished_by_the_next_process_with_the_same_findings() {
    // Services that accept and say nothing: each costs the scan two banner timeouts.
    let listeners: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let request = || pb::CreateScanRequest {
        targets: vec!["127.0.0.1".into()],
        ports: ports.clone(),
        ..Default::default()
    };

    // The reference: a clean run.
    let clean_dir = tempfile::tempdir().unwrap();
    let (clean_up, clean_url) = up(clean_dir.path());
    let mut clean = client(&clean_url).await;
    let id = clean.create_scan(request()).await.unwrap().into_inner().id;
    let done = wait_for(&mut clean, &id, |s| {
        s.state == pb::ScanState::Succeeded as i32
    })
    .await;
    let expected = findings(&mut clean, &id).await;
    assert_eq!(expected.len(), 6, "{done:?}");
    drop(clean_up);

    // The crash: SIGKILL once the scan has made progress but is not done.
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = up(dir.path());
    let mut c = client(&url).await;
    let id = c.create_scan(request()).await.unwrap().into_inner().id;
    let midway = wait_for(&mut c, &id, |s| {
        s.state == pb::ScanState::Running as i32 && s.findings_count >= 1
    })
    .await;
    assert!(midway.progress_percent < 100);
    assert!(
        Command::new("kill")
            .args(["-KILL", &first.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let _ = first.0.wait();
    drop(first);

    // A new process on the same data takes the scan over once the dead one's lease lapses.
    let (_second, url) = up(dir.path());
    let mut c = client(&url).await;
    let finished = wait_for(&mut c, &id, |s| s.state == pb::ScanState::Succeeded as i32).await;
    assert_eq!(finished.progress_percent, 100);
    assert_eq!(
        findings(&mut c, &id).await,
        expected,
        "exactly the findings of a clean run, none twice"
    );
    assert_eq!(finished.findings_count, 6);
    drop(listeners);
}
