//! One scan, end to end, through the public gRPC API of a whole system started as
//! `phantom up` does (four services, real gRPC between them, embedded SQLite), against
//! listeners this test opened itself.

use std::{collections::HashMap, time::Duration};

use phantom_proto::pb::{
    self, health_aggregator_client::HealthAggregatorClient, notifier_client::NotifierClient,
    scan_orchestrator_client::ScanOrchestratorClient, vuln_analyzer_client::VulnAnalyzerClient,
};
use phantom_tests::{PATIENCE, Running, channel, config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

/// Opens a listener that greets like an SSH server, one that answers like a web server,
/// and finds a port with nothing on it.
async fn targets() -> (u16, u16, u16) {
    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ports = (
        ssh.local_addr().unwrap().port(),
        web.local_addr().unwrap().port(),
        closed,
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = web.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.41 (Ubuntu)\r\nContent-Length: 0\r\n\r\n").await;
            });
        }
    });
    ports
}

async fn watch_to_the_end(
    client: &mut ScanOrchestratorClient<tonic::transport::Channel>,
    id: &str,
) -> Vec<pb::Scan> {
    let mut stream = client
        .watch_scan(pb::WatchScanRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let collect = async {
        while let Some(event) = stream.next().await {
            seen.push(event.unwrap().scan.unwrap());
        }
    };
    tokio::time::timeout(PATIENCE, collect)
        .await
        .expect("scan finishes");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_runs_end_to_end_through_every_service_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    scan_end_to_end(config(data.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scan_runs_on_postgres_and_redis() {
    let data = tempfile::tempdir().unwrap();
    // The database is shared with other tests: a tenant of its own keeps this one's view clean.
    let Some(cfg) = phantom_tests::config_on_backends(data.path(), "e2e") else {
        return;
    };
    scan_end_to_end(cfg).await;
}

async fn scan_end_to_end(cfg: phantom::config::Config) {
    let (ssh_port, web_port, closed_port) = targets().await;
    let system = Running::start(cfg.clone()).await;
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);

    let scan = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: format!("{ssh_port},{web_port},{closed_port}"),
            scanner: String::new(),
            idempotency_key: "e2e-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.scanner, "builtin");
    assert_eq!(scan.state, pb::ScanState::Pending as i32);

    // Progress only grows, and reaches 100 exactly when the scan succeeds.
    let events = watch_to_the_end(&mut scans, &scan.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.state, pb::ScanState::Succeeded as i32, "{last:?}");
    assert_eq!(last.progress_percent, 100);
    assert_eq!(last.findings_count, 2);
    assert_eq!(last.probes_total, 3);
    assert!(last.finished_at.is_some());
    assert!(
        events
            .windows(2)
            .all(|w| w[0].progress_percent <= w[1].progress_percent)
    );
    assert!(
        events
            .iter()
            .filter(|s| s.progress_percent == 100)
            .all(|s| s.state == pb::ScanState::Succeeded as i32)
    );

    // A retry with the same idempotency key returns the same scan.
    let again = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: "1".into(),
            scanner: String::new(),
            idempotency_key: "e2e-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, scan.id);

    // The open ports, and only them, are stored, recognised and analyzed by the analyzer.
    let findings = scans
        .list_findings(pb::ListFindingsRequest {
            scan_id: scan.id.clone(),
            page_size: 0,
            page_token: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    let by_port: HashMap<u32, &pb::Finding> = findings.iter().map(|f| (f.port, f)).collect();
    assert_eq!(findings.len(), 2);
    assert!(!by_port.contains_key(&u32::from(closed_port)));
    let ssh = by_port[&u32::from(ssh_port)];
    assert_eq!(ssh.service, "ssh");
    assert!(ssh.banner.starts_with("SSH-2.0-OpenSSH_9.2p1"));
    let web = by_port[&u32::from(web_port)];
    assert_eq!(web.service, "http");
    assert!(web.banner.contains("Server: Apache/2.4.41"));
    for f in &findings {
        let analysis = f.analysis.as_ref().expect("analyzed");
        assert_eq!(analysis.analyzer, "rules");
        assert!(!analysis.degraded);
        assert_eq!(analysis.fingerprint, f.fingerprint);
        assert!(analysis.confidence > 0);
    }
    // A self-disclosing web server version is a LOW finding (CVSS 3.7) by the rules.
    assert_eq!(web.severity, pb::Severity::Low as i32);
    assert_eq!(web.analysis.as_ref().unwrap().score, 3.7);

    // Progress went through the notifier: replaying the scan's room from the start gives
    // its events in sequence order, ending with the completion.
    let mut notifier = NotifierClient::new(channel(system.addrs.notifier).await);
    let room = format!("scan/{}", scan.id);
    let mut stream = notifier
        .subscribe(pb::SubscribeRequest {
            rooms: vec![room.clone()],
            after_sequence: HashMap::from([(room.clone(), 0)]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    let mut sequences = Vec::new();
    let replay = async {
        while let Some(item) = stream.next().await {
            if let Some(pb::subscribe_response::Event::Notification(n)) = item.unwrap().event {
                sequences.push(n.sequence);
                kinds.push(n.r#type.clone());
                if n.r#type == "scan.finished" {
                    assert_eq!(n.priority, pb::Priority::High as i32);
                    break;
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, replay)
        .await
        .expect("replay reaches scan.finished");
    assert_eq!(kinds.first().map(String::as_str), Some("scan.started"));
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());

    // The health-aggregator reports all four services (and the storage) healthy.
    let mut health = HealthAggregatorClient::new(channel(system.addrs.health_aggregator).await);
    let report = health
        .get_system_health(pb::GetSystemHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        report.status,
        pb::HealthStatus::Healthy as i32,
        "{report:?}"
    );
    for name in [
        "scan-orchestrator",
        "vuln-analyzer",
        "notifier",
        "health-aggregator",
        "database",
        // No "cache": the in-process cache has nothing outside the process to check.
        "system",
    ] {
        let c = report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} checked"));
        assert_eq!(c.status, pb::HealthStatus::Healthy as i32, "{c:?}");
    }

    // A second system on the same data directory sees the first one's scan.
    system.stop().await;
    let second = Running::start(cfg).await;
    let mut scans = ScanOrchestratorClient::new(channel(second.addrs.scan_orchestrator).await);
    let stored = scans
        .get_scan(pb::GetScanRequest {
            id: scan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, pb::ScanState::Succeeded as i32);
    assert_eq!(stored.findings_count, 2);
    let listed = scans
        .list_scans(pb::ListScansRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .scans
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>(),
        vec![scan.id.clone()]
    );
    second.stop().await;
}

fn violation_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_status_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let mut analyzer = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);

    let kept = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: "1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let create = |targets: &[&str], ports: &str, scanner: &str| pb::CreateScanRequest {
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        ports: ports.into(),
        scanner: scanner.into(),
        idempotency_key: String::new(),
    };
    let cases: Vec<(pb::CreateScanRequest, Code, &str)> = vec![
        (create(&[], "80", ""), Code::InvalidArgument, "targets"),
        (
            create(&["not a host!"], "80", ""),
            Code::InvalidArgument,
            "targets[0]",
        ),
        (
            create(&["127.0.0.1", "--script=evil"], "80", ""),
            Code::InvalidArgument,
            "targets[1]",
        ),
        (
            create(&["127.0.0.1"], "80-70", ""),
            Code::InvalidArgument,
            "ports",
        ),
        (
            create(&["127.0.0.1"], "99999", ""),
            Code::InvalidArgument,
            "ports",
        ),
        (
            create(&["127.0.0.1"], "80", "masscan"),
            Code::InvalidArgument,
            "scanner",
        ),
        (
            create(&["10.0.0.0/8"], "80", ""),
            Code::InvalidArgument,
            "targets",
        ),
        (
            create(&["169.254.169.254"], "80", ""),
            Code::PermissionDenied,
            "targets[0]",
        ),
        // nuclei is in no registry this machine reaches: the engine is not offered.
        (
            create(&["127.0.0.1"], "80", "nuclei"),
            Code::FailedPrecondition,
            "",
        ),
    ];
    for (request, code, field) in cases {
        let status = scans.create_scan(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        if !field.is_empty() {
            assert!(
                violation_fields(&status).contains(&field.to_owned()),
                "{request:?}: {status:?}"
            );
        }
    }

    let status = scans
        .get_scan(pb::GetScanRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violation_fields(&status), vec!["id"]);
    let unknown = "01a22523-0000-7000-8000-000000000000";
    let status = scans
        .get_scan(pb::GetScanRequest { id: unknown.into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = scans
        .cancel_scan(pb::CancelScanRequest { id: unknown.into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = scans
        .list_findings(pb::ListFindingsRequest {
            scan_id: unknown.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = scans
        .list_scans(pb::ListScansRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), vec!["page_token"]);
    let status = scans
        .list_scans(pb::ListScansRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), vec!["page_size"]);

    let scored = analyzer
        .score_cvss(pb::ScoreCvssRequest {
            vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (scored.base_score, scored.severity.as_str()),
        (9.8, "CRITICAL")
    );
    for vector in [
        "",
        "CVSS:3.1/AV:N",
        "CVSS:3.1/AV:Z/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "AV:N/AC:L",
    ] {
        let status = analyzer
            .score_cvss(pb::ScoreCvssRequest {
                vector: vector.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{vector:?}");
        assert_eq!(violation_fields(&status), vec!["vector"], "{vector:?}");
    }
    let status = analyzer
        .analyze_findings(pb::AnalyzeFindingsRequest {
            findings: vec![pb::Finding::default()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(violation_fields(&status).contains(&"findings[0].target".to_owned()));

    let mut notifier = NotifierClient::new(channel(system.addrs.notifier).await);
    let status = notifier
        .publish(pb::Notification {
            room: "bad room!".into(),
            r#type: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), vec!["room"]);
    let status = notifier
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&status), vec!["rooms"]);

    // Nothing stored was lost to the bad calls.
    let listed = scans
        .list_scans(pb::ListScansRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.scans.len(), 1);
    assert_eq!(listed.scans[0].id, kept.id);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_answers_reflection_v1_and_v1alpha_and_reports_not_serving_on_shutdown() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::{v1, v1alpha};

    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    // A long drain delay holds the servers in NOT_SERVING long enough to observe it.
    cfg.shutdown.drain_delay = Duration::from_secs(3600);
    let system = Running::start(cfg).await;
    let addrs = [
        (
            system.addrs.scan_orchestrator,
            "phantom.v1.ScanOrchestrator",
        ),
        (system.addrs.vuln_analyzer, "phantom.v1.VulnAnalyzer"),
        (system.addrs.notifier, "phantom.v1.Notifier"),
        (
            system.addrs.health_aggregator,
            "phantom.v1.HealthAggregator",
        ),
    ];
    for (addr, service) in addrs {
        let ch = channel(addr).await;
        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(ch.clone());
        let req = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut resp = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha list_services answer")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_owned()), "{names:?}");
        assert!(
            names.contains(&"grpc.health.v1.Health".to_owned()),
            "{names:?}"
        );

        let mut client = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
        let req = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    service.to_owned(),
                ),
            ),
        };
        let mut resp = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            resp.next().await.unwrap().unwrap().message_response,
            Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ));

        let status = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving);
    }

    system.shutdown.cancel();
    for (addr, service) in addrs {
        phantom_tests::wait_for_status(addr, "", ServingStatus::NotServing).await;
        phantom_tests::wait_for_status(addr, service, ServingStatus::NotServing).await;
    }
    system.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_is_not_serving_until_its_database_answers() {
    use tonic_health::pb::health_check_response::ServingStatus;

    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    // Nothing listens on port 1: the database never answers.
    cfg.storage.database_url = "postgres://phantom@127.0.0.1:1/phantom".into();
    cfg.storage.acquire_timeout = Duration::from_millis(200);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = phantom_kit::CancellationToken::new();
    let server = tokio::spawn(phantom_notifier::run(
        cfg.notifier(),
        phantom_kit::Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        shutdown.clone(),
    ));
    phantom_tests::wait_for_status(addr, "", ServingStatus::NotServing).await;
    phantom_tests::wait_for_status(addr, "phantom.v1.Notifier", ServingStatus::NotServing).await;
    let mut client = NotifierClient::new(channel(addr).await);
    let status = client
        .publish(pb::Notification {
            room: "system".into(),
            r#type: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.get_details_retry_info().is_some());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_nmap_scan_finds_the_same_open_ports_as_the_builtin_engine() {
    if !phantom_kit::testing::nmap_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let (ssh_port, web_port, closed_port) = targets().await;
    let system = Running::start(config(data.path())).await;
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let mut open_ports = Vec::new();
    for engine in ["builtin", "nmap"] {
        let scan = scans
            .create_scan(pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: format!("{ssh_port},{web_port},{closed_port}"),
                scanner: engine.into(),
                idempotency_key: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let last = watch_to_the_end(&mut scans, &scan.id).await.pop().unwrap();
        assert_eq!(
            last.state,
            pb::ScanState::Succeeded as i32,
            "{engine}: {last:?}"
        );
        assert_eq!(last.progress_percent, 100);
        let findings = scans
            .list_findings(pb::ListFindingsRequest {
                scan_id: scan.id.clone(),
                page_size: 0,
                page_token: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .findings;
        assert!(
            findings
                .iter()
                .all(|f| f.engine == engine && f.analysis.is_some())
        );
        let mut ports: Vec<u32> = findings.iter().map(|f| f.port).collect();
        ports.sort_unstable();
        open_ports.push(ports);
    }
    let mut expected = vec![u32::from(ssh_port), u32::from(web_port)];
    expected.sort_unstable();
    assert_eq!(open_ports, vec![expected.clone(), expected]);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nuclei_engine_stores_recorded_results_with_their_cves_and_vectors() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.scan.nuclei.path = concat!(env!("CARGO_MANIFEST_DIR"), "/support/fake-nuclei").into();
    let system = Running::start(cfg).await;
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let scan = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: "8080".into(),
            scanner: "nuclei".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let last = watch_to_the_end(&mut scans, &scan.id).await.pop().unwrap();
    assert_eq!(last.state, pb::ScanState::Succeeded as i32, "{last:?}");
    assert_eq!(last.progress_percent, 100);
    let findings = scans
        .list_findings(pb::ListFindingsRequest {
            scan_id: scan.id.clone(),
            page_size: 0,
            page_token: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(
        findings.len(),
        2,
        "two results; the log line and the broken line are skipped"
    );
    let log4j = findings
        .iter()
        .find(|f| f.check_id == "CVE-2021-44228")
        .unwrap();
    assert_eq!(log4j.engine, "nuclei");
    assert_eq!(log4j.port, 8080);
    assert!(log4j.cve_ids.contains(&"CVE-2021-44228".to_owned()));
    assert_eq!(log4j.banner, "http://127.0.0.1:8080/api/login");
    // The analyzer scores it from the template's vector: 10.0, CRITICAL.
    let analysis = log4j.analysis.as_ref().unwrap();
    assert_eq!(
        (analysis.score, log4j.severity),
        (10.0, pb::Severity::Critical as i32)
    );
    let headers = findings
        .iter()
        .find(|f| f.check_id == "http-missing-security-headers")
        .unwrap();
    assert_eq!(headers.severity, pb::Severity::Info as i32);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_of_a_scan_that_ended_while_the_analyzer_was_down_are_analyzed_when_it_returns() {
    let data = tempfile::tempdir().unwrap();
    let (ssh_port, web_port, _) = targets().await;
    // The analyzer's address, with nothing listening on it yet.
    let analyzer_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(data.path());
    cfg.scan.reanalyze_every = Duration::from_millis(200);
    cfg.resilience.clients.vuln_analyzer.retry.enabled = false;
    let system = Running::start(cfg.clone()).await;

    // An orchestrator whose analyzer is down.
    let mut cfg_o = cfg.clone();
    cfg_o.endpoints.vuln_analyzer = format!("http://{analyzer_addr}");
    cfg_o.endpoints.notifier = format!("http://{}", system.addrs.notifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let orchestrator_addr = listener.local_addr().unwrap();
    let stop = phantom_kit::CancellationToken::new();
    let orchestrator = tokio::spawn(phantom_scan_orchestrator::run(
        cfg_o.scan_orchestrator(),
        phantom_kit::Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        stop.clone(),
    ));
    phantom_tests::wait_for_status(
        orchestrator_addr,
        "",
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
    let mut scans = ScanOrchestratorClient::new(channel(orchestrator_addr).await);
    let scan = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: format!("{ssh_port},{web_port}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let last = watch_to_the_end(&mut scans, &scan.id).await.pop().unwrap();
    assert_eq!(
        last.state,
        pb::ScanState::Succeeded as i32,
        "the scan succeeds without its analyzer"
    );
    let list = |scans: &mut ScanOrchestratorClient<tonic::transport::Channel>| {
        let mut scans = scans.clone();
        let id = scan.id.clone();
        async move {
            scans
                .list_findings(pb::ListFindingsRequest {
                    scan_id: id,
                    page_size: 0,
                    page_token: String::new(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .findings
        }
    };
    assert!(list(&mut scans).await.iter().all(|f| f.analysis.is_none()));

    // The analyzer comes back on its address: the findings get their analyses.
    let analyzer_listener = tokio::net::TcpListener::bind(analyzer_addr).await.unwrap();
    let stop_analyzer = phantom_kit::CancellationToken::new();
    let analyzer = tokio::spawn(phantom_vuln_analyzer::run(
        cfg.vuln_analyzer(),
        phantom_kit::Listeners::grpc_only(analyzer_listener),
        phantom_kit::Context::default(),
        stop_analyzer.clone(),
    ));
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let findings = list(&mut scans).await;
        if findings.len() == 2 && findings.iter().all(|f| f.analysis.is_some()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "findings never analyzed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    stop_analyzer.cancel();
    orchestrator.await.unwrap().unwrap();
    analyzer.await.unwrap().unwrap();
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_scan_stops_the_engine_at_once_and_keeps_the_state_cancelled() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    // A silent service held for up to 30 s per probe: only a cancel ends the probe early.
    cfg.scan.banner_timeout = Duration::from_secs(30);
    cfg.scan.max_in_flight = 1;
    let system = Running::start(cfg).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let scan = scans
        .create_scan(pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: port.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The engine connects and waits for a banner.
    let (mut probe, _) = tokio::time::timeout(PATIENCE, silent.accept())
        .await
        .unwrap()
        .unwrap();
    let cancelled = scans
        .cancel_scan(pb::CancelScanRequest {
            id: scan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, pb::ScanState::Cancelled as i32);
    let cancelled_at = std::time::Instant::now();
    // The engine lets go of the connection: EOF long before the 30 s banner wait.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(25), probe.read(&mut buf))
        .await
        .expect("the probe was dropped")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let stopped_in = cancelled_at.elapsed();
    assert!(stopped_in < Duration::from_secs(25), "{stopped_in:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scans
        .get_scan(pb::GetScanRequest {
            id: scan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after.state,
        pb::ScanState::Cancelled as i32,
        "stays CANCELLED"
    );
    eprintln!("engine stopped {stopped_in:?} after CancelScan");
    system.stop().await;
}
