//! The LLM's circuit breaker, end to end: a dead endpoint opens it, calls then fall back to
//! the rules at once, `/health/metrics` shows it, and it closes by itself when the endpoint
//! returns.

use std::time::Duration;

use phantom::config::ServiceName;
use phantom_proto::pb::vuln_analyzer_client::VulnAnalyzerClient;
use phantom_tests::{
    PATIENCE, Running, channel, http_get,
    llm::{FakeLlm, Mode, analyze, finding, with_llm},
};

async fn breaker_state(http: std::net::SocketAddr) -> String {
    let (code, body) = http_get(http, "/health/metrics").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["circuit_breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "vuln-analyzer->llm")
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .expect("the LLM breaker is in /health/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_llm_opens_the_breaker_calls_fail_fast_to_rules_and_it_closes_when_the_llm_returns()
{
    let data = tempfile::tempdir().unwrap();
    // A port where nothing listens (yet).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let llm_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let system = Running::start(with_llm(data.path(), format!("http://{llm_addr}/v1"))).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);

    for p in 0..3 {
        assert!(analyze(&mut client, finding(100 + p)).await.degraded);
    }
    assert_eq!(breaker_state(system.addrs.http).await, "OPEN");
    // While open, calls do not wait for the LLM: rules answer at once.
    let started = std::time::Instant::now();
    let fast = analyze(&mut client, finding(200)).await;
    assert!(fast.degraded);
    let snapshot = system
        .registry(ServiceName::VulnAnalyzer)
        .find_breaker("vuln-analyzer->llm")
        .unwrap()
        .snapshot();
    assert!(snapshot.rejected >= 1, "{snapshot:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The LLM comes back; after the open period a probe succeeds and the breaker closes.
    let fake = FakeLlm::start(llm_addr, Mode::Answer).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = analyze(&mut client, finding(300)).await;
        if !a.degraded {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker never closed"
        );
    }
    assert_eq!(breaker_state(system.addrs.http).await, "CLOSED");
    assert!(fake.calls() >= 1);
    system.stop().await;
}
