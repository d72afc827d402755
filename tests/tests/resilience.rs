//! The resilience layers between real services: rate limits answered with `RetryInfo`, and
//! PHANTOM's own clients waiting that long before retrying.

use std::time::{Duration, Instant};

use phantom::config::ServiceName;
use phantom_kit::{client, config::ClientPolicy};
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};
use phantom_tests::{Running, channel, config};
use tonic::Code;
use tonic_types::StatusExt;

const SCORE: &str = "/phantom.v1.VulnAnalyzer/ScoreCvss";

fn score() -> pb::ScoreCvssRequest {
    pb::ScoreCvssRequest {
        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_limit_answers_resource_exhausted_with_retry_info_and_built_in_clients_wait_that_long()
 {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.resilience.server.rate_limit.methods.insert(
        SCORE.into(),
        phantom_layers::rate_limit::QuotaConfig {
            per_second: 2.0,
            burst: 1,
        },
    );
    let system = Running::start(cfg).await;

    // A plain client sees the limit: the second call is refused with the limiter's own time.
    let mut plain = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);
    plain.score_cvss(score()).await.unwrap();
    let refused = plain.score_cvss(score()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let wait = refused
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    // Other methods, and health checks, are not limited by it.
    let health = tonic_health::pb::health_client::HealthClient::new(
        channel(system.addrs.vuln_analyzer).await,
    );
    for _ in 0..20 {
        health
            .clone()
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
    }

    // PHANTOM's own client retries after the RetryInfo delay and succeeds.
    let url = format!("http://{}", system.addrs.vuln_analyzer);
    let registry = phantom_layers::registry::Registry::default();
    let built_in = client::channel(
        "test",
        ServiceName::VulnAnalyzer.as_str(),
        &url,
        &ClientPolicy::default(),
        None,
        None,
        &registry,
    )
    .unwrap();
    let mut built_in = VulnAnalyzerClient::new(built_in);
    tokio::time::sleep(Duration::from_millis(600)).await; // let the bucket refill
    built_in.score_cvss(score()).await.unwrap();
    let started = Instant::now();
    let second = built_in.score_cvss(score()).await.unwrap().into_inner();
    assert_eq!(second.base_score, 9.8);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited {:?}",
        started.elapsed()
    );
    let retries = registry
        .snapshot()
        .retries
        .into_iter()
        .find(|r| r.name == "test->vuln-analyzer")
        .unwrap();
    assert!(
        retries.retries >= 1 && retries.server_pushbacks >= 1,
        "{retries:?}"
    );
    system.stop().await;
}
