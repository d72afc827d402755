//! The chart's probes against the real binary: the chart is rendered with `helm template`, and
//! each Deployment's container is started as the kubelet would start it — its args, its
//! environment (Secrets resolved to the test's PostgreSQL), its ports (mapped to free loopback
//! ports) and the rendered configuration file — then each probe is performed as the kubelet
//! performs it: `grpc.health.v1.Health/Check` with the probe's service name on the probe's
//! port, within its timeout, only SERVING counting as success.
//!
//! With PostgreSQL stopped, liveness (and startup) pass while readiness does not; once it runs,
//! both pass; when it stops again, readiness fails and liveness does not; and back. Needs
//! `make test` (helm, and a PostgreSQL it may stop and start).

mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_norway::Value;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use common::{Killed, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_phantom");
const PATIENCE: Duration = Duration::from_secs(120);

/// What the kubelet needs of one container.
#[derive(Debug)]
struct Pod {
    name: String,
    args: Vec<String>,
    env: Vec<(String, EnvSource)>,
    ports: Vec<u16>,
    probes: HashMap<&'static str, (u16, String, Duration)>,
}

#[derive(Debug)]
enum EnvSource {
    Value(String),
    Secret(String),
}

fn str_of(v: &Value, path: &[&str]) -> Option<String> {
    let mut v = v;
    for key in path {
        v = v.get(*key)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Deployments and the configuration file of the rendered chart.
fn render(helm: &str) -> (Vec<Pod>, String) {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/phantom");
    let out = Command::new(helm)
        .args(["template", "phantom"])
        .arg(&chart)
        .args(["--set", "database.existingSecret=phantom-db"])
        .args(["--set", "auth.existingSecret=phantom-auth"])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut pods = Vec::new();
    let mut toml = None;
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = <Value as serde::Deserialize>::deserialize(doc).expect("YAML");
        match str_of(&v, &["kind"]).as_deref() {
            Some("ConfigMap") => toml = str_of(&v, &["data", "phantom.toml"]),
            Some("Deployment") => {
                let c = &v["spec"]["template"]["spec"]["containers"][0];
                let strings = |v: &Value| -> Vec<String> {
                    v.as_sequence()
                        .map(|s| {
                            s.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let env = c["env"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        let name = str_of(e, &["name"]).unwrap();
                        let source = match str_of(e, &["value"]) {
                            Some(v) => EnvSource::Value(v),
                            None => EnvSource::Secret(
                                str_of(e, &["valueFrom", "secretKeyRef", "key"])
                                    .expect("a value or a Secret"),
                            ),
                        };
                        (name, source)
                    })
                    .collect();
                let ports = c["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|p| str_of(p, &["containerPort"]).unwrap().parse().unwrap())
                    .collect();
                let mut probes = HashMap::new();
                for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let p = &c[kind];
                    let port = str_of(p, &["grpc", "port"])
                        .unwrap_or_else(|| panic!("{kind} is a gRPC probe"))
                        .parse()
                        .unwrap();
                    let service = str_of(p, &["grpc", "service"]).unwrap_or_default();
                    let timeout = str_of(p, &["timeoutSeconds"]).map_or(1, |t| t.parse().unwrap());
                    probes.insert(kind, (port, service, Duration::from_secs(timeout)));
                }
                pods.push(Pod {
                    name: str_of(c, &["name"]).unwrap(),
                    args: strings(&c["args"]),
                    env,
                    ports,
                    probes,
                });
            }
            _ => {}
        }
    }
    (pods, toml.expect("the chart renders phantom.toml"))
}

/// Performs a gRPC probe as the kubelet does.
async fn probe(port: u16, service: &str, timeout: Duration) -> bool {
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .ok()?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?
            .into_inner()
            .status();
        Some(status == ServingStatus::Serving)
    };
    tokio::time::timeout(timeout, check).await.ok().flatten() == Some(true)
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts PostgreSQL again when dropped (it is idempotent: `start` on a running server
/// only says so).
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).arg("start").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_probes_see_liveness_without_the_database_and_readiness_only_with_it() {
    let (Some(helm), Some(db), Some(ctl)) = (
        std::env::var("PHANTOM_TEST_HELM").ok(),
        phantom_kit::testing::postgres_url(),
        std::env::var("PHANTOM_TEST_POSTGRES_CTL").ok(),
    ) else {
        return;
    };
    let (pods, toml) = render(&helm);
    assert_eq!(pods.len(), 4, "one Deployment per service");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phantom.toml");
    std::fs::write(&config, toml).unwrap();

    // Each pod's ports, mapped to free loopback ports (pods have a network namespace each).
    let mapped: HashMap<(String, u16), u16> = pods
        .iter()
        .flat_map(|p| {
            p.ports
                .iter()
                .map(|port| ((p.name.clone(), *port), free_port()))
        })
        .collect();
    let local = |pod: &str, port: u16| mapped[&(pod.to_owned(), port)];

    let pg = |cmd: &str| {
        let status = Command::new(&ctl).arg(cmd).status().unwrap();
        assert!(status.success(), "PostgreSQL {cmd}");
    };
    pg("stop");
    // Started again if the test fails while it is stopped: the other tests share it.
    let _restart = Restart(ctl.clone());
    let mut children = Vec::new();
    for pod in &pods {
        let mut cmd = Command::new(BIN);
        for arg in &pod.args {
            cmd.arg(if arg == "/etc/phantom/phantom.toml" {
                config.to_str().unwrap()
            } else {
                arg
            });
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, source) in &pod.env {
            let value = match source {
                EnvSource::Secret(key) if key == "DATABASE_URL" => db.clone(),
                // The auth Secret: what an operator creates once per release.
                EnvSource::Secret(key) if key == "PHANTOM_AUTH_KEY_SECRET" => {
                    "probes-test-key-secret-of-32-bytes-or-more".to_owned()
                }
                EnvSource::Secret(key) if key == "PHANTOM_AUTH_SERVICE_TOKEN" => {
                    "probes-test-service-token-of-32-bytes-or-more".to_owned()
                }
                EnvSource::Secret(key) => panic!("unexpected Secret key {key}"),
                EnvSource::Value(_) if name == "PHANTOM_DATA_DIR" => {
                    dir.path().join(&pod.name).display().to_string()
                }
                // A listen address: this pod's port, mapped.
                EnvSource::Value(v) if v.starts_with("0.0.0.0:") => {
                    let port = v["0.0.0.0:".len()..].parse().unwrap();
                    format!("127.0.0.1:{}", local(&pod.name, port))
                }
                // Another service's URL: its (headless) Service name and port, mapped.
                EnvSource::Value(v) if v.starts_with("http://phantom-") => {
                    let (host, port) = v["http://".len()..].rsplit_once(':').unwrap();
                    let other = host
                        .trim_start_matches("phantom-")
                        .trim_end_matches("-headless");
                    format!("http://127.0.0.1:{}", local(other, port.parse().unwrap()))
                }
                EnvSource::Value(v) => v.clone(),
            };
            cmd.env(name, value);
        }
        children.push(Killed(cmd.spawn().expect("phantom starts")));
    }

    // PostgreSQL down: every pod starts and lives; those that need the database are not ready.
    for pod in &pods {
        for kind in ["startupProbe", "livenessProbe"] {
            let (port, service, timeout) = &pod.probes[kind];
            let port = local(&pod.name, *port);
            until(&format!("{} {kind} passes", pod.name), async || {
                probe(port, service, *timeout).await
            })
            .await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for pod in &pods {
        let (port, service, timeout) = &pod.probes["readinessProbe"];
        let ready = probe(local(&pod.name, *port), service, *timeout).await;
        // The health-aggregator depends on no database: it reports on the others.
        let needs_db = pod.name != "health-aggregator";
        assert_eq!(
            ready, !needs_db,
            "{} readiness with PostgreSQL down",
            pod.name
        );
    }

    // PostgreSQL back: every probe passes.
    pg("start");
    for pod in &pods {
        for kind in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let (port, service, timeout) = &pod.probes[kind];
            let port = local(&pod.name, *port);
            until(
                &format!("{} {kind} passes with PostgreSQL up", pod.name),
                async || probe(port, service, *timeout).await,
            )
            .await;
        }
    }

    // PostgreSQL lost while running: not ready (no calls routed to a pod that cannot serve
    // them) but alive (restarting it would not bring the database back); then ready again.
    pg("stop");
    for pod in pods.iter().filter(|p| p.name != "health-aggregator") {
        let (port, service, timeout) = &pod.probes["readinessProbe"];
        let port = local(&pod.name, *port);
        until(
            &format!("{} not ready without PostgreSQL", pod.name),
            async || !probe(port, service, *timeout).await,
        )
        .await;
        let (port, service, timeout) = &pod.probes["livenessProbe"];
        assert!(
            probe(local(&pod.name, *port), service, *timeout).await,
            "{} liveness without PostgreSQL",
            pod.name
        );
    }
    pg("start");
    for pod in &pods {
        let (port, service, timeout) = &pod.probes["readinessProbe"];
        let port = local(&pod.name, *port);
        until(&format!("{} ready again", pod.name), async || {
            probe(port, service, *timeout).await
        })
        .await;
    }
    drop(children);
}
