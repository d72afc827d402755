//! The HTTP side: `/health` and `/health/metrics` in the JSON shapes of the original design,
//! and `/metrics` in the Prometheus text format.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use phantom_kit::{
    http::{AllowedHosts, restrict_hosts},
    metrics::{from_pb, render},
    telemetry::Secrets,
};
use phantom_layers::exposition::Families;
use phantom_proto::pb::{self, metrics_client::MetricsClient};
use serde_json::{Value, json};

use crate::{checks::status_name, service::Aggregator};

/// Collects `phantom.v1.Metrics` from every service.
#[derive(Debug, Clone)]
pub struct Collector {
    clients: Vec<(String, MetricsClient<tonic::transport::Channel>)>,
    timeout: Duration,
    bearer: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

/// One answer per service: its name, and what it said about itself.
type Collected<'a> = Vec<(&'a str, pb::GetMetricsResponse)>;

impl Collector {
    /// A collector over the channels to the services, each call bounded by `timeout` and
    /// carrying `bearer` as its `authorization`.
    pub fn new(
        channels: &[(String, tonic::transport::Channel)],
        timeout: Duration,
        bearer: Option<::http::HeaderValue>,
    ) -> Self {
        Self {
            clients: channels
                .iter()
                .map(|(service, channel)| (service.clone(), MetricsClient::new(channel.clone())))
                .collect(),
            timeout,
            bearer: bearer.and_then(|b| {
                let mut value = tonic::metadata::MetadataValue::try_from(b.as_bytes()).ok()?;
                value.set_sensitive(true);
                Some(value)
            }),
        }
    }

    /// Every service's metrics, concurrently, each within the timeout; each service answers
    /// for its own components, whether it shares its process (`phantom up`) or not.
    /// Unreachable services are listed apart.
    pub async fn collect(&self) -> (Collected<'_>, Vec<&str>) {
        let answers = futures::future::join_all(self.clients.iter().map(|(name, client)| {
            let mut client = client.clone();
            async move {
                let mut request = tonic::Request::new(pb::GetMetricsRequest {});
                if let Some(bearer) = &self.bearer {
                    request
                        .metadata_mut()
                        .insert("authorization", bearer.clone());
                }
                let r = tokio::time::timeout(self.timeout, client.get_metrics(request)).await;
                (
                    name.as_str(),
                    r.ok().and_then(Result::ok).map(tonic::Response::into_inner),
                )
            }
        }))
        .await;
        let mut collected: Collected<'_> = Vec::new();
        let mut unreachable = Vec::new();
        for (name, answer) in answers {
            match answer {
                None => unreachable.push(name),
                Some(a) => collected.push((name, a)),
            }
        }
        (collected, unreachable)
    }
}

#[derive(Debug, Clone)]
struct AppState {
    aggregator: Arc<Aggregator>,
    collector: Collector,
    secrets: Secrets,
}

/// The router of the HTTP listener, answering only requests naming one of `hosts` (421
/// otherwise: see [`phantom_kit::http::AllowedHosts`]), every body scrubbed of `secrets`.
pub fn router(
    aggregator: Arc<Aggregator>,
    collector: Collector,
    hosts: AllowedHosts,
    secrets: Secrets,
) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/health/metrics", get(metrics_json))
        .route("/metrics", get(metrics_prometheus))
        .with_state(AppState {
            aggregator,
            collector,
            secrets,
        });
    restrict_hosts(router, hosts)
}

/// `value` with every string in it scrubbed of credentials: `/health/metrics` carries what
/// every service said about itself, and no URL it quotes may show a password or a key.
fn scrubbed(mut value: Value, secrets: &Secrets) -> Value {
    fn walk(v: &mut Value, secrets: &Secrets) {
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(clean) = secrets.scrub(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, secrets)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, secrets)),
            _ => {}
        }
    }
    walk(&mut value, secrets);
    value
}

fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    let ts = ts.cloned().unwrap_or_default();
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            ts.seconds.max(0).unsigned_abs(),
            ts.nanos.max(0).unsigned_abs(),
        );
    humantime::format_rfc3339_millis(t).to_string()
}

/// The `/health` body of a report.
pub fn health_json(h: &pb::SystemHealth) -> Value {
    let checks: serde_json::Map<String, Value> = h
        .checks
        .iter()
        .map(|c| {
            let mut v = json!({
                "status": status_name(c.status),
                "response_time_ms": c.response_time_ms,
                "critical": c.critical,
                "endpoint": c.endpoint,
            });
            if !c.message.is_empty() {
                v["message"] = json!(c.message);
            }
            if !c.details.is_empty() {
                v["details"] = json!(c.details.iter().collect::<BTreeMap<_, _>>());
            }
            (c.name.clone(), v)
        })
        .collect();
    json!({
        "status": status_name(h.status),
        "timestamp": rfc3339(h.timestamp.as_ref()),
        "total_checks": h.total_checks,
        "successful_checks": h.successful_checks,
        "failed_checks": h.failed_checks,
        "checks": checks,
    })
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let report = state.aggregator.current().await;
    // Load balancers and uptime checks read the code: 503 only when the system is down.
    let code = if report.status == pb::HealthStatus::Unhealthy as i32 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(scrubbed(health_json(&report), &state.secrets)))
}

/// Items of the list `key` of every collected snapshot, each marked with the service it is
/// of and the process that service runs in.
fn merged(collected: &Collected<'_>, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (service, answer) in collected {
        let Ok(snapshot) = serde_json::from_str::<Value>(&answer.snapshot_json) else {
            continue;
        };
        if let Some(items) = snapshot.get(key).and_then(Value::as_array) {
            for item in items {
                let mut item = item.clone();
                if let Some(obj) = item.as_object_mut() {
                    obj.insert("instance".into(), json!(answer.instance));
                    obj.insert("service".into(), json!(service));
                }
                out.push(item);
            }
        }
    }
    out
}

async fn metrics_json(State(state): State<AppState>) -> impl IntoResponse {
    let agg = &state.aggregator;
    let stats = agg.checker().stats();
    let report = agg.current().await;
    let (collected, unreachable) = state.collector.collect().await;
    let (mut caches, mut balancers) = (serde_json::Map::new(), serde_json::Map::new());
    let mut grpc_errors: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (service, answer) in &collected {
        let Ok(snapshot) = serde_json::from_str::<Value>(&answer.snapshot_json) else {
            continue;
        };
        // Each cache and each client's balancer (its endpoints' states), marked with the
        // service it belongs to.
        for (key, into) in [("caches", &mut caches), ("balancers", &mut balancers)] {
            for (name, source) in snapshot
                .get(key)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let mut source = source.clone();
                if let Some(obj) = source.as_object_mut() {
                    obj.insert("service".into(), json!(service));
                }
                into.insert(name.clone(), source);
            }
        }
        for counter in snapshot
            .get("counters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| {
                c["name"] == "grpc_server_handled_total" && c["labels"]["grpc_code"] != "Ok"
            })
        {
            let service = counter["labels"]["grpc_service"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            let code = counter["labels"]["grpc_code"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            *grpc_errors
                .entry(service)
                .or_default()
                .entry(code)
                .or_default() += counter["value"].as_u64().unwrap_or(0);
        }
    }
    let database = report
        .checks
        .iter()
        .find(|c| c.name == "database")
        .map(|c| {
            json!({
                "status": status_name(c.status),
                "endpoint": c.endpoint,
                "response_time_ms": c.response_time_ms,
                "details": c.details.iter().collect::<BTreeMap<_, _>>(),
            })
        });
    Json(scrubbed(
        json!({
            "health_checks": stats,
            "circuit_breakers": merged(&collected, "circuit_breakers"),
            "rate_limiters": merged(&collected, "rate_limiters"),
            "error_handlers": {
                "retries": merged(&collected, "retries"),
                "grpc_errors_by_code": grpc_errors,
            },
            "bulkheads": merged(&collected, "bulkheads"),
            "adaptive_limiters": merged(&collected, "adaptive_limiters"),
            "adaptive_concurrency": merged(&collected, "adaptive_concurrency"),
            "counters": merged(&collected, "counters"),
            "gauges": merged(&collected, "gauges"),
            "caches": caches,
            "balancers": balancers,
            "database": database,
            "collected_from": collected.iter().map(|(s, a)| json!({"instance": a.instance, "service": s})).collect::<Vec<_>>(),
            "unreachable": unreachable,
            "uptime_seconds": agg.uptime().as_secs(),
        }),
        &state.secrets,
    ))
}

async fn metrics_prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let agg = &state.aggregator;
    let stats = agg.checker().stats();
    let report = agg.current().await;
    let (collected, unreachable) = state.collector.collect().await;
    let mut e = Families::default();
    let mut processes = std::collections::BTreeSet::new();
    for (name, answer) in collected {
        // Each service's own metrics under its name; its process's once per process.
        let mut service = Families::default();
        service.merge(from_pb(answer.families), ("service", name));
        e.merge(service, ("phantom_instance", &answer.instance));
        if processes.insert(answer.instance.clone()) {
            e.merge(
                from_pb(answer.process_families),
                ("phantom_instance", &answer.instance),
            );
        }
    }
    for (name, s) in &stats {
        let l = [("check", name.as_str())];
        e.counter(
            "phantom_health_checks_total",
            "Health checks run.",
            &l,
            s.checks_total as f64,
        );
        e.counter(
            "phantom_health_check_failures_total",
            "Health checks that found the component unhealthy.",
            &l,
            s.failures_total as f64,
        );
        e.gauge(
            "phantom_health_check_duration_ms",
            "Duration of the last health check.",
            &l,
            s.last_response_time_ms,
        );
        e.gauge(
            "phantom_health_check_p95_ms",
            "95th percentile duration over the check's history.",
            &l,
            s.p95_response_time_ms,
        );
        e.gauge(
            "phantom_health_check_success_ratio",
            "Share of the check's history that passed.",
            &l,
            s.success_rate,
        );
    }
    for c in &report.checks {
        let up = if c.status == pb::HealthStatus::Unhealthy as i32 {
            0.0
        } else {
            1.0
        };
        e.gauge(
            "phantom_component_up",
            "1 when the component's last check passed.",
            &[("check", c.name.as_str())],
            up,
        );
    }
    for service in unreachable {
        e.gauge(
            "phantom_metrics_unreachable",
            "1 for a service whose metrics could not be collected.",
            &[("service", service)],
            1.0,
        );
    }
    e.gauge(
        "phantom_system_status",
        "Overall status: 1 healthy, 2 degraded, 3 unhealthy.",
        &[],
        f64::from(report.status),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.secrets.scrub(&render(&e)).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use phantom_kit::{CancellationToken, Listeners};

    use crate::Config;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    /// `GET /health` on `addr` naming `host`: the status code.
    async fn status_for_host(addr: std::net::SocketAddr, host: &str) -> u16 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        raw.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {raw:?}"))
    }

    #[tokio::test]
    async fn only_the_configured_host_names_are_answered() {
        let config = Config {
            health: crate::settings::HealthConfig {
                timeout: std::time::Duration::from_secs(1),
                ..Default::default()
            },
            ..Config::default()
        };
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap();
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            http: Some(http),
            health: None,
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::run(
            config,
            listeners,
            phantom_kit::Context::default(),
            shutdown.clone(),
        ));
        let port = addr.port();
        // Served: 200, or 503 while the services it checks are down (none run here).
        for host in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            "LocalHost".to_owned(),
        ] {
            let status = status_for_host(addr, &host).await;
            assert!(status == 200 || status == 503, "{host}: {status}");
        }
        // What a DNS-rebinding page's requests name.
        for host in [
            format!("rebind.attacker.example:{port}"),
            "127.0.0.1.nip.io".into(),
        ] {
            assert_eq!(status_for_host(addr, &host).await, 421, "{host}");
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
