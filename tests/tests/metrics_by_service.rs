//! Under `phantom up`, four services share one process but not one registry: each service's
//! `/health/metrics` entries and `/metrics` samples are its own, under its name, once.

use phantom_tests::{Running, config, http_get};

#[tokio::test]
async fn each_service_reports_its_own_breakers_limiters_and_caches_once() {
    let data = tempfile::tempdir().unwrap();
    let system = Running::start(config(data.path())).await;

    let (code, body) = http_get(system.addrs.http, "/health/metrics").await;
    assert_eq!(code, 200, "{body}");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    let owners = |list: &str, name: &str| -> Vec<String> {
        m[list]
            .as_array()
            .unwrap_or_else(|| panic!("{list} in {m}"))
            .iter()
            .filter(|item| item["name"] == name)
            .map(|item| item["service"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    // A client's breaker is its caller's, reported by the caller alone.
    assert_eq!(
        owners("circuit_breakers", "scan-orchestrator->vuln-analyzer"),
        ["scan-orchestrator"]
    );
    assert_eq!(
        owners("circuit_breakers", "vuln-analyzer->cache"),
        ["vuln-analyzer"]
    );
    // Each server's limiter and load shedder, once each, under its own service.
    for service in [
        "scan-orchestrator",
        "vuln-analyzer",
        "notifier",
        "health-aggregator",
    ] {
        let name = format!("{service}/server");
        assert_eq!(owners("rate_limiters", &name), [service], "{m}");
        assert_eq!(owners("bulkheads", &name), [service], "{m}");
    }
    let limiters = m["rate_limiters"].as_array().unwrap().len();
    assert_eq!(limiters, 4, "one server limiter per service: {m}");
    assert_eq!(m["caches"]["vuln-analyzer"]["service"], "vuln-analyzer");

    let (_, text) = http_get(system.addrs.http, "/metrics").await;
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("phantom_circuit_breaker_state{")
                && l.contains(r#"breaker="scan-orchestrator->vuln-analyzer""#)
        })
        .collect();
    assert_eq!(samples.len(), 1, "{text}");
    assert!(
        samples[0].contains(r#"service="scan-orchestrator""#),
        "{}",
        samples[0]
    );
    // Every service's gRPC server counts its own calls.
    for service in [
        "scan-orchestrator",
        "vuln-analyzer",
        "notifier",
        "health-aggregator",
    ] {
        let label = format!(r#"service="{service}""#);
        assert!(
            text.lines()
                .any(|l| l.starts_with("grpc_server_started_total{") && l.contains(&label)),
            "no gRPC counters of {service}:\n{text}"
        );
    }
    system.stop().await;
}
