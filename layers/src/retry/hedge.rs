//! Hedging (gRFC A6 `hedgingPolicy`): a read that has no answer after `delay` is sent again,
//! up to `max_attempts` in flight, and the first conclusive answer wins.
//!
//! Retrying waits for a failure; hedging cuts the tail latency of a healthy dependency with
//! one slow replica, at the price of duplicate work, which is why it is off unless a method
//! is listed, only for idempotent methods, and drawn from the same gRFC A6 throttle as
//! retries (when most calls fail, hedges stop with retries). A hedge carries
//! `grpc-previous-rpc-attempts` and the call's shared [`TriedEndpoints`](super::TriedEndpoints),
//! so the balancer sends it to another endpoint.
//!
//! - An answer that is OK, or a status not in `non_fatal_codes`, ends the call; the
//!   attempts still in flight are cancelled by dropping their futures, which resets their
//!   HTTP/2 streams.
//! - A non-fatal status lets the next hedge go at once (or after the server's pushback; a
//!   negative pushback stops hedging).
//! - No hedge is sent once the call's deadline has passed; each carries the time left.

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::Ordering,
    task::{Context, Poll},
};

use futures::{StreamExt, future::Either, stream::FuturesUnordered};
use http::{Request, Response};
use tokio::time::Instant;
use tonic::Code;
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::{
    policy::RetryPolicy,
    service::{Pushback, Replay, ReplayBody, pushback},
};
use crate::classify::code_in_headers;

/// Hedges the methods a [`RetryPolicy`]'s `hedging` lists; see the [module docs](self).
///
/// Give it the same policy as the client's [`RetryLayer`](super::RetryLayer): both then draw
/// on one throttle, report in one [`RetrySnapshot`](super::RetrySnapshot), and never both act
/// on one method.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    policy: RetryPolicy,
}

impl HedgeLayer {
    /// A layer hedging by `policy.hedging`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service built by [`HedgeLayer`].
#[derive(Debug, Clone)]
pub struct Hedge<S> {
    inner: S,
    policy: RetryPolicy,
}

/// What one attempt's answer means for the call.
enum Answer {
    /// It is the call's answer: `success` when OK (or a body that streams).
    Final { success: bool },
    /// A non-fatal failure: try another attempt, after the server's pushback.
    NonFatal(Pushback),
}

/// An attempt's result, with its number (0 for the first).
async fn numbered<F: Future>(n: u32, f: F) -> (u32, F::Output) {
    (n, f.await)
}

impl<S, B, RB> Service<Request<B>> for Hedge<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: ReplayBody,
    B::Error: std::fmt::Display,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service sends the first attempt; hedges wait for readiness on clones.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        if !policy.is_hedged(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        Box::pin(async move {
            let call = match Replay::buffer::<B, RB>(req).await {
                Ok(call) => call,
                Err(refused) => return Ok(refused),
            };
            let h = &policy.config.hedging;
            let c = &policy.counters.hedges;
            c.calls.fetch_add(1, Ordering::Relaxed);
            let max = h.max_attempts.clamp(1, 5);
            let answer = |result: &Result<Response<RB>, S::Error>| {
                let code = match result {
                    Ok(res) => match code_in_headers(res.headers()) {
                        Some(code) => code,
                        None => return Answer::Final { success: true },
                    },
                    // A transport error is what gRPC clients report as UNAVAILABLE.
                    Err(_) => Code::Unavailable,
                };
                if code != Code::Ok && policy.non_fatal.contains(&code) {
                    let push = result
                        .as_ref()
                        .map_or(Pushback::None, |res| pushback(res.headers()));
                    Answer::NonFatal(push)
                } else {
                    Answer::Final {
                        success: code == Code::Ok,
                    }
                }
            };

            let mut in_flight = FuturesUnordered::new();
            in_flight.push(numbered(0, Either::Left(inner.call(call.attempt::<B>(0)))));
            let mut sent = 1u32;
            // When the next hedge goes; `None`: no more hedges.
            let mut next_hedge = (sent < max).then(|| Instant::now() + h.delay);
            let mut last = None;
            loop {
                // Nothing in flight and nothing more to send: the last non-fatal answer.
                if in_flight.is_empty()
                    && next_hedge.is_none()
                    && let Some(result) = last
                {
                    return result;
                }
                let timer = async {
                    match next_hedge {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    Some((n, result)) = in_flight.next() => match answer(&result) {
                        Answer::Final { success } => {
                            policy.throttle_record(success.then_some(true));
                            if n > 0 {
                                c.won.fetch_add(1, Ordering::Relaxed);
                            }
                            let losers = in_flight.len() as u64;
                            c.cancelled.fetch_add(losers, Ordering::Relaxed);
                            // Dropping the losers' futures resets their streams.
                            drop(in_flight);
                            return result;
                        }
                        Answer::NonFatal(push) => {
                            policy.throttle_record(Some(false));
                            if sent < max {
                                next_hedge = match push {
                                    Pushback::Never => None,
                                    Pushback::After(d) => Some(Instant::now() + d),
                                    Pushback::None => Some(Instant::now()),
                                };
                            }
                            last = Some(result);
                        }
                    },
                    () = timer => {
                        let now = Instant::now();
                        next_hedge = None;
                        if call.deadline.is_some_and(|d| now >= d) {
                            c.deadline_stops.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(method = %call.path, "Not hedging: the deadline has passed");
                        } else if !policy.throttle_allows() {
                            c.throttled.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(method = %call.path, "Not hedging: throttled (gRFC A6)");
                        } else {
                            let req = call.attempt::<B>(sent);
                            in_flight.push(numbered(sent, Either::Right(inner.clone().oneshot(req))));
                            sent += 1;
                            c.sent.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(method = %call.path, attempt = sent, "Hedging");
                            if sent < max {
                                next_hedge = Some(now + h.delay);
                            }
                        }
                    }
                }
            }
        })
    }
}
