//! LLM triage through the vuln-analyzer, against a fake OpenAI-compatible server: annotation,
//! one call per fingerprint, graceful degradation, and the breaker opening and closing.

use std::time::Duration;

use phantom_layers::circuit_breaker::WindowConfig;
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};
use phantom_tests::{
    PATIENCE, Running, channel, config,
    llm::{FakeLlm, Mode},
};

fn finding(port: u32) -> pb::Finding {
    pb::Finding {
        target: "10.0.0.5".into(),
        port,
        protocol: "tcp".into(),
        service: "ssh".into(),
        banner: "SSH-2.0-OpenSSH_9.2".into(),
        engine: "builtin".into(),
        check_id: "open-port".into(),
        title: format!("Port {port}/tcp open (ssh)"),
        ..Default::default()
    }
}

fn with_llm(data: &std::path::Path, base_url: String) -> phantom_runtime::Config {
    let mut cfg = config(data);
    let llm = &mut cfg.analyzer.llm;
    llm.base_url = base_url;
    llm.api_key = "sk-test".into();
    llm.model = "test-model".into();
    llm.timeout = Duration::from_millis(500);
    llm.max_retries = 0;
    llm.circuit_breaker.window = WindowConfig::Count { size: 3 };
    llm.circuit_breaker.minimum_calls = 3;
    llm.circuit_breaker.open_duration = Duration::from_millis(500);
    cfg
}

async fn analyze(
    client: &mut VulnAnalyzerClient<tonic::transport::Channel>,
    f: pb::Finding,
) -> pb::Analysis {
    client
        .analyze_findings(pb::AnalyzeFindingsRequest { findings: vec![f] })
        .await
        .unwrap()
        .into_inner()
        .analyses
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_annotates_once_per_fingerprint_and_never_changes_the_score() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start("127.0.0.1:0".parse().unwrap(), Mode::Answer).await;
    let system = Running::start(with_llm(data.path(), fake.base_url())).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);

    let first = analyze(&mut client, finding(22)).await;
    assert_eq!(first.analyzer, "llm:test-model");
    assert!(!first.degraded);
    assert_eq!(first.summary, "An SSH server is reachable.");
    assert_eq!(
        first.likely_impact,
        "Password guessing against exposed accounts."
    );
    assert!(!first.suppression_suggested);
    // The score is the rules' (a version-disclosing banner: CVSS 3.7, LOW), whatever the
    // model says.
    assert_eq!(first.score, 3.7);
    assert_eq!(first.severity, pb::Severity::Low as i32);

    let again = analyze(&mut client, finding(22)).await;
    assert_eq!(again, first, "served from the stored analysis");
    assert_eq!(fake.calls(), 1, "the LLM was asked once");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_hangs_and_garbage_fall_back_to_rules_marked_degraded_then_upgrade() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start("127.0.0.1:0".parse().unwrap(), Mode::Fail(500)).await;
    let mut cfg = with_llm(data.path(), fake.base_url());
    cfg.analyzer.llm.circuit_breaker.enabled = false; // every call reaches the fake here
    let system = Running::start(cfg).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);

    for (mode, port) in [
        (Mode::Fail(500), 1),
        (Mode::Fail(429), 2),
        (Mode::Hang, 3),
        (Mode::Garbage, 4),
    ] {
        fake.set_mode(mode.clone());
        let a = tokio::time::timeout(PATIENCE, analyze(&mut client, finding(port)))
            .await
            .expect("answers in time");
        assert!(a.degraded, "{mode:?}");
        assert_eq!(a.analyzer, "rules", "{mode:?}");
        assert!(!a.summary.is_empty(), "{mode:?}");
    }
    // Once the LLM answers, a degraded analysis is upgraded.
    fake.set_mode(Mode::Answer);
    let upgraded = analyze(&mut client, finding(1)).await;
    assert!(!upgraded.degraded);
    assert_eq!(upgraded.analyzer, "llm:test-model");
    system.stop().await;
}
