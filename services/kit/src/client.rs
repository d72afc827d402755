//! Channels between PHANTOM services, wrapped in the client-side layers.
//!
//! The stack, outermost first, and why in that order:
//! 1. **client span**: one CLIENT span per call, whatever happens to it below (retried,
//!    shed, failed fast), written into `traceparent` so the callee's span is its child;
//! 2. **credential**: the calling service's own (`authorization`), never one it was sent;
//! 3. **context propagation**: correlation id, tenant, and the deadline left of the call
//!    being served; a call whose deadline has passed fails here, without going out;
//! 4. **retry**: sees every failure below it, and the deadline set above it;
//! 5. **bulkhead**: bounds calls in flight to this dependency (a streaming call counts until
//!    its stream ends); its rejections are local, so it sits above the breaker, which must
//!    only judge the dependency's own answers;
//! 6. **circuit breaker**: fails fast while the dependency is down;
//! 7. the channel, with its connect timeout and per-call timeout.

use http::{HeaderValue, header::AUTHORIZATION};
use phantom_layers::{
    ClientSpanLayer, PropagateContext, PropagateContextLayer,
    bulkhead::{Bulkhead, BulkheadLayer, BulkheadService},
    circuit_breaker::{Breaker, CircuitBreaker, CircuitBreakerLayer},
    classify::GrpcClassifier,
    registry::Registry,
    retry::{Retry, RetryLayer, RetryPolicy},
    trace::ClientSpan,
};
use tonic::transport::{Channel, Endpoint};
use tower::ServiceBuilder;
use tower_http::set_header::{SetRequestHeader, SetRequestHeaderLayer};

use crate::config::ClientPolicy;

/// Another service, as one of its callers reaches it: its name, its URL and the policy of the
/// calls (timeout, retries, bulkhead, breaker). The composing binary says where each is.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Its name, e.g. `vuln-analyzer` (clients are registered as `caller->name`).
    pub name: String,
    /// Its URL, e.g. `http://127.0.0.1:50052`.
    pub url: String,
    /// How it is called.
    pub policy: ClientPolicy,
    /// The calling service's credential (`Bearer …`, the services' token), sent on every
    /// call; `None` where the peer does not authenticate (or mTLS identifies the caller).
    pub bearer: Option<HeaderValue>,
}

/// A channel to another PHANTOM service, behind the client-side layers.
pub type GrpcChannel = ClientSpan<
    SetRequestHeader<
        PropagateContext<
            Retry<BulkheadService<CircuitBreaker<Channel, GrpcClassifier>>, GrpcClassifier>,
        >,
        Option<HeaderValue>,
    >,
>;

/// A channel used by health probes: credential, context and timeout only. A probe must see
/// the dependency as it is, not through a breaker's memory or a retry's second chance.
pub type ProbeChannel = SetRequestHeader<PropagateContext<Channel>, Option<HeaderValue>>;

/// `bearer` as the value of `authorization`, marked sensitive so no trace or log shows it.
pub fn bearer_header(bearer: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {bearer}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Methods safe to call twice, retried without configuration: those the protos mark
/// `idempotency_level` (analyses are deduplicated by fingerprint, scoring is a pure function,
/// reads, a cancel), never one they do not (publishing twice would publish twice).
fn idempotent_methods() -> Vec<String> {
    phantom_proto::retryable_methods(phantom_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptors built with phantom-proto decode")
}

fn endpoint(url: &str, timeout: std::time::Duration) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A lazily-connected channel from `from` to `to` at `url`, with `policy`'s layers. The
/// first call connects, so a peer that is down at start-up does not stop this service from
/// starting. Its breaker, retry policy and bulkhead are registered as `from->to` in
/// `registry` (the calling service's). Every call carries `bearer` as its `authorization`.
pub fn channel(
    from: &str,
    to: &str,
    url: &str,
    policy: &ClientPolicy,
    bearer: Option<HeaderValue>,
    registry: &Registry,
) -> Result<GrpcChannel, tonic::transport::Error> {
    let name = format!("{from}->{to}");
    let mut retry = policy.retry.clone();
    retry.idempotent_methods.extend(idempotent_methods());
    let retry = RetryPolicy::new(&name, retry);
    let bulkhead = Bulkhead::new(&name, policy.bulkhead);
    let breaker = Breaker::new(&name, policy.circuit_breaker.clone());
    registry.retry(&name, &retry);
    registry.bulkhead(&name, &bulkhead);
    registry.breaker(&breaker);
    let channel = endpoint(url, policy.timeout)?.connect_lazy();
    Ok(ServiceBuilder::new()
        .layer(ClientSpanLayer::new(from))
        .layer(SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer))
        .layer(PropagateContextLayer)
        .layer(RetryLayer::new(retry))
        .layer(BulkheadLayer::new(bulkhead).with_exempt(crate::server::probes()))
        .layer(CircuitBreakerLayer::new(breaker))
        .service(channel))
}

/// The channel `from` uses to reach `peer`.
pub fn to_peer(
    from: &str,
    peer: &Peer,
    registry: &Registry,
) -> Result<GrpcChannel, tonic::transport::Error> {
    channel(
        from,
        &peer.name,
        &peer.url,
        &peer.policy,
        peer.bearer.clone(),
        registry,
    )
}

/// A lazily-connected probe channel to `url` (see [`ProbeChannel`]), carrying `bearer`.
pub fn probe_channel(
    url: &str,
    timeout: std::time::Duration,
    bearer: Option<HeaderValue>,
) -> Result<ProbeChannel, tonic::transport::Error> {
    Ok(ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer))
        .layer(PropagateContextLayer)
        .service(endpoint(url, timeout)?.connect_lazy()))
}
