//! The health and websocket suites, against the whole system: `phantom up` as a child
//! process on free loopback ports, embedded defaults, logs at warn, called with the local
//! admin key it makes.
//!
//! - **health**: `GET /health` (the aggregated health, each call a new connection, as a
//!   load balancer's check) and gRPC `grpc.health.v1.Health/Check` on the
//!   health-aggregator, each closed-loop with 4 callers;
//! - **websocket**: subscribers on the notifier's WebSocket gateway (`/ws`), HIGH
//!   notifications published at a constant rate over gRPC, each carrying the time its
//!   Publish started: the delay from Publish to each subscriber, and the share delivered.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use phantom_proto::pb::{self, notifier_client::NotifierClient};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{
    Options,
    attacks::{printed_addresses, up_command},
    load::{self, Load, Mode},
    model::{Better, Metric, Suite},
};

/// `phantom up` as a child process.
struct System {
    child: tokio::process::Child,
    http: SocketAddr,
    ws: SocketAddr,
    notifier: SocketAddr,
    health_aggregator: SocketAddr,
    bearer: http::HeaderValue,
    _data: tempfile::TempDir,
}

impl System {
    async fn start(binary: &Path) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let mut child = up_command(binary, data.path(), None)
            // One caller makes every call: the per-caller limits would measure themselves.
            .env("PHANTOM__RESILIENCE__SERVER__RATE_LIMIT__ENABLED", "false")
            // Every subscriber comes from 127.0.0.1.
            .env("PHANTOM__NOTIFIER__WS__MAX_CONNECTIONS_PER_IP", "1000")
            .env("PHANTOM__NOTIFIER__MAX_SUBSCRIPTIONS_PER_CALLER", "1000")
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let [_, _, no, ha, http, ws] = printed_addresses(&mut child).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let key = crate::auth::admin_key_path(data.path());
        loop {
            if get_health(http).await.is_ok()
                && let Ok(k) = std::fs::read_to_string(&key)
                && let Some(bearer) = phantom_kit::client::bearer_header(k.trim())
            {
                return Ok(Self {
                    child,
                    http,
                    ws,
                    notifier: no,
                    health_aggregator: ha,
                    bearer,
                    _data: data,
                });
            }
            anyhow::ensure!(Instant::now() < deadline, "the system never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn channel(&self, addr: SocketAddr) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?)
    }
}

/// One `GET /health` on a new connection: Ok for 200 (healthy) or 503 (degraded: still an
/// answer), the status line otherwise.
pub(crate) async fn get_health(addr: SocketAddr) -> load::Outcome {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let fetch = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await.ok()?;
        Some(reply)
    };
    match tokio::time::timeout(Duration::from_secs(5), fetch).await {
        Ok(Some(reply))
            if reply.starts_with(b"HTTP/1.1 200") || reply.starts_with(b"HTTP/1.1 503") =>
        {
            Ok(())
        }
        Ok(Some(_)) => Err("HTTP_STATUS"),
        Ok(None) => Err("TRANSPORT"),
        Err(_) => Err("TIMEOUT"),
    }
}

/// The health suite.
pub async fn health(options: &Options) -> anyhow::Result<Suite> {
    let mut system = System::start(&options.phantom).await?;
    let load = Load {
        mode: Mode::Closed { concurrency: 4 },
        duration: options.duration,
        warmup: options.warmup,
    };
    let http = system.http;
    let rest = load::run(load, move || get_health(http)).await;
    let channel = system.channel(system.health_aggregator).await?;
    let grpc = load::run(load, move || {
        let mut client = HealthClient::new(channel.clone());
        async move {
            load::outcome(
                &client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await,
            )
        }
    })
    .await;
    let _ = system.child.kill().await;
    let mut suite = Suite {
        name: "health".into(),
        ..Default::default()
    };
    suite.notes.push(
        "phantom up, embedded defaults; 4 callers; /health on a new connection per call".into(),
    );
    super::push_measured(&mut suite, "http_health", "calls/s", &rest);
    super::push_measured(&mut suite, "grpc_health_check", "calls/s", &grpc);
    Ok(suite)
}

/// The room the websocket suite publishes into.
const ROOM: &str = "bench/ws";

/// The websocket suite.
pub async fn websocket(options: &Options) -> anyhow::Result<Suite> {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

    let subscribers = if options.smoke { 3 } else { 50 };
    let rate = if options.smoke { 20.0 } else { 200.0 };
    let mut system = System::start(&options.phantom).await?;
    let epoch = Instant::now();
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
    ));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut request = format!("ws://{}/ws?rooms={ROOM}", system.ws).into_client_request()?;
        request
            .headers_mut()
            .insert("authorization", system.bearer.clone());
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "phantom.v1".parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .context("WebSocket upgrade")?;
        // The subscription is live once `subscribed` arrives.
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
                Some(Ok(_)) => continue,
                other => anyhow::bail!("no subscribed frame: {other:?}"),
            }
        }
        let (latency, delivered) = (latency.clone(), delivered.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if v["kind"] != "notification" {
                    continue;
                }
                let Some(sent) = v["payload"].as_str().and_then(|p| p.parse::<u64>().ok()) else {
                    continue;
                };
                let now = epoch.elapsed().as_micros() as u64;
                delivered.fetch_add(1, Ordering::Relaxed);
                latency
                    .lock()
                    .expect("latency")
                    .saturating_record(now.saturating_sub(sent).max(1));
            }
        }));
    }
    let notifier = NotifierClient::new(system.channel(system.notifier).await?);
    let published = Arc::new(AtomicU64::new(0));
    let load = Load {
        mode: Mode::Rate {
            per_second: rate,
            max_in_flight: 1000,
        },
        duration: options.duration,
        warmup: Duration::ZERO,
    };
    let publish = {
        let (published, bearer) = (published.clone(), system.bearer.clone());
        load::run(load, move || {
            let mut client = notifier.clone();
            let (published, bearer) = (published.clone(), bearer.clone());
            async move {
                let sent = epoch.elapsed().as_micros() as u64;
                let mut request = tonic::Request::new(pb::Notification {
                    room: ROOM.into(),
                    priority: pb::Priority::High as i32,
                    r#type: "bench".into(),
                    payload: sent.to_string(),
                    ..Default::default()
                });
                request.metadata_mut().insert(
                    "authorization",
                    bearer.to_str().expect("ASCII").parse().expect("metadata"),
                );
                let result = client.publish(request).await;
                if result.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
                load::outcome(&result)
            }
        })
        .await
    };
    // Every subscriber gets every notification, or the wait ends.
    let expected = published.load(Ordering::Relaxed) * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in &readers {
        r.abort();
    }
    let _ = system.child.kill().await;
    let latency = latency.lock().expect("latency").clone();
    let q = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let mut suite = Suite {
        name: "websocket".into(),
        ..Default::default()
    };
    suite.notes.push(format!(
        "phantom up, embedded defaults; {subscribers} WebSocket subscribers of one room; HIGH \
         notifications published at {rate}/s over gRPC"
    ));
    suite.metrics.push(Metric::new(
        "delivered_share",
        "%",
        Better::Higher,
        if expected == 0 {
            0.0
        } else {
            delivered.load(Ordering::Relaxed) as f64 * 100.0 / expected as f64
        },
    ));
    for (quantile, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
        suite.metrics.push(Metric::new(
            &format!("delivery_{name}_ms"),
            "ms",
            Better::Lower,
            if latency.is_empty() { 0.0 } else { q(quantile) },
        ));
    }
    suite.metrics.push(Metric::new(
        "publish_p99_ms",
        "ms",
        Better::Lower,
        publish.quantile_ms(0.99),
    ));
    let failed = publish.total() - publish.ok();
    if failed > 0 {
        suite
            .notes
            .push(format!("{failed} publishes failed: {:?}", publish.outcomes));
    }
    Ok(suite)
}
