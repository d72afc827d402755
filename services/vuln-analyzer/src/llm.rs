//! LLM triage through any OpenAI-compatible API (`async-openai`), behind a circuit breaker.
//!
//! The model annotates; it never decides the score. Its answer is a JSON object (summary,
//! likely impact, remediation, and a suppression *suggestion* with a reason) validated field
//! by field: anything malformed is an error, and the caller falls back to the rules. The
//! severity and score always come from CVSS or the rules, so a model cannot lower a finding.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::settings::LlmConfig;
use async_openai::{
    Client,
    config::OpenAIConfig,
    middleware::{ReqwestService, retry::OpenAIRetryLayer},
    types::chat::{
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        CreateChatCompletionRequest, CreateChatCompletionRequestArgs, ResponseFormat,
    },
};
use phantom_kit::telemetry::Secrets;
use phantom_layers::{
    adaptive::AdaptiveLimiter,
    circuit_breaker::{Breaker, State},
    classify::Verdict,
    rate_limit::{TokioClock, TokioInstant},
    registry::Registry,
};
use phantom_proto::pb;
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
    /// The token budget of this minute is spent.
    #[error("LLM token budget spent; {needed} tokens free again in {retry_after:?}")]
    OutOfBudget {
        /// Tokens the call would have used.
        needed: u32,
        /// When they are available again.
        retry_after: Duration,
    },
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

/// Tokens per minute, as a GCRA bucket on the tokio clock (pausable in tests).
type TokenBudget = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<TokioInstant>,
>;

/// Most tokens the model may answer with.
const MAX_COMPLETION_TOKENS: u32 = 600;

/// Tokens a request will use at most: its prompt (about four characters a token for English
/// and JSON) plus the longest answer allowed. Charged before the call, so the budget holds
/// even when every answer is as long as allowed.
fn estimated_tokens(prompt_chars: usize) -> u32 {
    u32::try_from(prompt_chars.div_ceil(4))
        .unwrap_or(u32::MAX)
        .saturating_add(MAX_COMPLETION_TOKENS)
}

/// What the triage client has spent: counters of the metrics registry, so `/metrics` shows
/// them (`phantom_llm_tokens_total{kind}`, `phantom_llm_over_budget_total`).
#[derive(Debug)]
struct Usage {
    tokens_charged: Arc<AtomicU64>,
    tokens_reported: Arc<AtomicU64>,
    over_budget: Arc<AtomicU64>,
}

impl Usage {
    fn new(model: &str, r: &Registry) -> Self {
        let tokens = |kind| {
            r.counter(
                "phantom_llm_tokens_total",
                "LLM tokens: charged to the budget (estimated before each call) and reported by the provider.",
                &[("model", model), ("kind", kind)],
            )
        };
        Self {
            tokens_charged: tokens("charged"),
            tokens_reported: tokens("reported"),
            over_budget: r.counter(
                "phantom_llm_over_budget_total",
                "Triages refused because the token budget of the minute was spent.",
                &[("model", model)],
            ),
        }
    }
}

/// The triage client.
#[derive(Debug, Clone)]
pub struct Llm {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
    breaker: Breaker,
    adaptive: AdaptiveLimiter,
    budget: Option<Arc<TokenBudget>>,
    usage: Arc<Usage>,
    /// What the provider's errors are scrubbed of before they are shown or logged.
    secrets: Secrets,
}

/// What the triage client has spent, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSnapshot {
    /// Tokens charged against the budget (estimates, before each call).
    pub tokens_charged: u64,
    /// Tokens the provider reported using.
    pub tokens_reported: u64,
    /// Triages refused because the budget was spent.
    pub over_budget: u64,
}

impl Llm {
    /// A client for `config`, or `None` when no API key is configured (rules only). Its
    /// breaker, adaptive limiter and token counters are registered in `registry`; its
    /// errors are scrubbed of `secrets`.
    pub fn new(config: &LlmConfig, registry: &Registry, secrets: &Secrets) -> Option<Self> {
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
        registry.breaker(&breaker);
        registry.adaptive("vuln-analyzer->llm", &adaptive);
        let budget = NonZeroU32::new(config.tokens_per_minute).map(|tpm| {
            Arc::new(governor::RateLimiter::direct_with_clock(
                governor::Quota::per_minute(tpm).allow_burst(tpm),
                TokioClock,
            ))
        });
        Some(Self {
            client,
            model: config.model.clone(),
            timeout: config.timeout,
            breaker,
            adaptive,
            budget,
            usage: Arc::new(Usage::new(&config.model, registry)),
            secrets: secrets.clone(),
        })
    }

    /// Whether a triage could be tried now (the breaker is not open). The enrichment queue
    /// waits while it is not, rather than spending its attempts.
    pub fn available(&self) -> bool {
        self.breaker.state() != State::Open
    }

    /// What has been spent so far.
    pub fn usage(&self) -> UsageSnapshot {
        UsageSnapshot {
            tokens_charged: self.usage.tokens_charged.load(Ordering::Relaxed),
            tokens_reported: self.usage.tokens_reported.load(Ordering::Relaxed),
            over_budget: self.usage.over_budget.load(Ordering::Relaxed),
        }
    }

    /// Charges `tokens` to this minute's budget, or says when they will be there.
    fn charge(&self, tokens: u32) -> Result<(), LlmError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let n = NonZeroU32::new(tokens).unwrap_or(NonZeroU32::MIN);
        let refused = match budget.check_n(n) {
            Ok(Ok(())) => None,
            Ok(Err(not_until)) => {
                Some(not_until.wait_time_from(governor::clock::Clock::now(&TokioClock)))
            }
            // Larger than a whole minute's budget: it can never pass.
            Err(_) => Some(Duration::from_secs(60)),
        };
        match refused {
            None => {
                self.usage
                    .tokens_charged
                    .fetch_add(u64::from(tokens), Ordering::Relaxed);
                Ok(())
            }
            Some(retry_after) => {
                self.usage.over_budget.fetch_add(1, Ordering::Relaxed);
                Err(LlmError::OutOfBudget {
                    needed: tokens,
                    retry_after,
                })
            }
        }
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
        // A permit dropped unrecorded (throttled or out of budget below) counts nothing.
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|open| LlmError::Open(open.state))?;
        // Past the adaptive rate, wait for a slot if that costs at most half the time there
        // is; otherwise the rules answer now.
        let limit = budget.map_or(self.timeout, |b| b.min(self.timeout));
        let waiting = tokio::time::Instant::now();
        loop {
            match self.adaptive.try_acquire() {
                Ok(()) => break,
                Err(l) if waiting.elapsed() + l.retry_after <= limit / 2 => {
                    tokio::time::sleep(l.retry_after).await;
                }
                Err(l) => return Err(LlmError::Throttled(l.retry_after)),
            }
        }
        let (request, prompt_chars) = self.request(finding, verdict)?;
        self.charge(estimated_tokens(prompt_chars))?;
        let timeout = limit.saturating_sub(waiting.elapsed());
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(timeout, self.ask(request)).await;
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

    /// The chat request for `f`, and the length of its prompt.
    fn request(
        &self,
        f: &pb::Finding,
        v: &rules::Verdict,
    ) -> Result<(CreateChatCompletionRequest, usize), LlmError> {
        let facts = serde_json::json!({
            "target": f.target, "hostname": f.hostname, "port": f.port, "protocol": f.protocol,
            "service": f.service, "banner": f.banner, "engine": f.engine, "check": f.check_id,
            "title": f.title, "cve_ids": f.cve_ids, "cvss_vector": f.cvss_vector,
            "rule_based_score": v.score, "rule_based_summary": v.summary,
        })
        .to_string();
        let prompt_chars = SYSTEM_PROMPT.len() + facts.len();
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .messages(vec![
                ChatCompletionRequestSystemMessage::from(SYSTEM_PROMPT).into(),
                ChatCompletionRequestUserMessage::from(facts.clone()).into(),
            ])
            .response_format(ResponseFormat::JsonObject)
            .temperature(0.0)
            .max_completion_tokens(MAX_COMPLETION_TOKENS)
            .build()
            .map_err(|e| LlmError::Provider(self.secrets.scrub(&e.to_string()).into_owned()))?;
        Ok((request, prompt_chars))
    }

    #[tracing::instrument(
        name = "llm",
        skip_all,
        fields(
            otel.name = %format_args!("chat {}", self.model),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.request.model = %self.model,
        )
    )]
    async fn ask(&self, request: CreateChatCompletionRequest) -> Result<Triage, LlmError> {
        let started = tokio::time::Instant::now();
        let response = self.client.chat().create(request).await.map_err(|e| {
            // HTTP clients quote the request (URL, headers) in their errors.
            LlmError::Provider(self.secrets.scrub(&e.to_string()).into_owned())
        });
        tracing::debug!(
            event = phantom_kit::telemetry::event::EXTERNAL_CALL,
            ok = response.is_ok(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "LLM called"
        );
        let response = response?;
        if let Some(usage) = &response.usage {
            self.usage
                .tokens_reported
                .fetch_add(u64::from(usage.total_tokens), Ordering::Relaxed);
        }
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

    #[tokio::test(start_paused = true)]
    async fn the_token_budget_refuses_calls_past_it_until_the_minute_refills() {
        let llm = Llm::new(
            &LlmConfig {
                api_key: "sk-test".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
                tokens_per_minute: 2000,
                ..LlmConfig::default()
            },
            &Registry::default(),
            &Secrets::default(),
        )
        .unwrap();
        llm.charge(900).unwrap();
        llm.charge(900).unwrap();
        match llm.charge(900) {
            Err(LlmError::OutOfBudget {
                needed,
                retry_after,
            }) => {
                assert_eq!(needed, 900);
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        // More than a minute's worth can never pass.
        assert!(matches!(
            llm.charge(5000),
            Err(LlmError::OutOfBudget { .. })
        ));
        tokio::time::advance(Duration::from_secs(60)).await;
        llm.charge(900).unwrap();
        let usage = llm.usage();
        assert_eq!(usage.tokens_charged, 2700);
        assert_eq!(usage.over_budget, 2);
    }

    #[test]
    fn token_estimates_cover_the_prompt_and_the_longest_answer() {
        assert_eq!(estimated_tokens(0), MAX_COMPLETION_TOKENS);
        assert_eq!(estimated_tokens(4000), 1000 + MAX_COMPLETION_TOKENS);
        assert_eq!(estimated_tokens(usize::MAX), u32::MAX);
    }

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
