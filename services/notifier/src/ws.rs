//! The WebSocket gateway, for browsers and dashboards: the same rooms, filters and resume as
//! gRPC `Subscribe`, as JSON text messages.
//!
//! `GET /ws?rooms=scan/ID,system&after=scan/ID:12&min_priority=high&types=finding`
//!
//! Every message is one JSON object with a `"kind"`: `"notification"` (with `room`,
//! `sequence`, `priority`, `type`, `payload`, `id`, `created_at`), `"heartbeat"`, or `"error"`
//! just before the server closes the socket. A client resumes by reconnecting with
//! `after=<room>:<last sequence seen>`.

use std::collections::HashMap;

use axum::{
    Router,
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use phantom_proto::pb;
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
}

/// The router of the WebSocket listener. Connections act for `tenant` (the deployment's
/// default tenant until authentication lands).
pub fn router(service: NotifierService, tenant: String) -> Router {
    Router::new()
        .route("/ws", get(upgrade))
        .with_state(Gateway { service, tenant })
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
    Query(params): Query<Params>,
    ws: WebSocketUpgrade,
) -> Response {
    // Validate before upgrading, so a bad request is a plain 400 a browser console shows.
    let request = match parse(&params) {
        Ok(r) => r,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let (filter, after) = match validate_subscribe(gw.tenant.clone(), request) {
        Ok(v) => v,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let feed = match gw.service.feed(filter, after) {
        Ok(feed) => feed,
        Err(status) => {
            return (StatusCode::SERVICE_UNAVAILABLE, status.message().to_owned()).into_response();
        }
    };
    ws.max_message_size(4096)
        .on_upgrade(move |socket| pump(socket, feed))
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
        })
        .to_string(),
        pb::subscribe_response::Event::Heartbeat(_) => json!({"kind": "heartbeat"}).to_string(),
    })
}

/// Forwards the feed to the socket until either side ends. Client messages are not part of
/// the protocol: pings are answered (by axum), anything else closes with a policy error.
async fn pump(mut socket: WebSocket, mut feed: Feed) {
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
                    let msg = json!({"kind": "error", "message": status.message()}).to_string();
                    let _ = socket.send(Message::Text(msg.into())).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: close_code::AGAIN, reason: "resubscribe".into() }))).await;
                    return;
                }
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: close_code::POLICY, reason: "this socket only sends".into() }))).await;
                    return;
                }
            },
        }
    }
}
