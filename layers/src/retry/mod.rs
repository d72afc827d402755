//! Retries and hedging: only what the classification table calls retryable, only for
//! idempotent methods, never past the call's deadline, never beyond the retry budget or the
//! gRFC A6 throttle, and after the delay the server asked for when it asked.
//!
//! - **Which calls**: methods listed as idempotent in [`RetryConfig::idempotent_methods`]
//!   (exact paths, or `/package.Service/*`). Others pass through untouched. Each idempotent
//!   method is either retried ([`RetryLayer`]) or hedged ([`HedgeLayer`], for the methods
//!   [`HedgingConfig::methods`] lists), never both: gRFC A6 forbids it, as the two would
//!   multiply each other's attempts.
//! - **Which outcomes**: retryable verdicts of [`crate::classify`] — `UNAVAILABLE`,
//!   `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, transport errors — narrowed by
//!   [`RetryConfig::retryable_codes`] if configured so. Only statuses in the response
//!   headers (trailers-only responses, which is how errors come) are read: a response that
//!   started streaming a body is never replayed.
//! - **How long to wait**: the server's `grpc-retry-pushback-ms` (a negative value means
//!   "do not retry"), else its `RetryInfo` detail, else the [`crate::backoff`] policy.
//! - **How many**: at most `max_attempts` in all, and each retry must pass two guards.
//!   The gRFC A6 throttle ([`Throttle`]) is a token bucket per client that retryable
//!   failures drain and successes refill; below half full, retries and hedges stop, so a
//!   client whose dependency is mostly down sends it about one attempt per call. The
//!   Finagle-style budget (tower's `TpsBudget`: a ratio of retries to requests plus a floor
//!   per second) bounds retries against traffic even while most calls succeed. Both are
//!   decided when the retry is decided, so retries cannot amplify an outage.
//! - **Until when**: a retry whose delay would end past the call's `grpc-timeout` is not
//!   made, nor a hedge once it has passed; each attempt carries the time left.
//! - **What the next hop sees**: every attempt after the first carries
//!   `grpc-previous-rpc-attempts` ([`PREVIOUS_ATTEMPTS`]), and all attempts of a call share
//!   one [`TriedEndpoints`] in their extensions, where the load balancer below records the
//!   endpoint each went to, so that the next goes elsewhere.
//! - **The same policy elsewhere**: [`RetryConfig::from_service_config`] and
//!   [`RetryConfig::to_service_config`] read and write it as a gRPC service config, so one
//!   policy file serves other gRPC clients too.
//!
//! Request bodies are buffered (unary gRPC requests are small) so they can be sent again.

mod attempts;
mod hedge;
mod layer;
mod policy;
mod service;
mod service_config;
mod throttle;

pub use attempts::{NeverSent, PREVIOUS_ATTEMPTS, TriedEndpoints};
pub use hedge::{Hedge, HedgeLayer};
pub use layer::RetryLayer;
pub use policy::{
    BudgetConfig, HedgeSnapshot, HedgingConfig, RetryConfig, RetryPolicy, RetrySnapshot,
};
pub use service::{ReplayBody, Retry};
pub use throttle::{Throttle, ThrottlingConfig};

#[cfg(test)]
mod tests;
