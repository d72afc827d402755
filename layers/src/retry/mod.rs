//! Retries: only what the classification table calls retryable, only for idempotent
//! methods, never past the call's deadline, never beyond the retry budget, and after the
//! delay the server asked for when it asked.
//!
//! - **Which calls**: methods listed as idempotent in [`RetryConfig::idempotent_methods`]
//!   (exact paths, or `/package.Service/*`). Others pass through untouched.
//! - **Which outcomes**: retryable verdicts of [`crate::classify`] — `UNAVAILABLE`,
//!   `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, transport errors. Only statuses
//!   in the response headers (trailers-only responses, which is how errors come) are read:
//!   a response that started streaming a body is never replayed.
//! - **How long to wait**: the server's `grpc-retry-pushback-ms` (a negative value means
//!   "do not retry"), else its `RetryInfo` detail, else the [`crate::backoff`] policy.
//! - **How many**: at most `max_attempts` in all, and each retry withdraws from a
//!   Finagle-style budget (tower's `TpsBudget`: a ratio of retries to requests plus a floor
//!   per second), decided when the retry is decided, so retries cannot amplify an outage.
//! - **Until when**: a retry whose delay would end past the call's `grpc-timeout` is not made.
//!
//! Request bodies are buffered (unary gRPC requests are small) so they can be sent again.

mod layer;
mod policy;
mod service;

pub use layer::RetryLayer;
pub use policy::{BudgetConfig, RetryConfig, RetryPolicy, RetrySnapshot};
pub use service::{ReplayBody, Retry};

#[cfg(test)]
mod tests;
