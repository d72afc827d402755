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
    // A second request answers the stored degraded analysis at once: it does not wait on the
    // failing LLM again.
    fake.set_mode(Mode::Hang);
    let again = analyze(&mut client, finding(3)).await;
    assert!(again.degraded);
    // Once the LLM answers, the enrichment queue upgrades every degraded analysis.
    fake.set_mode(Mode::Answer);
    for port in 1..=4 {
        let upgraded = wait_until_enriched(&mut client, finding(port)).await;
        assert_eq!(upgraded.analyzer, "llm:test-model");
        assert_eq!(upgraded.summary, "An SSH server is reachable.");
    }
    system.stop().await;
}

/// Analyzes `f` until its analysis is no longer degraded (the enrichment queue caught up).
async fn wait_until_enriched(
    client: &mut VulnAnalyzerClient<tonic::transport::Channel>,
    f: pb::Finding,
) -> pb::Analysis {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let a = analyze(client, f.clone()).await;
            if !a.degraded {
                return a;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the enrichment queue catches up once the LLM answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysing_a_batch_twice_calls_the_llm_once_per_finding() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start("127.0.0.1:0".parse().unwrap(), Mode::Answer).await;
    let mut cfg = with_llm(data.path(), fake.base_url());
    // The point here is caching, not the adaptive rate: let all twelve through at once.
    cfg.analyzer.llm.adaptive_rate.initial_per_second = 1000.0;
    cfg.analyzer.llm.adaptive_rate.max_per_second = 1000.0;
    let system = Running::start(cfg).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);
    let batch: Vec<pb::Finding> = (1..=12).map(finding).collect();
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(
            client
                .analyze_findings(pb::AnalyzeFindingsRequest {
                    findings: batch.clone(),
                })
                .await
                .unwrap()
                .into_inner()
                .analyses,
        );
    }
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].iter().all(|a| a.analyzer == "llm:test-model"));
    assert_eq!(fake.calls(), 12, "one LLM call per distinct finding");
    system.stop().await;
}

/// The chaos: the LLM fails 30 % of calls and hangs on 10 %. Every finding still gets
/// an analysis within its call's deadline (rules, marked degraded, where the LLM could not
/// answer), and once the LLM is healthy the queue enriches every degraded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_errors_and_10_percent_hangs_every_finding_is_analyzed_in_time_then_enriched()
 {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(
        "127.0.0.1:0".parse().unwrap(),
        Mode::Mixed {
            errors: 3,
            hangs: 1,
        },
    )
    .await;
    let system = Running::start(with_llm(data.path(), fake.base_url())).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);
    let deadline = std::time::Duration::from_secs(5);
    let mut degraded = 0;
    for batch in 0..4u32 {
        let findings: Vec<pb::Finding> = (1..=10).map(|i| finding(batch * 10 + i)).collect();
        let mut request = tonic::Request::new(pb::AnalyzeFindingsRequest {
            findings: findings.clone(),
        });
        request.set_timeout(deadline);
        let analyses = client
            .analyze_findings(request)
            .await
            .expect("answered within the deadline")
            .into_inner()
            .analyses;
        assert_eq!(analyses.len(), findings.len());
        for a in &analyses {
            assert!(!a.summary.is_empty() && a.score > 0.0, "{a:?}");
            if a.degraded {
                assert_eq!(a.analyzer, "rules");
                degraded += 1;
            } else {
                assert_eq!(a.analyzer, "llm:test-model");
            }
        }
    }
    assert!(degraded > 0, "the chaos degraded some analyses");

    fake.set_mode(Mode::Answer);
    for port in 1..=40 {
        wait_until_enriched(&mut client, finding(port)).await;
    }
    system.stop().await;
}

/// A provider that hangs, and a caller's deadline shorter than the LLM timeout: the LLM gets
/// only part of the caller's time, so the caller still gets the rules' verdict (degraded) in
/// time, never DEADLINE_EXCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_leaves_the_caller_time_for_a_degraded_verdict() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start("127.0.0.1:0".parse().unwrap(), Mode::Hang).await;
    let mut cfg = with_llm(data.path(), fake.base_url());
    cfg.analyzer.llm.timeout = std::time::Duration::from_secs(30);
    let system = Running::start(cfg).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);
    let findings = vec![finding(1)];
    let mut request = tonic::Request::new(pb::AnalyzeFindingsRequest {
        findings: findings.clone(),
    });
    // The LLM may take 2.4 s of it (all but a fifth); the answer has the last 0.6 s.
    request.set_timeout(std::time::Duration::from_secs(3));
    let analyses = client
        .analyze_findings(request)
        .await
        .expect("a degraded verdict within the deadline")
        .into_inner()
        .analyses;
    assert_eq!(analyses.len(), 1);
    assert!(
        analyses.iter().all(|a| a.degraded && a.analyzer == "rules"),
        "{analyses:?}"
    );
    system.stop().await;
}
