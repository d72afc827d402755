//! Circuit breaker: stop calling a dependency that is failing, probe it, resume when it heals.
//!
//! ```text
//!            failure rate or slow-call rate ≥ threshold (after minimum_calls),
//!            or consecutive_failures reached
//!   CLOSED ───────────────────────────────────────────────▶ OPEN
//!     ▲                                                      │ open_duration elapsed
//!     │ success_threshold probes succeeded                   ▼
//!     └──────────────────────────────────────────────── HALF_OPEN ──(a probe fails)──▶ OPEN
//!
//!   FORCED_OPEN and DISABLED are set by an operator and left only by an operator (reset).
//! ```
//!
//! What a failure is comes from the shared [`crate::classify`] table. A rejected call fails
//! fast with `UNAVAILABLE` and a `RetryInfo` holding the time the breaker stays open. Every
//! transition is logged and counted; [`Breaker::snapshot`] shows the current state.
//!
//! The core ([`Breaker`]) knows nothing of HTTP: [`CircuitBreakerLayer`] applies it to any
//! `http` tower service (tonic clients and servers), and non-gRPC callers (the LLM client)
//! use [`Breaker::try_acquire`] and [`Permit::record`] directly.

mod config;
mod core;
mod layer;
mod service;
mod window;

pub use self::core::{Breaker, BreakerSnapshot, CircuitOpen, Permit, State};
pub use config::{CircuitBreakerConfig, WindowConfig};
pub use layer::CircuitBreakerLayer;
pub use service::{CircuitBreaker, Recorder, ResponseFuture};

#[cfg(test)]
mod tests;
