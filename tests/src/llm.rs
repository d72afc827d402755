//! A small OpenAI-compatible server for tests: it answers chat completions with a triage,
//! or fails with an HTTP status, hangs, or answers garbage, as the test commands.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use std::time::Duration;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use phantom_layers::circuit_breaker::WindowConfig;
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};
use serde_json::json;

/// What the fake answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A well-formed triage.
    Answer,
    /// This HTTP status, with an OpenAI-style error body.
    Fail(u16),
    /// No answer at all.
    Hang,
    /// A completion whose content is not the JSON asked for.
    Garbage,
    /// Of every ten calls, the first `errors` fail with 500, the next `hangs` hang, and the
    /// rest answer: a fixed pattern, so a run is reproducible.
    Mixed {
        /// Calls in ten that fail.
        errors: usize,
        /// Calls in ten that hang.
        hangs: usize,
    },
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    calls: AtomicUsize,
}

/// A running fake LLM.
#[derive(Debug, Clone)]
pub struct FakeLlm {
    shared: Arc<Shared>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl FakeLlm {
    /// Starts a fake on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr, mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("fake LLM binds");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            calls: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { shared, addr }
    }

    /// The base URL to configure (`OPENAI_BASE_URL`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Changes what it answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Chat completions received so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }
}

fn completion(content: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    })
}

async fn complete(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    let n = shared.calls.fetch_add(1, Ordering::SeqCst);
    let mut mode = shared.mode.lock().unwrap().clone();
    if let Mode::Mixed { errors, hangs } = mode {
        mode = match n % 10 {
            i if i < errors => Mode::Fail(500),
            i if i < errors + hangs => Mode::Hang,
            _ => Mode::Answer,
        };
    }
    match mode {
        Mode::Answer => {
            let triage = json!({
                "summary": "An SSH server is reachable.",
                "likely_impact": "Password guessing against exposed accounts.",
                "remediation": "Allow SSH only from the bastion network.",
                "suppress": false
            });
            Json(completion(&triage.to_string())).into_response()
        }
        Mode::Fail(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": "scripted failure", "type": "server_error", "code": null}});
            (status, Json(body)).into_response()
        }
        Mode::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Mode::Garbage => Json(completion("I think this is fine!! {not json")).into_response(),
        Mode::Mixed { .. } => unreachable!("resolved above"),
    }
}

/// A finding of an SSH server on `port` of 10.0.0.5.
pub fn finding(port: u32) -> pb::Finding {
    pb::Finding {
        target: "10.0.0.5".into(),
        port,
        protocol: "tcp".into(),
        service: "ssh".into(),
        banner: "SSH-2.0-OpenSSH_9.2".into(),
        engine: "builtin".into(),
        check_id: "open-port".into(),
        title: format!("Port {port}/tcp open (ssh)"),
        ..Default::default()
    }
}

/// A configuration whose analyzer triages with the LLM at `base_url`, with a small,
/// quick breaker (3 calls, open 500 ms), no provider retries, and an enrichment queue that
/// retries every 100 ms.
pub fn with_llm(data: &std::path::Path, base_url: String) -> phantom::config::Config {
    let mut cfg = crate::config(data);
    let llm = &mut cfg.analyzer.llm;
    llm.base_url = base_url;
    llm.api_key = "sk-test".into();
    llm.model = "test-model".into();
    llm.timeout = Duration::from_millis(500);
    llm.max_retries = 0;
    llm.circuit_breaker.window = WindowConfig::Count { size: 3 };
    llm.circuit_breaker.minimum_calls = 3;
    llm.circuit_breaker.open_duration = Duration::from_millis(500);
    let e = &mut cfg.analyzer.enrichment;
    e.interval = Duration::from_millis(100);
    e.backoff = Duration::from_millis(50);
    e.max_backoff = Duration::from_millis(400);
    cfg
}

/// Analyzes one finding and returns its analysis.
pub async fn analyze(
    client: &mut VulnAnalyzerClient<tonic::transport::Channel>,
    f: pb::Finding,
) -> pb::Analysis {
    client
        .analyze_findings(pb::AnalyzeFindingsRequest { findings: vec![f] })
        .await
        .unwrap()
        .into_inner()
        .analyses
        .remove(0)
}
