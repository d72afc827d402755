//! Redis killed mid-test: the analyzer keeps answering (its cache's breaker opens and the
//! cache passes through to the database), and the cache comes back on its own when Redis
//! does. The test runs its own `redis-server`, so it can kill it.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use phantom::config::ServiceName;
use phantom_layers::circuit_breaker::State;
use phantom_proto::pb::vuln_analyzer_client::VulnAnalyzerClient;
use phantom_storage::cache::{CacheManager, CacheSnapshot};
use phantom_tests::{PATIENCE, Running, channel, llm::finding};

struct RedisServer {
    child: tokio::process::Child,
}

impl RedisServer {
    async fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        tokio::time::timeout(PATIENCE, async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server listens");
        Self { child }
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("redis-server killed");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn analyzer_cache(system: &Running) -> CacheSnapshot {
    let (_, cache) = system
        .registry(ServiceName::VulnAnalyzer)
        .sources()
        .into_iter()
        .find(|(user, _)| user == "vuln-analyzer")
        .expect("the analyzer's cache is registered");
    cache
        .as_any()
        .downcast_ref::<CacheManager>()
        .expect("a cache")
        .snapshot()
}

async fn analyze_ok(client: &mut VulnAnalyzerClient<tonic::transport::Channel>, port: u32) {
    let mut request = tonic::Request::new(phantom_proto::pb::AnalyzeFindingsRequest {
        findings: vec![finding(port)],
    });
    request.set_timeout(Duration::from_secs(10));
    let answer = client.analyze_findings(request).await;
    let analyses = answer.expect("the analyzer answers").into_inner().analyses;
    assert_eq!(analyses.len(), 1);
    assert_eq!(analyses[0].analyzer, "rules");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_requests_keep_succeeding_and_the_cache_comes_back_on_its_own() {
    if !phantom_kit::testing::redis_server_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = RedisServer::start(port, data.path()).await;
    let mut cfg = phantom_tests::config(data.path());
    cfg.cache.redis_url = format!("redis://127.0.0.1:{port}");
    cfg.cache.timeout = Duration::from_millis(500);
    cfg.cache.circuit_breaker.open_duration = Duration::from_millis(300);
    let system = Running::start(cfg).await;
    let mut client = VulnAnalyzerClient::new(channel(system.addrs.vuln_analyzer).await);

    // Redis up: the second analysis of a finding is a cache hit.
    analyze_ok(&mut client, 1).await;
    let before = analyzer_cache(&system);
    analyze_ok(&mut client, 1).await;
    assert_eq!(analyzer_cache(&system).hits, before.hits + 1);
    assert_eq!(analyzer_cache(&system).errors, 0);

    // Redis killed: every request still succeeds, from the database, and the breaker opens.
    redis.kill().await;
    for port in 1..=20 {
        analyze_ok(&mut client, port).await;
    }
    let down = analyzer_cache(&system);
    assert!(down.errors > 0, "{down:?}");
    assert!(
        down.bypassed > 0,
        "the breaker short-circuited calls: {down:?}"
    );

    // Redis back (empty) on the same port: the cache recovers without anybody's help.
    let _redis = RedisServer::start(port, data.path()).await;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let before = analyzer_cache(&system).hits;
            analyze_ok(&mut client, 7).await;
            analyze_ok(&mut client, 7).await;
            let now = analyzer_cache(&system);
            if now.hits > before && now.breaker.state == State::Closed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the cache is used again once Redis is back");
    system.stop().await;
}
