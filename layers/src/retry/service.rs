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

use super::policy::RetryPolicy;
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
enum Pushback {
    /// Nothing.
    None,
    /// Wait this long.
    After(Duration),
    /// Do not retry (`grpc-retry-pushback-ms` negative or malformed).
    Never,
}

fn pushback(headers: &http::HeaderMap) -> Pushback {
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

fn rebuild<B: ReplayBody>(parts: &http::request::Parts, body: &Bytes) -> Request<B> {
    let mut req = Request::new(B::replay(body.clone()));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
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
        if !policy.is_idempotent(req.uri().path()) || policy.config.max_attempts <= 1 {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let started = Instant::now();
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => {
                    let status =
                        tonic::Status::internal(format!("request body could not be read: {err}"));
                    return Ok(status.into_http());
                }
            };
            let deadline = parts
                .headers
                .get(deadline::GRPC_TIMEOUT)
                .and_then(|v| v.to_str().ok())
                .and_then(deadline::parse)
                .map(|d| started + d);
            let path = parts.uri.path().to_owned();
            let mut previous = Duration::ZERO;
            let mut attempt = 0u32;
            loop {
                let mut req = rebuild::<B>(&parts, &body);
                if let Some(deadline) = deadline {
                    // Each attempt gets the time left, not the whole timeout again.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if let Ok(v) = deadline::format(left).parse() {
                        req.headers_mut().insert(deadline::GRPC_TIMEOUT, v);
                    }
                }
                // The first attempt goes to the service `poll_ready` already readied; only
                // later attempts wait for readiness again.
                let result = if attempt == 0 {
                    inner.call(req).await
                } else {
                    inner.ready().await?.call(req).await
                };
                let (outcome, push) = match &result {
                    Ok(res) => match code_in_headers(res.headers()) {
                        Some(code) => (Outcome::Status(code), pushback(res.headers())),
                        // A streaming answer has begun: it is not retried.
                        None => return result,
                    },
                    Err(_) => (Outcome::Transport, Pushback::None),
                };
                attempt += 1;
                let verdict = classifier.classify(outcome);
                if !verdict.retryable {
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
