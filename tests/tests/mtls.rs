//! The services talk over mutual TLS, and keep talking while cert-manager rotates their
//! certificate files: a system with TLS and authentication on (no services' token: the
//! services' client certificates are their identity), scans running end to end (the
//! orchestrator calls the analyzer's service-only `AnalyzeFindings` and publishes into scan
//! rooms) while the files are rewritten with a new leaf; no call fails, the new leaf is served
//! once reloaded, and scans made after it are analyzed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use phantom_kit::tls::testing::Ca;
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use phantom_tests::{PATIENCE, Running, channel_over, config};
use rustls_pki_types::{CertificateDer, ServerName};

/// What every service of a `phantom up` presents: loopback names, and the SPIFFE id that
/// makes its holder a service identity.
const SERVICE: &str = "spiffe://phantom.test/phantom";

/// The leaf `addr` serves now, seen by a new TLS connection.
async fn served_leaf(
    addr: std::net::SocketAddr,
    tls: &phantom_kit::tls::Tls,
) -> CertificateDer<'static> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_keep_talking_over_mtls_while_their_certificates_rotate() {
    let data = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let first = ca.leaf(Some(SERVICE), 1);
    let (ca_file, cert_file, key_file) = (
        data.path().join("ca.crt"),
        data.path().join("tls.crt"),
        data.path().join("tls.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert_file, &first.cert).unwrap();
    std::fs::write(&key_file, &first.key).unwrap();

    let mut config = config(data.path());
    config.auth.enabled = true;
    config.tls.enabled = true;
    config.tls.cert_file = cert_file.clone();
    config.tls.key_file = key_file.clone();
    config.tls.ca_file = ca_file;
    config.tls.reload_interval = Duration::from_millis(100);
    let tls = phantom_kit::tls::Tls::new(&config.tls).unwrap();
    let running = Running::start(config).await;
    assert!(
        running.addrs.scan_orchestrator.ip().is_loopback(),
        "loopback only"
    );
    assert_eq!(
        served_leaf(running.addrs.vuln_analyzer, &tls).await,
        first.der
    );

    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = target.accept().await;
        }
    });

    // Scans, one after the other, until told to stop; each must end analyzed.
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = phantom_kit::CancellationToken::new();
    let worker = tokio::spawn({
        let (failed, done, stop) = (failed.clone(), done.clone(), stop.clone());
        let channel = channel_over(running.addrs.scan_orchestrator, Some(&tls));
        async move {
            let mut scans = ScanOrchestratorClient::new(channel);
            while !stop.is_cancelled() {
                let ok = async {
                    let scan = scans
                        .create_scan(pb::CreateScanRequest {
                            targets: vec!["127.0.0.1".into()],
                            ports: port.to_string(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    loop {
                        let now = scans
                            .get_scan(pb::GetScanRequest {
                                id: scan.id.clone(),
                            })
                            .await?
                            .into_inner();
                        if now.state == pb::ScanState::Succeeded as i32 {
                            break;
                        }
                        if now.state != pb::ScanState::Pending as i32
                            && now.state != pb::ScanState::Running as i32
                        {
                            return Ok::<_, tonic::Status>(false);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let findings = scans
                        .list_findings(pb::ListFindingsRequest {
                            scan_id: scan.id.clone(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .findings;
                    // Analyzed: the orchestrator reached the analyzer's service-only method.
                    Ok(!findings.is_empty() && findings.iter().all(|f| f.analysis.is_some()))
                }
                .await;
                match ok {
                    Ok(true) => done.fetch_add(1, Ordering::SeqCst),
                    Ok(false) | Err(_) => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }
    });

    let wait_for = async |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for("a scan before the rotation", &|| {
        done.load(Ordering::SeqCst) >= 1
    })
    .await;

    // cert-manager's rotation: a new key and certificate, written in place.
    let second = ca.leaf(Some(SERVICE), 2);
    std::fs::write(&key_file, &second.key).unwrap();
    std::fs::write(&cert_file, &second.cert).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for addr in [
        running.addrs.scan_orchestrator,
        running.addrs.vuln_analyzer,
        running.addrs.notifier,
        running.addrs.health_aggregator,
    ] {
        while served_leaf(addr, &tls).await != second.der {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{addr} never served the new certificate"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let before = done.load(Ordering::SeqCst);
    wait_for("scans after the rotation", &|| {
        done.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    stop.cancel();
    worker.await.unwrap();

    // The CLI over TLS: a user with a key (here the local admin key) and the CA, no client
    // certificate; without the CA it refuses to guess.
    let health = format!("https://{}", running.addrs.health_aggregator);
    let user = phantom::commands::remote::Credentials {
        ca_cert: Some(data.path().join("ca.crt")),
        data_dir: Some(data.path().to_owned()),
        ..Default::default()
    };
    let json = phantom::commands::Output::Json;
    assert_eq!(
        phantom::commands::health::run(&health, &user, json).await,
        std::process::ExitCode::SUCCESS
    );
    let no_ca = phantom::commands::remote::Credentials {
        ca_cert: None,
        ..user
    };
    assert_eq!(
        phantom::commands::health::run(&health, &no_ca, json).await,
        std::process::ExitCode::from(2)
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no call failed across the rotation"
    );
    running.stop().await;
}
