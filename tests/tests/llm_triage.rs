//! LLM triage through the vuln-analyzer, against a fake OpenAI-compatible server: annotation,
//! one call per fingerprint, graceful degradation, and the breaker opening and closing.

use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};
use phantom_tests::{
    PATIENCE, Running, channel,
    llm::{FakeLlm, Mode, analyze, finding, with_llm},
};

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
