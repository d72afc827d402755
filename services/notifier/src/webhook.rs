//! Outbound webhooks: notifications of chosen rooms POSTed as JSON to configured URLs.
//!
//! Each destination has its own bounded queue and worker, so a slow or dead destination
//! delays nobody else, and never the streams: publishing only queues (dropping the oldest
//! when the queue is full, counted). The worker delivers one notification at a time, in
//! order, with retries (exponential backoff with full jitter, after the destination's
//! `Retry-After` when it gives one) behind a circuit breaker per destination. A 4xx other
//! than 408 and 429 is the destination refusing the message: it is not retried.
//!
//! Requests carry `X-Phantom-Signature: sha256=<hex of HMAC-SHA256(key, body)>` when a key
//! is configured (through an environment variable, never the configuration file),
//! `X-Phantom-Delivery` (the notification id, stable across retries, for receivers that
//! deduplicate) and `X-Phantom-Event` (its type).
//!
//! Only the replica that accepted a publish forwards it, so each notification is sent once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, atomic::AtomicU64, atomic::Ordering},
    time::Duration,
};

use hmac::{Hmac, Mac};
use phantom_kit::CancellationToken;
use phantom_layers::{
    Tenant,
    backoff::{Backoff, Strategy},
    circuit_breaker::Breaker,
    classify::Verdict,
};
use phantom_proto::pb;

use crate::settings::WebhookConfig;
use sha2::Sha256;
use tokio::sync::Notify;

use crate::repository::NotificationRecord;

/// What a webhook has done, in the metrics registry.
#[derive(Debug)]
struct Counters {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
}

impl Counters {
    fn new(name: &str, r: &phantom_layers::registry::Registry) -> Self {
        let outcome = |o| {
            r.counter(
                "phantom_webhook_notifications_total",
                "Notifications by webhook and outcome: delivered, failed (attempts exhausted or refused), dropped (queue full).",
                &[("webhook", name), ("outcome", o)],
            )
        };
        Self {
            delivered: outcome("delivered"),
            failed: outcome("failed"),
            dropped: outcome("dropped"),
            attempts: r.counter(
                "phantom_webhook_attempts_total",
                "HTTP requests sent to a webhook (first attempts and retries).",
                &[("webhook", name)],
            ),
        }
    }
}

/// One destination.
#[derive(Debug)]
struct Sink {
    config: WebhookConfig,
    /// The tenants it forwards (`None`: every tenant, as its `tenants = ["*"]` says).
    tenants: Option<Vec<Tenant>>,
    min_priority: i32,
    key: Option<Vec<u8>>,
    queue: Mutex<VecDeque<Arc<NotificationRecord>>>,
    wake: Notify,
    breaker: Breaker,
    /// Between attempts: exponential with full jitter, from `backoff` to `max_backoff`.
    backoff: Backoff,
    counters: Counters,
}

fn priority(name: &str) -> i32 {
    match name {
        "low" => pb::Priority::Low as i32,
        "normal" => pb::Priority::Normal as i32,
        "critical" => pb::Priority::Critical as i32,
        _ => pb::Priority::High as i32,
    }
}

/// Whether `room` is forwarded by a destination following `patterns`.
fn room_matches(patterns: &[String], room: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => p == room,
    })
}

/// The signature header's value for `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The configured webhooks.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    sinks: Arc<Vec<Arc<Sink>>>,
}

impl Webhooks {
    /// Starts a worker per configured destination, until `shutdown`. A destination that
    /// names no tenant forwards `default_tenant`'s notifications.
    /// Their breakers and counters are registered in `registry`.
    pub fn start(
        configs: &[WebhookConfig],
        default_tenant: &Tenant,
        registry: &phantom_layers::registry::Registry,
        shutdown: &CancellationToken,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let sinks: Vec<Arc<Sink>> = configs
            .iter()
            .map(|c| {
                let key = (!c.secret_env.is_empty())
                    .then(|| std::env::var(&c.secret_env).ok())
                    .flatten()
                    .map(String::into_bytes);
                if !c.secret_env.is_empty() && key.is_none() {
                    tracing::warn!(webhook = %c.name, variable = %c.secret_env, "Webhook key variable is not set; requests go unsigned");
                }
                let breaker = Breaker::new(format!("notifier->webhook:{}", c.name), c.circuit_breaker.clone());
                registry.breaker(&breaker);
                let tenants = if c.tenants.iter().any(|t| t == "*") {
                    None
                } else if c.tenants.is_empty() {
                    Some(vec![default_tenant.clone()])
                } else {
                    // Checked when the configuration was read.
                    Some(c.tenants.iter().filter_map(|t| Tenant::parse(t)).collect())
                };
                let sink = Arc::new(Sink {
                    tenants,
                    min_priority: priority(&c.min_priority),
                    key,
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    breaker,
                    backoff: Backoff {
                        strategy: Strategy::FullJitter,
                        initial: c.backoff,
                        max: c.max_backoff,
                        multiplier: 2.0,
                    },
                    counters: Counters::new(&c.name, registry),
                    config: c.clone(),
                });
                tokio::spawn(work(sink.clone(), http.clone(), shutdown.clone()));
                sink
            })
            .collect();
        Self {
            sinks: Arc::new(sinks),
        }
    }

    /// Queues `n` for every destination that forwards it. Never waits.
    pub fn offer(&self, n: &Arc<NotificationRecord>) {
        for sink in self.sinks.iter() {
            if n.priority < sink.min_priority
                || !room_matches(&sink.config.rooms, &n.room)
                || sink
                    .tenants
                    .as_ref()
                    .is_some_and(|t| !t.contains(&n.tenant))
            {
                continue;
            }
            let mut queue = sink
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if queue.len() >= sink.config.queue {
                queue.pop_front();
                sink.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(n.clone());
            drop(queue);
            sink.wake.notify_one();
        }
    }
}

fn body(n: &NotificationRecord) -> Vec<u8> {
    let name = |p: i32| {
        pb::Priority::try_from(p)
            .map(|p| p.as_str_name().trim_start_matches("PRIORITY_"))
            .unwrap_or("UNSPECIFIED")
    };
    serde_json::to_vec(&serde_json::json!({
        "id": n.id,
        "tenant": n.tenant,
        "room": n.room,
        "sequence": n.sequence,
        "priority": name(n.priority),
        "type": n.kind,
        "severity": pb::Severity::try_from(n.severity)
            .map(|s| s.as_str_name().trim_start_matches("SEVERITY_"))
            .unwrap_or("UNSPECIFIED"),
        "payload": n.payload,
        "created_at_micros": n.created_at,
    }))
    .unwrap_or_default()
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Retry, after at least this long if the destination said.
    Retry(Option<Duration>),
    /// The destination refused the message; retrying would not help.
    Refused(u16),
}

async fn attempt(
    sink: &Sink,
    http: &reqwest::Client,
    n: &NotificationRecord,
    body: &[u8],
) -> Attempt {
    let mut request = http
        .post(sink.config.url.expose())
        .timeout(sink.config.timeout)
        .header("content-type", "application/json")
        .header("x-phantom-delivery", &n.id)
        .header("x-phantom-event", &n.kind);
    if let Some(key) = &sink.key {
        request = request.header("x-phantom-signature", sign(key, body));
    }
    sink.counters.attempts.fetch_add(1, Ordering::Relaxed);
    match request.body(body.to_vec()).send().await {
        Ok(resp) if resp.status().is_success() => Attempt::Delivered,
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            if (400..500).contains(&status) && status != 408 && status != 429 {
                Attempt::Refused(status)
            } else {
                Attempt::Retry(retry_after)
            }
        }
        Err(err) => {
            // Without the URL: a webhook's URL is its secret.
            tracing::debug!(webhook = %sink.config.name, error = %err.without_url(), "Webhook attempt failed");
            Attempt::Retry(None)
        }
    }
}

/// Delivers one destination's queue, in order, until `shutdown`.
async fn work(sink: Arc<Sink>, http: reqwest::Client, shutdown: CancellationToken) {
    let mut rng = fastrand::Rng::new();
    loop {
        let next = sink
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front();
        let Some(n) = next else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sink.wake.notified() => continue,
            }
        };
        let body = body(&n);
        let mut attempts = 0;
        let delivered = loop {
            // While the breaker is open, wait for it rather than spend attempts.
            let permit = match sink.breaker.try_acquire() {
                Ok(p) => p,
                Err(open) => {
                    let wait = open
                        .retry_after
                        .unwrap_or(sink.config.backoff)
                        .max(Duration::from_millis(50));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            attempts += 1;
            let outcome = attempt(&sink, &http, &n, &body).await;
            let failure = !matches!(outcome, Attempt::Delivered);
            permit.record(Verdict {
                failure,
                retryable: false,
            });
            let after = match outcome {
                Attempt::Delivered => break true,
                Attempt::Refused(status) => {
                    tracing::warn!(webhook = %sink.config.name, status, id = %n.id, "Webhook refused a notification; not retried");
                    break false;
                }
                Attempt::Retry(_) if attempts >= sink.config.max_attempts => break false,
                Attempt::Retry(after) => after,
            };
            // Never below what the destination asked for.
            let wait = sink
                .backoff
                .delay(attempts - 1, Duration::ZERO, &mut rng)
                .max(after.unwrap_or_default());
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        };
        let counter = if delivered {
            &sink.counters.delivered
        } else {
            tracing::warn!(webhook = %sink.config.name, id = %n.id, attempts, "Webhook delivery given up");
            &sink.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_match_exactly_or_by_prefix() {
        let p = vec!["scan/*".to_owned(), "system".to_owned()];
        assert!(room_matches(&p, "scan/0190"));
        assert!(room_matches(&p, "system"));
        assert!(!room_matches(&p, "systemd"));
        assert!(!room_matches(&p, "tenant/a"));
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
