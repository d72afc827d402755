//! LLM triage through any OpenAI-compatible API (`async-openai`), behind a circuit breaker.
//!
//! The model annotates; it never decides the score. Its answer is a JSON object (summary,
//! likely impact, remediation, and a suppression *suggestion* with a reason) validated field
//! by field: anything malformed is an error, and the caller falls back to the rules. The
//! severity and score always come from CVSS or the rules, so a model cannot lower a finding.

use std::time::Duration;

use async_openai::{
    Client,
    config::OpenAIConfig,
    middleware::{ReqwestService, retry::OpenAIRetryLayer},
    types::chat::{
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        CreateChatCompletionRequestArgs, ResponseFormat,
    },
};
use phantom_layers::{
    adaptive::AdaptiveLimiter,
    circuit_breaker::{Breaker, State},
    classify::Verdict,
    registry,
};
use phantom_proto::pb;
use phantom_runtime::config::LlmConfig;
use serde::Deserialize;

use crate::rules;

/// Longest text kept from any field of the model's answer.
const MAX_FIELD: usize = 2000;

/// What the model said about a finding, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    /// What the finding is, in two sentences.
    pub summary: String,
    /// What an attacker could likely do.
    pub impact: String,
    /// What to do.
    pub remediation: String,
    /// Whether the model suggests suppressing it.
    pub suppress: bool,
    /// Why.
    pub suppress_reason: String,
}

/// Why the model gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The breaker is open: the provider failed recently; rules answer at once.
    #[error("LLM circuit breaker is {0:?}")]
    Open(State),
    /// The adaptive rate towards the provider is used up for now.
    #[error("LLM rate exceeded; next call in {0:?}")]
    Throttled(Duration),
    /// No answer in time.
    #[error("LLM did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider refused or failed (after its retries).
    #[error("LLM request failed: {0}")]
    Provider(String),
    /// The answer was not the JSON asked for.
    #[error("LLM answer is malformed: {0}")]
    Malformed(String),
}

/// Raw shape of the model's JSON answer; every field is checked before use.
#[derive(Debug, Deserialize)]
struct RawTriage {
    summary: Option<serde_json::Value>,
    likely_impact: Option<serde_json::Value>,
    remediation: Option<serde_json::Value>,
    suppress: Option<serde_json::Value>,
    suppress_reason: Option<serde_json::Value>,
}

fn text(v: Option<serde_json::Value>, field: &str, required: bool) -> Result<String, LlmError> {
    match v {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() || !required => Ok(s
            .trim()
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(MAX_FIELD)
            .collect()),
        None | Some(serde_json::Value::Null) if !required => Ok(String::new()),
        _ => Err(LlmError::Malformed(format!(
            "`{field}` must be a non-empty string"
        ))),
    }
}

/// Parses and validates the model's answer.
pub fn parse(content: &str) -> Result<Triage, LlmError> {
    // Models sometimes wrap JSON in a Markdown fence despite being asked not to.
    let body = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let raw: RawTriage =
        serde_json::from_str(body).map_err(|e| LlmError::Malformed(e.to_string()))?;
    let suppress = match raw.suppress {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err(LlmError::Malformed("`suppress` must be a boolean".into())),
    };
    let triage = Triage {
        summary: text(raw.summary, "summary", true)?,
        impact: text(raw.likely_impact, "likely_impact", false)?,
        remediation: text(raw.remediation, "remediation", true)?,
        suppress,
        suppress_reason: text(raw.suppress_reason, "suppress_reason", false)?,
    };
    if triage.suppress && triage.suppress_reason.is_empty() {
        return Err(LlmError::Malformed(
            "a suppression suggestion needs a reason".into(),
        ));
    }
    Ok(triage)
}

const SYSTEM_PROMPT: &str = "You triage findings of a network security scanner for a security engineer. \
Answer with one JSON object and nothing else, with these keys: \
\"summary\" (string, at most two sentences: what was found), \
\"likely_impact\" (string: what an attacker could likely do with it), \
\"remediation\" (string: concrete steps), \
\"suppress\" (boolean: true only if this is very likely a false positive or an accepted, harmless exposure), \
\"suppress_reason\" (string, required when suppress is true). \
Do not invent CVEs or versions that the finding does not state.";

/// The triage client.
#[derive(Debug, Clone)]
pub struct Llm {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
    breaker: Breaker,
    adaptive: AdaptiveLimiter,
}

impl Llm {
    /// A client for `config`, or `None` when no API key is configured (rules only).
    pub fn new(config: &LlmConfig) -> Option<Self> {
        if config.api_key.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .ok()?;
        // The provider's own Retry-After is honoured by async-openai's retry layer; the
        // breaker above it keeps those retries from piling up while the provider is down.
        let service = tower::ServiceBuilder::new()
            .layer(OpenAIRetryLayer::new(config.max_retries as usize))
            .service(ReqwestService::new(http));
        let client = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(config.base_url.trim_end_matches('/'))
                .with_api_key(config.api_key.clone()),
        )
        .with_http_service(service);
        let breaker = Breaker::new("vuln-analyzer->llm", config.circuit_breaker.clone());
        let adaptive = AdaptiveLimiter::new("vuln-analyzer->llm", config.adaptive_rate);
        registry::global().breaker(&breaker);
        registry::global().adaptive("vuln-analyzer->llm", &adaptive);
        Some(Self {
            client,
            model: config.model.clone(),
            timeout: config.timeout,
            breaker,
            adaptive,
        })
    }

    /// `llm:<model>`, as analyses name their analyzer.
    pub fn analyzer_name(&self) -> String {
        format!("llm:{}", self.model)
    }

    /// Triage of `finding`, given the rules' verdict, within `budget` (the caller's deadline).
    pub async fn triage(
        &self,
        finding: &pb::Finding,
        verdict: &rules::Verdict,
        budget: Option<Duration>,
    ) -> Result<Triage, LlmError> {
        let state = self.breaker.state();
        if state != State::Closed {
            // A recovering provider gets the floor rate until it is closed again.
            self.adaptive.observe_breaker(state);
        }
        self.adaptive
            .try_acquire()
            .map_err(|l| LlmError::Throttled(l.retry_after))?;
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|open| LlmError::Open(open.state))?;
        let timeout = budget.map_or(self.timeout, |b| b.min(self.timeout));
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, self.ask(finding, verdict)).await;
        let result = match outcome {
            Err(_) => Err(LlmError::Timeout(timeout)),
            Ok(r) => r,
        };
        // Malformed answers count against the provider too: a model that cannot follow the
        // format is as useless as one that is down.
        let v = Verdict {
            failure: result.is_err(),
            retryable: false,
        };
        self.adaptive.record(v, started.elapsed());
        permit.record(v);
        result
    }

    async fn ask(&self, f: &pb::Finding, v: &rules::Verdict) -> Result<Triage, LlmError> {
        let facts = serde_json::json!({
            "target": f.target, "hostname": f.hostname, "port": f.port, "protocol": f.protocol,
            "service": f.service, "banner": f.banner, "engine": f.engine, "check": f.check_id,
            "title": f.title, "cve_ids": f.cve_ids, "cvss_vector": f.cvss_vector,
            "rule_based_score": v.score, "rule_based_summary": v.summary,
        });
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .messages(vec![
                ChatCompletionRequestSystemMessage::from(SYSTEM_PROMPT).into(),
                ChatCompletionRequestUserMessage::from(facts.to_string()).into(),
            ])
            .response_format(ResponseFormat::JsonObject)
            .temperature(0.0)
            .max_completion_tokens(600u32)
            .build()
            .map_err(|e| LlmError::Provider(e.to_string()))?;
        let response = self
            .client
            .chat()
            .create(request)
            .await
            .map_err(|e| LlmError::Provider(e.to_string()))?;
        let content = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| LlmError::Malformed("no message content".into()))?;
        parse(&content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_answer_is_accepted_and_trimmed() {
        let t = parse(r#"```json
{"summary":" Telnet is open. ","likely_impact":"credential theft","remediation":"disable it","suppress":false}
```"#)
        .unwrap();
        assert_eq!(t.summary, "Telnet is open.");
        assert!(!t.suppress);
    }

    #[test]
    fn malformed_answers_are_errors_never_analyses() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"summary": 3, "remediation": "x"}"#,
            r#"{"summary": "x"}"#,
            r#"{"summary": "x", "remediation": "y", "suppress": "yes"}"#,
            r#"{"summary": "x", "remediation": "y", "suppress": true}"#,
            r#"{"summary": "", "remediation": "y"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn control_characters_and_oversized_fields_are_cut() {
        let long = "a".repeat(10_000);
        let t = parse(&format!(
            r#"{{"summary":"x\u001b[31m","remediation":"{long}"}}"#
        ))
        .unwrap();
        assert_eq!(t.summary, "x[31m");
        assert_eq!(t.remediation.len(), MAX_FIELD);
    }
}
