//! The JSON logs of a whole scan: every service's lines for the request carry the
//! correlation id the caller sent, with the trace and span ids; audit events have their own
//! target; and no secret of the configuration appears in any line, though the system was
//! given an API key and a Redis URL with a password (a Redis that is down, so its client
//! complains, quoting what it dials).
//!
//! Alone in its file: it installs the process's global subscriber.

use std::{
    collections::HashSet,
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use phantom_kit::config::LogFormat;
use phantom_notifier::settings::NotificationLogKind;
use phantom_proto::pb::scan_orchestrator_client::ScanOrchestratorClient;
use phantom_tests::{
    Running, channel,
    llm::{FakeLlm, Mode, with_llm},
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const API_KEY: &str = "sk-test-SECRETa1b2c3d4e5f6g7h8";
const REDIS_PASSWORD: &str = "redis-SECRET-pw-42";
const CORRELATION_ID: &str = "logs-test-corr-1";

/// Log lines, in memory.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line.get(name).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scans_logs_carry_its_correlation_id_in_every_service_and_no_secret() {
    let llm = FakeLlm::start("127.0.0.1:0".parse().unwrap(), Mode::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = with_llm(dir.path(), llm.base_url());
    cfg.analyzer.llm.api_key = API_KEY.into();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.cache.redis_url = format!("redis://phantom:{REDIS_PASSWORD}@127.0.0.1:{closed}");
    cfg.notifier.log = NotificationLogKind::Database;
    cfg.notifier.redis_fanout = false;
    // Storage operations are logged at DEBUG.
    cfg.telemetry.log_filter = "info,phantom_kit::telemetry=debug".into();

    let captured = Captured::default();
    let writer = captured.clone();
    // The process's secrets: the log writer's, and the system's (which registers its
    // configuration's there).
    let secrets = phantom_kit::telemetry::Secrets::new();
    let process = phantom_kit::telemetry::init_with_writer(
        &cfg.telemetry,
        &phantom::config::ServiceName::ALL.map(phantom::config::ServiceName::as_str),
        &secrets,
        LogFormat::Json,
        false,
        move || writer.clone(),
    );

    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ssh.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s
                .write_all(b"SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.8\r\n")
                .await;
        }
    });
    let system = Running::start_in(cfg.clone(), &process, &secrets).await;

    let mut scans = ScanOrchestratorClient::new(channel(system.addrs.scan_orchestrator).await);
    let request = phantom_tests::scan_request(port, CORRELATION_ID);
    let response = scans.create_scan(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-correlation-id").unwrap(),
        CORRELATION_ID,
        "the correlation id is returned to the caller"
    );
    let scan = response.into_inner();
    phantom_tests::wait_for_success(&mut scans, &scan.id).await;
    assert!(llm.calls() > 0, "the analyzer asked the LLM, with the key");
    // Whatever code prints a secret, the line shows `***`.
    tracing::warn!(
        url = %cfg.cache.redis_url,
        key = API_KEY,
        "A careless line quoting secrets"
    );
    // The notifier's lines come as the scan ends; let the last ones in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    system.stop().await;

    let text = captured.text();
    for secret in [API_KEY, REDIS_PASSWORD] {
        assert!(!text.contains(secret), "{secret} was logged:\n{text}");
    }
    let lines = captured.lines();
    let careless = lines
        .iter()
        .find(|l| field(l, "message") == Some("A careless line quoting secrets"))
        .expect("the careless line was written");
    assert_eq!(field(careless, "key"), Some("***"));
    assert_eq!(
        field(careless, "url"),
        Some(&*format!("redis://phantom:***@127.0.0.1:{closed}"))
    );

    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| field(l, "correlation_id") == Some(CORRELATION_ID))
        .collect();
    let services: HashSet<&str> = of_request
        .iter()
        .filter_map(|l| field(l, "service"))
        .collect();
    for service in ["scan-orchestrator", "vuln-analyzer", "notifier"] {
        assert!(
            services.contains(service),
            "no line of {service} carries the correlation id: {of_request:#?}"
        );
    }
    let trace_ids: HashSet<&str> = of_request
        .iter()
        .map(|l| field(l, "trace_id").unwrap_or_else(|| panic!("no trace_id: {l}")))
        .collect();
    assert_eq!(trace_ids.len(), 1, "one request, one trace: {trace_ids:?}");
    for line in &of_request {
        assert!(
            field(line, "span_id").is_some_and(|s| s.len() == 16),
            "{line}"
        );
        assert_eq!(field(line, "tenant"), Some("default"), "{line}");
    }
    // The scan's own lines name it.
    assert!(
        of_request
            .iter()
            .any(|l| field(l, "scan_id") == Some(&*scan.id)
                && field(l, "message") == Some("Scan started"))
    );
    // Calls and queries are logged with their duration, audit events on their own target.
    assert!(
        of_request
            .iter()
            .any(|l| field(l, "event") == Some("db.query")
                && field(l, "operation") == Some("insert_scan")
                && field(l, "service") == Some("scan-orchestrator"))
    );
    assert!(
        of_request
            .iter()
            .any(|l| field(l, "event") == Some("api.response")
                && field(l, "service") == Some("notifier")
                && l.get("duration_ms").is_some_and(Value::is_f64))
    );
    let created = of_request
        .iter()
        .find(|l| field(l, "event") == Some("scan.created"))
        .expect("an audit line for the new scan");
    assert_eq!(field(created, "target"), Some("audit"));
    assert_eq!(field(created, "scan_id"), Some(&*scan.id));
}
