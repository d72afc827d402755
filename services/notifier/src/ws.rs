//! The WebSocket gateway, for browsers and dashboards: the same rooms, filters and resume as
//! gRPC `Subscribe`, as JSON text messages.
//!
//! `GET /ws?rooms=scan/ID,system&after=scan/ID:12&min_priority=high&types=finding`
//!
//! Every message is one JSON object with a `"kind"`: `"subscribed"` first (with `after`: per
//! room, the sequence the subscription starts after), `"notification"` (with `room`,
//! `sequence`, `priority`, `type`, `payload`, `id`, `created_at`, `severity`), `"heartbeat"`
//! (with `dropped_low`, `dropped_normal`), `"pong"`, or `"error"` just before the server
//! closes the socket (with `code`, `message`, and `reason` when the status has one). A client
//! resumes by reconnecting with `after=<room>:<last sequence>` and the `epoch` its
//! `subscribed` frame said. An error with the reason `LOG_RESET` (code `FailedPrecondition`)
//! says the log lost its data while the socket was open ([`crate::log`]): reconnect without
//! `after` or `epoch`, from the start of the new epoch. (A reconnect whose `epoch` is already
//! stale is refused before the upgrade, with the same message.)
//!
//! Limits and checks, from `[notifier.ws]`:
//! - the `Origin` of browsers must be allowed (`allowed_origins`), else 403 before the upgrade;
//! - connections per replica and per client address are bounded (503 and 429 before the
//!   upgrade); a client is its IPv4 address, or its IPv6 /64 (IPv4-mapped IPv6 counts as the
//!   IPv4). The replica's cap, unless configured, is what fits in a quarter of its memory at
//!   [`CONNECTION_BYTES`] each. Each connection is also a subscription, under the notifier's
//!   caps per caller and per replica (429 when refused);
//! - the client may send `{"kind":"ping"}` (answered `{"kind":"pong"}`); a frame larger than
//!   `max_frame_bytes` closes with 1009, a binary frame with 1003, anything else malformed
//!   with 1007;
//! - the server pings every `ping_every`; a client that misses two is closed (1001), and so is
//!   one that does not read: a message the server cannot hand to the socket within two ping
//!   periods ends the connection.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use crate::settings::WsConfig;
use axum::{
    Router,
    extract::{
        ConnectInfo, Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    http::{
        HeaderMap, HeaderValue, StatusCode,
        header::{ORIGIN, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL, WWW_AUTHENTICATE},
    },
    response::{IntoResponse, Response},
    routing::get,
};
use phantom_domain::Tenant;
use phantom_layers::{
    Error,
    auth::{Authenticate, Principal, Refusal, Scope, audit, bearer_of},
    status::echo,
};
use phantom_proto::pb;
use serde::Deserialize;
use serde_json::json;

use crate::{
    limits::{Caller, Full, Place, Places, client_of},
    service::{Feed, MAX_ROOMS_PER_SUBSCRIPTION, NotifierService, validate_subscribe},
};

/// Memory one open connection costs, for the default cap: about 140 KB measured (the
/// socket's read and write buffers, the HTTP/1 connection, the task), rounded up. What its
/// subscription holds is counted apart, under the notifier's subscription cap.
pub const CONNECTION_BYTES: usize = 160 * 1024;

/// The most connections one replica takes: the configured cap, or what fits in a quarter of
/// `memory` ([`crate::memory`]) at [`CONNECTION_BYTES`] each.
pub fn max_connections(config: &WsConfig, memory: u64) -> usize {
    config
        .max_connections
        .unwrap_or_else(|| crate::memory::fit(memory, CONNECTION_BYTES, 16, 10_000))
}

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
    /// The epoch the resume points belong to (what the `subscribed` frame said).
    #[serde(default)]
    epoch: String,
}

#[derive(Clone)]
struct Gateway {
    service: NotifierService,
    tenant: Tenant,
    /// Checks credentials; `None` when the deployment runs without authentication.
    auth: Option<Arc<dyn Authenticate>>,
    config: Arc<WsConfig>,
    connections: Arc<Connections>,
}

/// Open connections, in total (the replica's cap, [`max_connections`]) and per client
/// ([`client_of`]).
#[derive(Debug)]
struct Connections(Arc<Places<IpAddr>>);

impl Connections {
    fn new(max: usize, max_per_client: usize) -> Self {
        Self(Places::new(max, max_per_client))
    }

    /// A slot for one more connection from `peer`, held until it is dropped; or the status
    /// to refuse the upgrade with.
    fn admit(&self, peer: IpAddr) -> Result<Place<IpAddr>, (StatusCode, String)> {
        let client = client_of(peer);
        self.0.take(client).map_err(|full| match full {
            Full::Total(max) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this replica has {max} connections, its limit"),
            ),
            Full::Key(mine) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("{client} has {mine} connections, the limit per client"),
            ),
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.0.open().0
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

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("tenant", &self.tenant)
            .field("authenticates", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

/// The subprotocol a browser offers beside its credential (`bearer.<token>`), and the one the
/// gateway answers with: a browser cannot set `authorization` on a WebSocket, and refuses a
/// handshake whose answer names no protocol it offered.
pub const SUBPROTOCOL: &str = "phantom.v1";

/// The credential of an upgrade request: `authorization: Bearer …`, or a
/// `Sec-WebSocket-Protocol` entry `bearer.<token>` (what browsers can send).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_of(headers).or_else(|| {
        headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix("bearer."))
    })
}

impl Gateway {
    /// The tenant a connection acts for: its credential's, which must hold `notify:subscribe`,
    /// when the gateway authenticates; the deployment's otherwise. Refusals are plain HTTP
    /// statuses (401 says nothing about what was wrong; 403 names the scope) and audited.
    async fn identify(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Tenant, Response> {
        let Some(auth) = &self.auth else {
            return Ok(self.tenant.clone());
        };
        let refuse = |status: StatusCode, principal: Option<&Principal>, message: &str| {
            let who = principal.map(Principal::id);
            audit::record(
                who.as_deref(),
                None,
                "GET /ws",
                None,
                status.as_u16(),
                Some(peer),
            );
            let mut response = (status, message.to_owned()).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        };
        let principal = match bearer(headers) {
            Some(token) => auth.authenticate(token).await,
            None => Err(Refusal::Unknown),
        };
        let principal = match principal {
            Ok(p) => p,
            Err(Refusal::Unavailable(_)) => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "cannot check credentials now; retry",
                ));
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "missing or invalid credentials: send `authorization: Bearer <API key or token>`",
                ));
            }
        };
        if !principal.has(Scope::NotifySubscribe) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                Some(&principal),
                "this endpoint needs notify:subscribe",
            ));
        }
        Ok(principal
            .tenant
            .clone()
            .unwrap_or_else(|| self.tenant.clone()))
    }
}

/// The router of the WebSocket listener. Connections act for the tenant of their credential
/// when `auth` is given, for `tenant` (the deployment's default) otherwise; at most
/// `max_connections` at once ([`max_connections`]). Serve it with connect info
/// (`into_make_service_with_connect_info::<SocketAddr>`): limits are per client address.
pub fn router(
    service: NotifierService,
    tenant: Tenant,
    auth: Option<Arc<dyn Authenticate>>,
    config: WsConfig,
    max_connections: usize,
) -> Router {
    let connections = Arc::new(Connections::new(
        max_connections,
        config.max_connections_per_ip,
    ));
    routes(Gateway {
        service,
        tenant,
        auth,
        config: Arc::new(config),
        connections,
    })
}

fn routes(gateway: Gateway) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(gateway)
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse(params: &Params) -> Result<pb::SubscribeRequest, String> {
    // Counted before anything is built from them (the subscription's own check says the same).
    for (name, list) in [
        ("rooms", &params.rooms),
        ("after", &params.after),
        ("types", &params.types),
    ] {
        let n = list.split(',').count();
        if n > MAX_ROOMS_PER_SUBSCRIPTION {
            return Err(format!(
                "{name}: {n} entries; at most {MAX_ROOMS_PER_SUBSCRIPTION}"
            ));
        }
    }
    let mut after_sequence = HashMap::new();
    for item in split(&params.after) {
        let (room, seq) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("after: {} is not room:sequence", echo(&item)))?;
        let seq = seq
            .parse::<u64>()
            .map_err(|_| format!("after: {} is not a sequence number", echo(seq)))?;
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
                "min_priority: {} is not low, normal, high or critical",
                echo(other)
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
                "min_severity: {} is not info, low, medium, high or critical",
                echo(other)
            ));
        }
    };
    Ok(pb::SubscribeRequest {
        rooms: split(&params.rooms),
        min_priority: min_priority as i32,
        after_sequence,
        types: split(&params.types),
        min_severity: min_severity as i32,
        epoch: params.epoch.clone(),
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
            let origin = echo(origin);
            tracing::info!(target: "security", origin, peer = %peer, "WebSocket origin refused");
            return (
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed (notifier.ws.allowed_origins)"),
            )
                .into_response();
        }
    }
    let tenant = match gw.identify(&headers, peer).await {
        Ok(tenant) => tenant,
        Err(refused) => return refused,
    };
    let slot = match gw.connections.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let request = match parse(&params) {
        Ok(r) => r,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let (filter, after, epoch) = match validate_subscribe(tenant.clone(), request) {
        Ok(v) => v,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let admission = match gw.service.admit(Caller::new(tenant, Some(peer.ip()))) {
        Ok(admission) => admission,
        Err(err) => {
            let retry_after = match &err {
                Error::ResourceExhausted {
                    retry_after: Some(after),
                    ..
                } => after.as_secs().max(1),
                _ => 1,
            };
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, retry_after.to_string())],
                err.to_string(),
            )
                .into_response();
        }
    };
    let feed = match gw.service.feed(filter, after, &epoch, admission).await {
        Ok(feed) => feed,
        Err(status) => {
            return (refusal_status(status.code()), status.message().to_owned()).into_response();
        }
    };
    let config = gw.config.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(config.max_frame_bytes)
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
            "epoch": s.epoch,
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

/// The `"error"` frame for the status a feed ended with: its code, its message and, when it
/// has one, its reason (`LOG_RESET`, ...), the same as a gRPC subscriber finds in the status's
/// `ErrorInfo`.
fn error_frame(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let mut frame = json!({
        "kind": "error",
        "code": format!("{:?}", status.code()),
        "message": status.message(),
    });
    if let Some(info) = status.get_details_error_info() {
        frame["reason"] = info.reason.into();
    }
    frame.to_string()
}

/// Hands `message` to the socket, unless the client has not made room for it by `deadline`
/// (it does not read). False: the connection is over.
async fn send(socket: &mut WebSocket, message: Message, deadline: Duration) -> bool {
    matches!(
        tokio::time::timeout(deadline, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str, deadline: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    send(socket, Message::Close(Some(frame)), deadline).await;
}

/// What a client frame asks.
#[derive(Debug, Deserialize)]
struct ClientMessage {
    kind: String,
}

/// Forwards the feed to the socket until either side ends. The client may only ping
/// (`{"kind":"ping"}`); anything else closes the socket with the matching code. A client that
/// neither reads nor answers pings is dropped after two ping periods: the pings go
/// unanswered, or the sends stall.
async fn pump(mut socket: WebSocket, mut feed: Feed, config: &WsConfig) {
    let deadline = config.ping_every * 2;
    let mut ping = tokio::time::interval(config.ping_every);
    ping.reset();
    let mut unanswered = 0u32;
    loop {
        tokio::select! {
            item = feed.recv() => match item {
                Some(Ok(item)) => {
                    let Some(text) = to_json(&item) else { continue };
                    if !send(&mut socket, Message::Text(text.into()), deadline).await {
                        return;
                    }
                }
                Some(Err(status)) => {
                    let msg = error_frame(&status);
                    send(&mut socket, Message::Text(msg.into()), deadline).await;
                    close(&mut socket, close_code::AGAIN, "resubscribe", deadline).await;
                    return;
                }
                None => return,
            },
            _ = ping.tick() => {
                if unanswered >= 2 {
                    close(&mut socket, close_code::AWAY, "no pong", deadline).await;
                    return;
                }
                unanswered += 1;
                if !send(&mut socket, Message::Ping(Vec::new().into()), deadline).await {
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
                        close(&mut socket, close_code::SIZE, "frame too large", deadline).await;
                    }
                    return;
                }
                Some(Ok(Message::Binary(_))) => {
                    close(&mut socket, close_code::UNSUPPORTED, "only JSON text frames", deadline).await;
                    return;
                }
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(m) if m.kind == "ping" => {
                            let pong = json!({"kind": "pong"}).to_string();
                            if !send(&mut socket, Message::Text(pong.into()), deadline).await {
                                return;
                            }
                            unanswered = 0;
                        }
                        Ok(_) => {
                            close(&mut socket, close_code::POLICY, "unknown kind: only ping is accepted", deadline).await;
                            return;
                        }
                        Err(_) => {
                            close(&mut socket, close_code::INVALID, "malformed frame: expected JSON", deadline).await;
                            return;
                        }
                    }
                }
            },
        }
    }
}

/// The HTTP status of a subscription refused before the upgrade: a resume point of a log
/// that was reset (LOG_RESET) is a conflict the client resolves by subscribing again, not an
/// outage to retry.
fn refusal_status(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
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
    fn ipv6_peers_are_limited_per_64_and_mapped_ipv4_counts_as_ipv4() {
        let config = WsConfig {
            max_connections_per_ip: 2,
            ..WsConfig::default()
        };
        let c = Connections::new(100, config.max_connections_per_ip);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = c.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = c.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            c.admit(ip("2001:db8:1:2:abcd::1")).unwrap_err().0,
            StatusCode::TOO_MANY_REQUESTS,
            "one /64 is one client"
        );
        assert!(c.admit(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = c.admit(ip("203.0.113.5")).unwrap();
        let _mapped = c.admit(ip("::ffff:203.0.113.5")).unwrap();
        assert_eq!(
            c.admit(ip("203.0.113.5")).unwrap_err().0,
            StatusCode::TOO_MANY_REQUESTS,
            "an IPv4-mapped peer is the IPv4 peer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_dropped_after_two_ping_periods() {
        use crate::service::tests::{PEER, fixture, note, request};
        use phantom_proto::pb::notifier_server::Notifier;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let f = fixture();
        let big = "x".repeat(60 * 1024);
        for _ in 0..400 {
            f.service
                .publish(request(note("scan/a", "finding", big.clone()), PEER))
                .await
                .unwrap();
        }
        let connections = Arc::new(Connections::new(
            10,
            WsConfig::default().max_connections_per_ip,
        ));
        let app = routes(Gateway {
            service: f.service.clone(),
            tenant: Tenant::parse("t").unwrap(),
            auth: None,
            config: Arc::new(WsConfig {
                ping_every: Duration::from_secs(1),
                ..WsConfig::default()
            }),
            connections: connections.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"GET /ws?rooms=scan/a&after=scan/a:0 HTTP/1.1\r\nHost: x\r\n\
                  Upgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = [0u8; 12];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
        // From here on the client reads nothing: 24 MB of replay fill the socket's buffers.
        let started = tokio::time::Instant::now();
        while connections.open() > 0 || f.service.open_subscriptions().0 > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a client that reads nothing is still connected after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(client);
    }

    #[test]
    fn the_error_frame_says_the_reason_a_grpc_subscriber_would_find() {
        let reset = tonic::Status::from(Error::FailedPrecondition {
            reason: "LOG_RESET",
            message: "the notification log lost its data".into(),
        });
        let frame: serde_json::Value = serde_json::from_str(&error_frame(&reset)).unwrap();
        assert_eq!(frame["kind"], "error");
        assert_eq!(frame["code"], "FailedPrecondition");
        assert_eq!(frame["reason"], "LOG_RESET");
        assert_eq!(frame["message"], "the notification log lost its data");
        // A status without details has no reason.
        let plain = tonic::Status::unavailable("server shutting down");
        let frame: serde_json::Value = serde_json::from_str(&error_frame(&plain)).unwrap();
        assert_eq!(frame["code"], "Unavailable");
        assert!(frame.get("reason").is_none(), "{frame}");
    }

    #[test]
    fn connections_are_bounded_in_total_and_per_address() {
        let config = WsConfig {
            max_connections_per_ip: 2,
            ..WsConfig::default()
        };
        let c = Connections::new(3, config.max_connections_per_ip);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = c.admit(a).unwrap();
        let _s2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).unwrap_err().0, StatusCode::TOO_MANY_REQUESTS);
        let _s3 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).unwrap_err().0, StatusCode::SERVICE_UNAVAILABLE);
        drop(s1);
        assert!(c.admit(b).is_ok(), "a closed connection frees its slots");
    }

    #[test]
    fn a_reset_log_is_a_conflict_and_an_outage_is_unavailable() {
        assert_eq!(
            refusal_status(tonic::Code::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            refusal_status(tonic::Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
