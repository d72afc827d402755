//! Adaptive limits that follow a dependency's health instead of a number someone guessed.
//!
//! # Concurrency: [`AdaptiveConcurrencyLayer`]
//! How many calls may be in flight, learnt from their latency and their drops, as Netflix's
//! concurrency-limits and Envoy's adaptive concurrency filter do. On a server it sheds the
//! load the service cannot take before queueing turns it into timeouts; on a client it
//! sends a dependency no more than it answers in time. A call beyond the limit is refused at
//! once (`RESOURCE_EXHAUSTED`, `RetryInfo`), never queued; exempt paths (health, reflection)
//! always pass.
//!
//! ```text
//!   call ─▶ try_acquire: one CAS of in_flight against the limit ─▶ refused (RESOURCE_EXHAUSTED)
//!                 │ slot
//!                 ▼
//!   response head: latency measured ─▶ body holds the slot ─▶ trailers / end / drop:
//!                 classify::Load: Served (latency) | Overloaded (drop) | Unknown (nothing)
//!                 ─▶ LimitAlgorithm::update ─▶ clamp(min_limit, max_limit) ─▶ new limit
//! ```
//!
//! The algorithm is a [`LimitAlgorithm`]: [`Gradient2`] (the default: the limit follows the
//! ratio of the long-term latency to the recent one) or [`Aimd`] (additive increase,
//! multiplicative decrease on drops). The failures of the known designs, and what is done
//! about each:
//! - **No blackout to measure.** Envoy's filter periodically drops the limit to a floor to
//!   measure the minimum latency, refusing most calls meanwhile. Gradient2 learns its
//!   long-term latency from ordinary traffic; the minimum latency the snapshot shows is
//!   refreshed by letting old periods go, never by pinning the limit.
//! - **A floor apart from any probe.** `min_limit` is only the value the limit never goes
//!   below; there is no probing level (Envoy's `min_concurrency` is both), and the floor is
//!   enforced in one place, after the algorithm.
//! - **No check-then-act race.** Admission is one compare-and-swap of the in-flight count
//!   against the limit, so concurrent callers cannot both take the last slot.
//! - **Streams count for their lifetime.** The slot is held by the response body until it
//!   ends or is dropped, not only until the head, as the [`bulkhead`](crate::bulkhead)
//!   does; the body is [`classify`](crate::classify)'s, whose observer (the slot's
//!   [`Recorder`]) is released at the same moments as a bulkhead's permit, so one wrapper
//!   both classifies the call and frees its slot. Its latency is taken at the head: a
//!   stream's lifetime says nothing about load.
//! - **A fast error is not a fast success.** Only successes teach latency; overload answers
//!   (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, broken connections) shrink
//!   the limit; other errors teach nothing ([`classify::Load`](crate::classify::Load)).
//! - **No creep under sustained load.** Netflix's Gradient2 lets its long-term latency learn
//!   the queued one, after which the limit climbs to its ceiling; see [`Gradient2`].
//!
//! # Where it goes
//! On a server, below anything that refuses calls for reasons other than load (the
//! per-caller rate limit): above it, one caller's `RESOURCE_EXHAUSTED` would read as the
//! server's overload. On a client, beside the bulkhead and above the breaker, so its own
//! refusals are local and never judged by the breaker.
//!
//! # Rate: [`AdaptiveLimiter`]
//! The AIMD *rate* limiter (calls per second) of the vuln-analyzer's LLM client, whose
//! provider's quota is a rate; its documentation says how the two relate.

mod aimd;
mod algorithm;
mod config;
mod gradient2;
mod layer;
mod limiter;
mod rate;
mod service;

pub use aimd::Aimd;
pub use algorithm::{LimitAlgorithm, RttEstimates, Sample};
pub use config::{
    AdaptiveConcurrencyConfig, AimdConfig, Algorithm, DEFAULT_INITIAL_LIMIT, DEFAULT_MAX_LIMIT,
    DEFAULT_MIN_LIMIT, Gradient2Config,
};
pub use gradient2::Gradient2;
pub use layer::AdaptiveConcurrencyLayer;
pub use limiter::{AdaptiveConcurrencySnapshot, ConcurrencyLimiter, Slot};
pub use rate::{AdaptiveConfig, AdaptiveLimiter, AdaptiveSnapshot};
pub use service::{AdaptiveConcurrency, Recorder, ResponseFuture};

#[cfg(test)]
mod tests;
