//! The audit trail: one line on the `audit` target per refused call and per call of a
//! method that writes, saying who (principal), tenant, method, target and outcome. Calls
//! refused without any credential that identifies a caller are the exception: a flood of
//! them is counted by address and status and written as one line per interval
//! ([`anonymous`]), so it cannot become a flood of logs.
//!
//! The layer writes the line when the response starts; what the call acted on (a scan's id,
//! the targets of a new scan, a room) is the handler's to say, through the [`AuditTarget`]
//! the layer put in the request's extensions. No credential ever appears: principals are
//! written as [`Principal::id`](super::Principal::id).

use std::sync::{Arc, OnceLock};

/// The tracing target of audit lines: route it to its own sink with
/// `RUST_LOG=...,audit=info`.
pub const TARGET: &str = "audit";

/// What a call acted on, filled in by its handler (at most once; later calls are ignored).
#[derive(Debug, Clone, Default)]
pub struct AuditTarget(Arc<OnceLock<String>>);

impl AuditTarget {
    /// Says what the call acted on (`scan 0193…`, `targets 10.0.0.0/24:80`, `room acme/ops`).
    pub fn set(&self, what: impl Into<String>) {
        let _ = self.0.set(what.into());
    }

    /// What the handler said, if it did.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Says what the call of `request` acted on, for its audit line. A no-op when the call came
/// through no [`AuthLayer`](super::AuthLayer) (a server without authentication).
pub fn target<T>(request: &tonic::Request<T>, what: impl FnOnce() -> String) {
    if let Some(slot) = request.extensions().get::<AuditTarget>() {
        slot.set(what());
    }
}

/// Counts a refusal of a caller that no credential identified, from `peer`; writes the
/// interval's counts (`<address> <code>=n`) as one audit line when the interval ends.
pub(crate) fn anonymous(
    tally: &crate::tally::Tally,
    outcome: tonic::Code,
    peer: Option<std::net::SocketAddr>,
) {
    let from = peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string());
    tally.count(&format!("{from}:{outcome:?}"), |interval, counts| {
        tracing::info!(
            target: TARGET,
            principal = "anonymous",
            interval_s = interval.as_secs(),
            total = counts.values().sum::<u64>(),
            refused = %crate::tally::render(&counts),
            "audit"
        );
    });
}

/// Writes one audit line: `principal` ([`Principal::id`](super::Principal::id), `anonymous`
/// when `None`), `tenant`, `method`, `target`, `outcome` and the `peer`'s address.
pub fn record(
    principal: Option<&str>,
    tenant: Option<&str>,
    method: &str,
    target: Option<&str>,
    outcome: impl std::fmt::Debug,
    peer: Option<std::net::SocketAddr>,
) {
    tracing::info!(
        target: TARGET,
        principal = principal.unwrap_or("anonymous"),
        tenant = tenant.unwrap_or("-"),
        method,
        target = target.unwrap_or("-"),
        outcome = ?outcome,
        peer = ?peer,
        "audit"
    );
}
