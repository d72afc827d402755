//! What the attempts of one call tell each other and the server: the endpoints already tried
//! (for the load balancer below) and how many attempts came before (for the server).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The header gRFC A6 puts on every retry and hedge: how many attempts of the same call were
/// sent before this one. Absent on a first attempt.
pub const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// A response extension: the call was never sent (no connection could be opened to the
/// endpoint chosen; a load balancer answered it `UNAVAILABLE` itself). The retry layer
/// retries such a call without drawing on the gRFC A6 throttle or counting it as the
/// dependency's failure, as A6's transparent retries do: nothing reached a server, so
/// nothing about the service's health is learnt, and sending it elsewhere costs no server
/// any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeverSent;

/// The endpoints the attempts of one call went to, shared by all of them, so that a retry or
/// a hedge goes elsewhere.
///
/// # Contract
/// - The retry and hedging layers insert it into the extensions of **every** attempt of a
///   call they may send more than once, and it is the **same** value (clones share it) for
///   all attempts of that call; a call made once carries none. A value already in the
///   request (a layer above inserted it) is kept, so stacked layers share one.
/// - A load balancer below reads it with `req.extensions().get::<TriedEndpoints>()`,
///   prefers an endpoint for which [`TriedEndpoints::contains`] is false (falling back to a
///   tried one when none is left), and calls [`TriedEndpoints::record`] with the endpoint it
///   picked **when it picks it**, before the attempt is sent: hedges are in flight together,
///   so recording at the answer would be too late for them to avoid each other.
/// - An endpoint is any stable string the balancer chooses (`10.0.0.7:50051`); the layers
///   never look at it.
#[derive(Debug, Clone, Default)]
pub struct TriedEndpoints(Arc<Mutex<Vec<String>>>);

impl TriedEndpoints {
    /// No endpoint tried yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that an attempt goes to `endpoint`.
    pub fn record(&self, endpoint: impl Into<String>) {
        self.lock().push(endpoint.into());
    }

    /// Whether an attempt already went to `endpoint`.
    pub fn contains(&self, endpoint: &str) -> bool {
        self.lock().iter().any(|e| e == endpoint)
    }

    /// The endpoints tried, in the order they were recorded.
    pub fn tried(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Whether `self` and `other` are the same shared value (the same call).
    pub fn same_call(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
