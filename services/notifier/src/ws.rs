//! The WebSocket gateway, for browsers and dashboards: the same rooms, filters and resume as
//! gRPC `Subscribe`, as JSON text messages.
//!
//! `GET /ws?rooms=scan/ID,system&after=scan/ID:12&min_priority=high&types=finding`
//!
//! Every message is one JSON object with a `"kind"`: `"subscribed"` first (with `after`: per
//! room, the sequence the subscription starts after), `"notification"` (with `room`,
//! `sequence`, `priority`, `type`, `payload`, `id`, `created_at`, `severity`), `"heartbeat"`
//! (with `dropped_low`, `dropped_normal`), `"pong"`, or `"error"` just before the server
//! closes the socket. A client resumes by reconnecting with `after=<room>:<last sequence>`.
//!
//! Limits and checks, from `[notifier.ws]`:
//! - the `Origin` of browsers must be allowed (`allowed_origins`), else 403 before the upgrade;
//! - connections per replica and per IP are bounded (503 and 429 before the upgrade);
//! - the client may send `{"kind":"ping"}` (answered `{"kind":"pong"}`); a frame larger than
//!   `max_frame_bytes` closes with 1009, a binary frame with 1003, anything else malformed
//!   with 1007;
//! - the server pings every `ping_every`; a client that misses two is closed (1001).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    extract::{
        ConnectInfo, Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    http::{HeaderMap, StatusCode, header::ORIGIN},
    response::{IntoResponse, Response},
    routing::get,
};
use phantom_proto::pb;
use phantom_runtime::config::WsConfig;
use serde::Deserialize;
use serde_json::json;

use crate::service::{Feed, NotifierService, validate_subscribe};

/// Query parameters of `/ws`.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Comma-separated rooms.
    #[serde(default)]
    rooms: String,
    /// Comma-separated `room:sequence` resume points.
    #[serde(default)]
    after: String,
    /// `low`, `normal`, `high` or `critical`.
    #[serde(default)]
    min_priority: String,
    /// Comma-separated types.
    #[serde(default)]
    types: String,
    /// `low`, `medium`, `high` or `critical`: findings below it are not sent.
    #[serde(default)]
    min_severity: String,
}

#[derive(Debug, Clone)]
struct Gateway {
    service: NotifierService,
    tenant: String,
    config: Arc<WsConfig>,
    connections: Arc<Connections>,
}

/// Open connections, in total and per IP.
#[derive(Debug, Default)]
struct Connections {
    total: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection; dropping it gives its slots back.
#[derive(Debug)]
struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        let mut by_ip = self
            .connections
            .by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        config: &WsConfig,
    ) -> Result<Slot, (StatusCode, String)> {
        let mut by_ip = self
            .by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= config.max_connections {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this replica has {} connections, its limit",
                    config.max_connections
                ),
            ));
        }
        let mine = by_ip.entry(ip).or_default();
        if *mine >= config.max_connections_per_ip {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{ip} has {} connections, the limit per address",
                    config.max_connections_per_ip
                ),
            ));
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            connections: self.clone(),
            ip,
        })
    }
}

/// Whether a browser at `origin` may connect.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        a == "*"
            || a.trim_end_matches('/')
                .eq_ignore_ascii_case(origin.trim_end_matches('/'))
    })
}

/// The router of the WebSocket listener. Connections act for `tenant` (the deployment's
/// default tenant until authentication lands). Serve it with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>`): limits are per client address.
pub fn router(service: NotifierService, tenant: String, config: WsConfig) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(Gateway {
            service,
            tenant,
            config: Arc::new(config),
            connections: Arc::default(),
        })
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse(params: &Params) -> Result<pb::SubscribeRequest, String> {
    let mut after_sequence = HashMap::new();
    for item in split(&params.after) {
        let (room, seq) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("after: {item:?} is not room:sequence"))?;
        let seq = seq
            .parse::<u64>()
            .map_err(|_| format!("after: {seq:?} is not a sequence number"))?;
        after_sequence.insert(room.to_owned(), seq);
    }
    let min_priority = match params.min_priority.to_ascii_lowercase().as_str() {
        "" => pb::Priority::Unspecified,
        "low" => pb::Priority::Low,
        "normal" => pb::Priority::Normal,
        "high" => pb::Priority::High,
        "critical" => pb::Priority::Critical,
        other => {
            return Err(format!(
                "min_priority: {other:?} is not low, normal, high or critical"
            ));
        }
    };
    let min_severity = match params.min_severity.to_ascii_lowercase().as_str() {
        "" => pb::Severity::Unspecified,
        "info" => pb::Severity::Info,
        "low" => pb::Severity::Low,
        "medium" => pb::Severity::Medium,
        "high" => pb::Severity::High,
        "critical" => pb::Severity::Critical,
        other => {
            return Err(format!(
                "min_severity: {other:?} is not info, low, medium, high or critical"
            ));
        }
    };
    Ok(pb::SubscribeRequest {
        rooms: split(&params.rooms),
        min_priority: min_priority as i32,
        after_sequence,
        types: split(&params.types),
        min_severity: min_severity as i32,
    })
}

async fn upgrade(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    ws: WebSocketUpgrade,
) -> Response {
    // Checked before upgrading, so a refusal is a plain HTTP status a browser console shows.
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !origin_allowed(origin, &gw.config.allowed_origins) {
            tracing::info!(target: "security", origin, peer = %peer, "WebSocket origin refused");
            return (
                StatusCode::FORBIDDEN,
                format!("origin {origin:?} is not allowed (notifier.ws.allowed_origins)"),
            )
                .into_response();
        }
    }
    let slot = match gw.connections.admit(peer.ip(), &gw.config) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let request = match parse(&params) {
        Ok(r) => r,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let (filter, after) = match validate_subscribe(gw.tenant.clone(), request) {
        Ok(v) => v,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let feed = match gw.service.feed(filter, after).await {
        Ok(feed) => feed,
        Err(status) => {
            return (StatusCode::SERVICE_UNAVAILABLE, status.message().to_owned()).into_response();
        }
    };
    let config = gw.config.clone();
    ws.max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            pump(socket, feed, &config).await;
            drop(slot);
        })
}

fn to_json(item: &pb::SubscribeResponse) -> Option<String> {
    Some(match item.event.as_ref()? {
        pb::subscribe_response::Event::Notification(n) => json!({
            "kind": "notification",
            "room": n.room,
            "sequence": n.sequence,
            "priority": pb::Priority::try_from(n.priority).map(|p| p.as_str_name().trim_start_matches("PRIORITY_")).unwrap_or("UNSPECIFIED"),
            "type": n.r#type,
            "payload": n.payload,
            "id": n.id,
            "created_at": n.created_at.as_ref().map(|t| t.seconds),
            "severity": pb::Severity::try_from(n.severity).map(|s| s.as_str_name().trim_start_matches("SEVERITY_")).unwrap_or("UNSPECIFIED"),
        })
        .to_string(),
        pb::subscribe_response::Event::Subscribed(s) => json!({
            "kind": "subscribed",
            "after": s.after_sequence,
        })
        .to_string(),
        pb::subscribe_response::Event::Heartbeat(h) => json!({
            "kind": "heartbeat",
            "dropped_low": h.dropped_low,
            "dropped_normal": h.dropped_normal,
        })
        .to_string(),
    })
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// What a client frame asks.
#[derive(Debug, Deserialize)]
struct ClientMessage {
    kind: String,
}

/// Forwards the feed to the socket until either side ends. The client may only ping
/// (`{"kind":"ping"}`); anything else closes the socket with the matching code.
async fn pump(mut socket: WebSocket, mut feed: Feed, config: &WsConfig) {
    let mut ping = tokio::time::interval(config.ping_every);
    ping.reset();
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            item = feed.recv() => match item {
                Some(Ok(item)) => {
                    let Some(text) = to_json(&item) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Err(status)) => {
                    let msg = json!({"kind": "error", "code": format!("{:?}", status.code()), "message": status.message()}).to_string();
                    let _ = socket.send(Message::Text(msg.into())).await;
                    close(&mut socket, close_code::AGAIN, "resubscribe").await;
                    return;
                }
                None => return,
            },
            _ = ping.tick() => {
                if unanswered >= 2 {
                    close(&mut socket, close_code::AWAY, "no pong").await;
                    return;
                }
                unanswered += 1;
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => unanswered = 0,
                Some(Ok(Message::Ping(_))) => {} // answered by the library
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(err)) => {
                    // Oversize frames surface here (the library refuses to read them).
                    let text = err.to_string();
                    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
                        close(&mut socket, close_code::SIZE, "frame too large").await;
                    }
                    return;
                }
                Some(Ok(Message::Binary(_))) => {
                    close(&mut socket, close_code::UNSUPPORTED, "only JSON text frames").await;
                    return;
                }
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(m) if m.kind == "ping" => {
                            let pong = json!({"kind": "pong"}).to_string();
                            if socket.send(Message::Text(pong.into())).await.is_err() {
                                return;
                            }
                            unanswered = 0;
                        }
                        Ok(_) => {
                            close(&mut socket, close_code::POLICY, "unknown kind: only ping is accepted").await;
                            return;
                        }
                        Err(_) => {
                            close(&mut socket, close_code::INVALID, "malformed frame: expected JSON").await;
                            return;
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let allowed = vec!["https://dash.example.com".to_owned()];
        assert!(origin_allowed("https://dash.example.com", &allowed));
        assert!(origin_allowed("https://DASH.example.com/", &allowed));
        assert!(!origin_allowed("https://evil.example.com", &allowed));
        assert!(!origin_allowed(
            "https://dash.example.com.evil.io",
            &allowed
        ));
        assert!(!origin_allowed("https://dash.example.com", &[]));
        assert!(origin_allowed("null", &["*".to_owned()]));
    }

    #[test]
    fn connections_are_bounded_in_total_and_per_address() {
        let config = WsConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..WsConfig::default()
        };
        let c = Arc::new(Connections::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = c.admit(a, &config).unwrap();
        let _s2 = c.admit(a, &config).unwrap();
        assert_eq!(
            c.admit(a, &config).unwrap_err().0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let _s3 = c.admit(b, &config).unwrap();
        assert_eq!(
            c.admit(b, &config).unwrap_err().0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        drop(s1);
        assert!(
            c.admit(b, &config).is_ok(),
            "a closed connection frees its slots"
        );
    }
}
