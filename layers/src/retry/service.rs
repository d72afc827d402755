use std::{
    future::Future,
    pin::Pin,
    sync::atomic::Ordering,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic_types::StatusExt;
use tower::ServiceExt;
use tower_service::Service;

use super::{
    attempts::{NeverSent, PREVIOUS_ATTEMPTS, TriedEndpoints},
    policy::RetryPolicy,
};
use crate::{
    classify::{Classify, Outcome, code_in_headers},
    deadline,
};

/// A request body that can be rebuilt from its buffered bytes for another attempt.
pub trait ReplayBody: http_body::Body<Data = Bytes> + Send + 'static {
    /// A body holding `bytes`.
    fn replay(bytes: Bytes) -> Self;
}

impl ReplayBody for tonic::body::Body {
    fn replay(bytes: Bytes) -> Self {
        tonic::body::Body::new(http_body_util::Full::new(bytes))
    }
}

impl ReplayBody for http_body_util::Full<Bytes> {
    fn replay(bytes: Bytes) -> Self {
        http_body_util::Full::new(bytes)
    }
}

/// The service built by [`super::RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S, C> {
    pub(super) inner: S,
    pub(super) policy: RetryPolicy,
    pub(super) classifier: C,
}

/// What the server said about when to come back, from a trailers-only response's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushback {
    /// Nothing.
    None,
    /// Wait this long.
    After(Duration),
    /// Do not retry (`grpc-retry-pushback-ms` negative or malformed).
    Never,
}

pub(super) fn pushback(headers: &http::HeaderMap) -> Pushback {
    if let Some(v) = headers.get("grpc-retry-pushback-ms") {
        return match v.to_str().ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms.unsigned_abs())),
            _ => Pushback::Never,
        };
    }
    tonic::Status::from_header_map(headers)
        .and_then(|s| s.get_details_retry_info())
        .and_then(|r| r.retry_delay)
        .map_or(Pushback::None, Pushback::After)
}

/// A call that may be sent more than once: its parts and buffered body, its deadline, and
/// what its attempts share.
pub(super) struct Replay {
    parts: http::request::Parts,
    body: Bytes,
    /// When the call's `grpc-timeout` runs out.
    pub(super) deadline: Option<Instant>,
    /// The request path, for logs.
    pub(super) path: String,
}

impl Replay {
    /// Buffers `req`'s body, or answers `INTERNAL` when it cannot be read. The attempts'
    /// shared [`TriedEndpoints`] is inserted here (kept if a layer above already did).
    pub(super) async fn buffer<B, RB>(req: Request<B>) -> Result<Self, Response<RB>>
    where
        B: ReplayBody,
        B::Error: std::fmt::Display,
        RB: Default,
    {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                let status =
                    tonic::Status::internal(format!("request body could not be read: {err}"));
                return Err(status.into_http());
            }
        };
        if parts.extensions.get::<TriedEndpoints>().is_none() {
            parts.extensions.insert(TriedEndpoints::new());
        }
        let deadline = parts
            .headers
            .get(deadline::GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(deadline::parse)
            .map(|d| started + d);
        let path = parts.uri.path().to_owned();
        Ok(Self {
            parts,
            body,
            deadline,
            path,
        })
    }

    /// Attempt number `previous + 1`: the same request, with the time left to the deadline
    /// and, after the first, `grpc-previous-rpc-attempts`.
    pub(super) fn attempt<B: ReplayBody>(&self, previous: u32) -> Request<B> {
        let parts = &self.parts;
        let mut req = Request::new(B::replay(self.body.clone()));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        *req.extensions_mut() = parts.extensions.clone();
        if let Some(deadline) = self.deadline {
            // Each attempt gets the time left, not the whole timeout again.
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(v) = deadline::format(left).parse() {
                req.headers_mut().insert(deadline::GRPC_TIMEOUT, v);
            }
        }
        if previous > 0 {
            req.headers_mut()
                .insert(PREVIOUS_ATTEMPTS, http::HeaderValue::from(previous));
        }
        req
    }
}

impl<S, B, RB, C> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: ReplayBody,
    B::Error: std::fmt::Display,
    RB: Default + Send + 'static,
    C: Classify,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        let classifier = self.classifier.clone();
        policy.deposit();
        if !policy.is_retried(req.uri().path()) || policy.config.max_attempts <= 1 {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let call = match Replay::buffer::<B, RB>(req).await {
                Ok(call) => call,
                Err(refused) => return Ok(refused),
            };
            let (deadline, path) = (call.deadline, call.path.as_str());
            let mut previous = Duration::ZERO;
            let mut attempt = 0u32;
            loop {
                let req = call.attempt::<B>(attempt);
                // The first attempt goes to the service `poll_ready` already readied; only
                // later attempts wait for readiness again.
                let result = if attempt == 0 {
                    inner.call(req).await
                } else {
                    inner.ready().await?.call(req).await
                };
                let never_sent = result
                    .as_ref()
                    .is_ok_and(|res| res.extensions().get::<NeverSent>().is_some());
                let (outcome, push) = match &result {
                    Ok(res) => match code_in_headers(res.headers()) {
                        Some(code) => (Outcome::Status(code), pushback(res.headers())),
                        // A streaming answer has begun: it is not retried.
                        None => {
                            policy.throttle_record(Some(true));
                            return result;
                        }
                    },
                    Err(_) => (Outcome::Transport, Pushback::None),
                };
                attempt += 1;
                // A transport error is what gRPC clients report as UNAVAILABLE.
                let code = match outcome {
                    Outcome::Status(code) => code,
                    _ => tonic::Code::Unavailable,
                };
                let retryable =
                    classifier.classify(outcome).retryable && policy.retryable.contains(&code);
                policy.throttle_record(match (code, retryable) {
                    _ if never_sent => None,
                    (tonic::Code::Ok, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                });
                if !retryable {
                    return result;
                }
                let c = &policy.counters;
                if attempt >= policy.config.max_attempts || push == Pushback::Never {
                    c.gave_up.fetch_add(1, Ordering::Relaxed);
                    return result;
                }
                let delay = match push {
                    Pushback::After(d) => {
                        c.pushbacks.fetch_add(1, Ordering::Relaxed);
                        d
                    }
                    _ => policy.backoff(attempt - 1, previous),
                };
                if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                    c.deadline_stops.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(method = %path, ?delay, "Not retrying: the deadline would pass");
                    return result;
                }
                if !never_sent && !policy.throttle_allows() {
                    c.throttled.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(method = %path, "Not retrying: throttled (gRFC A6)");
                    return result;
                }
                if !policy.withdraw() {
                    c.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(method = %path, "Not retrying: retry budget exhausted");
                    return result;
                }
                c.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(method = %path, attempt, ?delay, ?outcome, "Retrying");
                previous = delay;
                tokio::time::sleep(delay).await;
            }
        })
    }
}
