//! Crash survival: an orchestrator killed with SIGKILL in the middle of a scan, and a second
//! process finishing it from the scan's checkpoint, with exactly the findings a clean run
//! gives.

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    net::TcpListener,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};

use common::Killed;

const PATIENCE: Duration = Duration::from_secs(120);
/// Ports scanned, each by a service that accepts and says nothing.
const PORTS: u64 = 30;
/// Probes per checkpoint chunk.
const CHUNK: u64 = 3;

/// `PORTS` listeners that accept and stay silent until the scanner hangs up, and the count
/// of connections they accepted: one per probe, so the count shows the work done.
fn silent_services() -> (Vec<u16>, Arc<AtomicU64>) {
    let accepted = Arc::new(AtomicU64::new(0));
    let ports = (0..PORTS)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let _ = conn.read_to_end(&mut Vec::new());
                    });
                }
            });
            port
        })
        .collect();
    (ports, accepted)
}

/// `phantom up` on `data`, every port 0; returns the process and the orchestrator's URL.
fn up(data: &std::path::Path) -> (Killed, String) {
    let mut child = common::phantom_up(data)
        // A slow scan (one socket at a time, silent services waited for), checkpointed every
        // three probes, and a short lease.
        .env("PHANTOM__SCAN__MAX_IN_FLIGHT", "1")
        .env("PHANTOM__SCAN__BANNER_TIMEOUT", "100ms")
        .env("PHANTOM__SCAN__CHECKPOINT_PROBES", CHUNK.to_string())
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
            ..Default::default()
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
async fn a_scan_interrupted_by_sigkill_resumes_from_its_checkpoint_with_the_same_findings() {
    let (ports, accepted) = silent_services();
    let request = || pb::CreateScanRequest {
        targets: vec!["127.0.0.1".into()],
        ports: ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
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
    assert_eq!(expected.len() as u64, PORTS, "{done:?}");
    drop(clean_up);

    // The crash: SIGKILL once half the probes are done.
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = up(dir.path());
    let mut c = client(&url).await;
    let start = accepted.load(Ordering::SeqCst);
    let id = c.create_scan(request()).await.unwrap().into_inner().id;
    let midway = wait_for(&mut c, &id, |s| {
        s.state == pb::ScanState::Running as i32 && s.probes_done >= PORTS / 2
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
    let by_first = accepted.load(Ordering::SeqCst) - start;

    // A new process on the same data takes the scan over once the dead one's lease lapses,
    // and continues from the checkpoint.
    let (_second, url) = up(dir.path());
    let mut c = client(&url).await;
    let finished = wait_for(&mut c, &id, |s| s.state == pb::ScanState::Succeeded as i32).await;
    let by_second = accepted.load(Ordering::SeqCst) - start - by_first;
    assert_eq!(finished.progress_percent, 100);
    assert_eq!(
        findings(&mut c, &id).await,
        expected,
        "exactly the findings of a clean run, none twice"
    );
    assert_eq!(finished.findings_count, PORTS);
    let redone = by_first + by_second - PORTS;
    println!(
        "SIGKILL after {} of {PORTS} probes stored ({by_first} run): the second process ran \
         {by_second}; {redone} probes were run twice",
        midway.probes_done
    );
    // What the checkpoint held when the progress was read, less the chunk in progress, is
    // not run again (one socket at a time: chunks finish in order). Starting over would run
    // all PORTS.
    assert!(
        by_second <= PORTS - midway.probes_done + (CHUNK - 1),
        "the second process ran {by_second} probes: it did not resume from the checkpoint"
    );
}
