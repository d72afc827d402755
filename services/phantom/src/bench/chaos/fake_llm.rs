//! The LLM the system triages with during the chaos run: an OpenAI-compatible server on
//! loopback (`POST /v1/chat/completions`, and `GET /v1/models` for the health check) that
//! answers well, errs as [`Draws`] says, or answers 429, as the fault injector sets it; and
//! that counts the triages it was sent while it was of no use to the caller.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use super::{
    Aborting,
    schedule::{Draws, Outcome, RETRY_AFTER_S},
};

/// What the fake does with a triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Answers every triage.
    Healthy = 0,
    /// Answers, fails or hangs, as the draws say.
    Erring = 1,
    /// Answers 429 with `Retry-After`.
    RateLimited = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Mode::Erring,
            2 => Mode::RateLimited,
            _ => Mode::Healthy,
        }
    }
}

#[derive(Debug)]
struct Shared {
    seed: u64,
    mode: AtomicU8,
    draws: Mutex<Draws>,
    triages: AtomicU64,
    wasted: AtomicU64,
}

/// A running fake LLM; stops when dropped.
#[derive(Debug)]
pub(crate) struct FakeLlm {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Aborting,
}

impl FakeLlm {
    /// Starts a healthy fake on a free loopback port, its draws made from `seed`.
    pub(crate) async fn start(seed: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            seed,
            mode: AtomicU8::new(Mode::Healthy as u8),
            draws: Mutex::new(Draws::new(seed)),
            triages: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            addr,
            _server: Aborting(server),
        })
    }

    /// The base URL the analyzer is configured with.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// What it does from now on. Each time it starts erring, its draws start again from the
    /// seed: the n-th triage of an erring window meets the same fate in both phases, however
    /// many triages each phase sent before.
    pub(crate) fn set_mode(&self, mode: Mode) {
        if mode == Mode::Erring {
            *self.shared.draws.lock().expect("draws lock") = Draws::new(self.shared.seed);
        }
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Triages received so far.
    pub(crate) fn triages(&self) -> u64 {
        self.shared.triages.load(Ordering::SeqCst)
    }

    /// Triages received that it failed, left hanging or refused with 429: calls the system
    /// sent to a dependency that could not serve them.
    pub(crate) fn wasted(&self) -> u64 {
        self.shared.wasted.load(Ordering::SeqCst)
    }
}

fn completion(content: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-chaos",
        "object": "chat.completion",
        "created": 0,
        "model": "chaos-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360}
    })
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": null}});
    (status, Json(body)).into_response()
}

async fn complete(State(shared): State<Arc<Shared>>) -> Response {
    shared.triages.fetch_add(1, Ordering::SeqCst);
    // Drawn for every triage, whatever the mode: a healthy answer's latency comes from the
    // draws too.
    let (outcome, latency) = shared.draws.lock().expect("draws lock").next();
    let outcome = match Mode::from_u8(shared.mode.load(Ordering::SeqCst)) {
        Mode::RateLimited => {
            shared.wasted.fetch_add(1, Ordering::SeqCst);
            let mut answer = error(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "Rate limit reached for requests",
            );
            answer.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(RETRY_AFTER_S),
            );
            return answer;
        }
        Mode::Erring => outcome,
        Mode::Healthy => Outcome::Answer,
    };
    match outcome {
        Outcome::Answer => {
            tokio::time::sleep(latency).await;
            let triage = json!({
                "summary": "An SSH server is reachable from the scanner's network.",
                "likely_impact": "Password guessing against exposed accounts.",
                "remediation": "Allow SSH only from the bastion network.",
                "suppress": false
            });
            Json(completion(&triage.to_string())).into_response()
        }
        Outcome::Error => {
            shared.wasted.fetch_add(1, Ordering::SeqCst);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request.",
            )
        }
        Outcome::Hang => {
            shared.wasted.fetch_add(1, Ordering::SeqCst);
            // Dropped, with the connection, when the client gives up.
            std::future::pending::<Response>().await
        }
    }
}

async fn models() -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": "chaos-model", "object": "model", "created": 0, "owned_by": "bench"}]
    }))
    .into_response()
}
