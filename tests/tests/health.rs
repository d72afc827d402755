//! The health-aggregator against services it watches: stopping one turns `/health` degraded
//! (a non-critical service) or unhealthy (a critical one) as soon as its Watch stream says
//! so, and back when it returns; `/health/metrics` and `/metrics` collect every service's
//! metrics over gRPC; liveness never depends on dependencies, readiness does.
//!
//! The services run as separate tasks with their own shutdown, as they would as pods.

use std::{net::SocketAddr, time::Duration};

use phantom::config::{Config, ServiceName};
use phantom_kit::{CancellationToken, Listeners};
use phantom_tests::{PATIENCE, http_get, wait_for_status};
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;

struct Service {
    name: ServiceName,
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(
    name: ServiceName,
    addr: SocketAddr,
    http: Option<TcpListener>,
    config: &Config,
) -> Service {
    let grpc = TcpListener::bind(addr).await.expect("binds");
    let stop = CancellationToken::new();
    let listeners = Listeners {
        grpc,
        http,
        health: None,
    };
    let (config, token) = (config.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let result = match name {
            ServiceName::ScanOrchestrator => {
                phantom_scan_orchestrator::run(
                    config.scan_orchestrator(),
                    listeners,
                    Default::default(),
                    token,
                )
                .await
            }
            ServiceName::VulnAnalyzer => {
                phantom_vuln_analyzer::run(
                    config.vuln_analyzer(),
                    listeners,
                    Default::default(),
                    token,
                )
                .await
            }
            ServiceName::Notifier => {
                phantom_notifier::run(config.notifier(), listeners, Default::default(), token).await
            }
            ServiceName::HealthAggregator => {
                phantom_health_aggregator::run(
                    config.health_aggregator(),
                    listeners,
                    Default::default(),
                    token,
                )
                .await
            }
        };
        result.expect("service ran");
    });
    wait_for_status(addr, "", ServingStatus::Serving).await;
    Service {
        name,
        addr,
        stop,
        task,
    }
}

impl Service {
    async fn stop(self) -> (ServiceName, SocketAddr) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("stops in time")
            .expect("no panic");
        (self.name, self.addr)
    }
}

fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn health_status(http: SocketAddr) -> (u16, serde_json::Value) {
    let (code, body) = http_get(http, "/health").await;
    (code, serde_json::from_str(&body).expect("JSON"))
}

/// Waits until `/health` says `want`; returns how long that took.
async fn until_status(http: SocketAddr, want: &str) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let (_, v) = health_status(http).await;
        if v["status"] == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "/health never said {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_service_changes_health_at_once_and_metrics_come_from_every_service() {
    let data = tempfile::tempdir().unwrap();
    let mut config = phantom_tests::config(data.path());
    // A long interval: any prompt change below comes from the Watch streams, not polling.
    config.health.interval = Duration::from_secs(30);
    config.shutdown.drain_delay = Duration::from_millis(200);
    let addrs: Vec<(ServiceName, SocketAddr)> =
        ServiceName::ALL.iter().map(|s| (*s, free())).collect();
    for (service, addr) in &addrs {
        let url = format!("http://{addr}");
        match service {
            ServiceName::ScanOrchestrator => config.endpoints.scan_orchestrator = url,
            ServiceName::VulnAnalyzer => config.endpoints.vuln_analyzer = url,
            ServiceName::Notifier => config.endpoints.notifier = url,
            ServiceName::HealthAggregator => config.endpoints.health_aggregator = url,
        }
    }
    let addr_of = |name: ServiceName| addrs.iter().find(|(s, _)| *s == name).unwrap().1;
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    let mut services = Vec::new();
    let mut http_listener = Some(http_listener);
    for (service, addr) in &addrs {
        let extra =
            (*service == ServiceName::HealthAggregator).then(|| http_listener.take().unwrap());
        services.push(start(*service, *addr, extra, &config).await);
    }
    until_status(http, "healthy").await;
    let (code, v) = health_status(http).await;
    assert_eq!(code, 200);
    for key in [
        "status",
        "timestamp",
        "total_checks",
        "successful_checks",
        "failed_checks",
        "checks",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    for check in [
        "scan-orchestrator",
        "vuln-analyzer",
        "notifier",
        "health-aggregator",
        "database",
        "system",
    ] {
        assert!(
            v["checks"][check]["response_time_ms"].is_number(),
            "{check}: {v}"
        );
    }
    assert!(
        v["checks"]["database"]["details"]["pool_size"].is_string(),
        "{v}"
    );
    assert!(
        v["checks"]["system"]["details"]["memory_percent"].is_string(),
        "{v}"
    );

    // /health/metrics and /metrics: collected from every service over gRPC.
    let (code, body) = http_get(http, "/health/metrics").await;
    assert_eq!(code, 200);
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(m["unreachable"].as_array().unwrap().is_empty(), "{m}");
    assert!(
        m["circuit_breakers"]
            .as_array()
            .is_some_and(|b| !b.is_empty()),
        "{m}"
    );
    for key in [
        "health_checks",
        "rate_limiters",
        "error_handlers",
        "caches",
        "balancers",
        "database",
    ] {
        assert!(m.get(key).is_some(), "{key} missing");
    }
    // Each client's endpoints, with their state: the orchestrator's of the analyzer.
    let analyzer_endpoints = &m["balancers"]["scan-orchestrator->vuln-analyzer"];
    assert_eq!(analyzer_endpoints["service"], "scan-orchestrator", "{m}");
    assert_eq!(
        analyzer_endpoints["endpoints"][0]["state"], "active",
        "{analyzer_endpoints}"
    );
    let mut analyzer = phantom_proto::pb::vuln_analyzer_client::VulnAnalyzerClient::new(
        phantom_tests::channel(addr_of(ServiceName::VulnAnalyzer)).await,
    );
    analyzer
        .score_cvss(phantom_proto::pb::ScoreCvssRequest {
            vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
        })
        .await
        .unwrap();
    let (_, text) = http_get(http, "/metrics").await;
    for service in [
        "phantom.v1.VulnAnalyzer",
        "phantom.v1.Metrics",
        "grpc.health.v1.Health",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("grpc_server_started_total") && l.contains(service)),
            "no started counter for {service}"
        );
    }
    assert_eq!(
        text.matches("# TYPE grpc_server_handled_total counter")
            .count(),
        1
    );
    assert!(
        text.contains("grpc_server_handling_seconds_bucket{"),
        "histogram missing"
    );
    assert!(text.contains("phantom_circuit_breaker_state{"));

    // Liveness never depends on others; readiness is what "" says.
    let orchestrator = addr_of(ServiceName::ScanOrchestrator);
    wait_for_status(orchestrator, "liveness", ServingStatus::Serving).await;
    wait_for_status(orchestrator, "readiness", ServingStatus::Serving).await;

    // A non-critical service stops: degraded at once; it returns: healthy again.
    let at = |services: &Vec<Service>, name| services.iter().position(|s| s.name == name).unwrap();
    let notifier = services.remove(at(&services, ServiceName::Notifier));
    let (_, notifier_addr) = notifier.stop().await;
    let took = until_status(http, "degraded").await;
    eprintln!("notifier stopped -> /health degraded in {took:?}");
    let notifier = start(ServiceName::Notifier, notifier_addr, None, &config).await;
    let took = until_status(http, "healthy").await;
    eprintln!("notifier back -> /health healthy in {took:?}");

    // A critical one stops: unhealthy (503).
    let orchestrator = services.remove(at(&services, ServiceName::ScanOrchestrator));
    orchestrator.stop().await;
    let took = until_status(http, "unhealthy").await;
    eprintln!("scan-orchestrator stopped -> /health unhealthy in {took:?}");
    assert_eq!(health_status(http).await.0, 503);

    notifier.stop().await;
    for s in services {
        s.stop().await;
    }
}
