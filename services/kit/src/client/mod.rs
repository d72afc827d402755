//! Channels between PHANTOM services, wrapped in the client-side layers.
//!
//! The stack, outermost first, and why in that order:
//! 1. **client span**: one CLIENT span per call, whatever happens to it below (retried,
//!    shed, failed fast), written into `traceparent` so the callee's span is its child;
//! 2. **credential**: the calling service's own (`authorization`), never one it was sent;
//! 3. **context propagation**: correlation id, tenant, and the deadline left of the call
//!    being served; a call whose deadline has passed fails here, without going out;
//! 4. **retry**: sees every failure below it, and the deadline set above it (gRFC A6: the
//!    `grpc-previous-rpc-attempts` header, the token-bucket throttle beside the budget);
//! 5. **hedging**: the reads a policy lists are sent again after a delay, the first answer
//!    wins (the same throttle; never a method that is retried);
//! 6. **bulkhead**: bounds calls in flight to this dependency (a streaming call counts until
//!    its stream ends); its rejections are local, so it sits above the breaker, which must
//!    only judge the dependency's own answers;
//! 7. **adaptive concurrency**: a bound that follows the dependency's latency (Gradient2),
//!    under the bulkhead's fixed one;
//! 8. **circuit breaker**: fails fast while the dependency is down (every endpoint out);
//! 9. the **balancer** ([`balance`]): every replica of the dependency, one chosen per call
//!    (power of two choices on load), failing ones ejected and probed back in;
//! 10. each endpoint's channel, with its connect timeout and per-call timeout; over TLS
//!     (mTLS: this service's certificate presented, the peer's verified against the CA)
//!     when the caller has a [`Tls`] handle.

pub mod balance;

use std::sync::Arc;

use http::{HeaderValue, header::AUTHORIZATION};
use phantom_layers::{
    ClientSpanLayer, PropagateContext, PropagateContextLayer,
    adaptive::{AdaptiveConcurrency, AdaptiveConcurrencyLayer, ConcurrencyLimiter},
    bulkhead::{Bulkhead, BulkheadLayer, BulkheadService},
    circuit_breaker::{Breaker, CircuitBreaker, CircuitBreakerLayer},
    classify::GrpcClassifier,
    registry::Registry,
    retry::{Hedge, HedgeLayer, Retry, RetryLayer, RetryPolicy},
    trace::ClientSpan,
};
use tonic::transport::{Channel, Endpoint};

pub use crate::config::BalanceConfig;
pub use balance::{Balance, BalanceSnapshot, Targets};
use tower::ServiceBuilder;
use tower_http::set_header::{SetRequestHeader, SetRequestHeaderLayer};

use crate::{
    config::ClientPolicy,
    tls::{Tls, TlsConnector},
};

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
    /// The calling service's TLS, if calls go over TLS (the peer's certificate must then
    /// name the URL's host). `None`: plaintext.
    pub tls: Option<Tls>,
}

/// A channel to another PHANTOM service, behind the client-side layers.
pub type GrpcChannel = ClientSpan<
    SetRequestHeader<
        PropagateContext<
            Retry<
                Hedge<
                    BulkheadService<
                        AdaptiveConcurrency<
                            CircuitBreaker<Balance, GrpcClassifier>,
                            GrpcClassifier,
                        >,
                    >,
                >,
                GrpcClassifier,
            >,
        >,
        Option<HeaderValue>,
    >,
>;

/// Why a channel to a peer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// An endpoint's channel could not be built.
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    /// The peer's URL (or list of URLs) is not one.
    #[error("peer address: {0}")]
    Url(String),
    /// The policy's gRPC service config file cannot be read or is not one.
    #[error("service config: {0}")]
    ServiceConfig(String),
}

impl From<ChannelError> for crate::server::ServeError {
    fn from(e: ChannelError) -> Self {
        Self::Client(Box::new(e))
    }
}

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

pub(crate) fn endpoint(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A channel to `url` that connects on its first call, over TLS when `tls` is given, with
/// the endpoint settings `configure` makes from the URL tonic is given: for callers whose
/// calls need settings of their own (a health watcher's stream must not have a per-call
/// timeout).
///
/// With TLS, the connection is made by our [`TlsConnector`] (with the client configuration
/// current at each connect, so a rotated certificate is presented by new connections), and
/// tonic is handed the URL with its scheme set to `http`: tonic refuses `https` through a
/// custom connector whenever its own TLS feature is compiled in (some other crate of the
/// build may turn it on) and we give it no TLS config of its own. The scheme tonic sees only
/// fills the `:scheme` pseudo-header; the connector decides what goes on the wire.
pub fn lazy(
    url: &str,
    tls: Option<&Tls>,
    configure: impl FnOnce(&str) -> Result<Endpoint, tonic::transport::Error>,
) -> Result<Channel, tonic::transport::Error> {
    lazy_verifying(url, None, tls, configure)
}

/// [`lazy`], verifying over TLS that the peer's certificate names `server_name` (when given)
/// rather than the host of `url`: a balancer dials the addresses a name resolved to.
fn lazy_verifying(
    url: &str,
    server_name: Option<&str>,
    tls: Option<&Tls>,
    configure: impl FnOnce(&str) -> Result<Endpoint, tonic::transport::Error>,
) -> Result<Channel, tonic::transport::Error> {
    let Some(tls) = tls else {
        return Ok(configure(url)?.connect_lazy());
    };
    let mut connector = TlsConnector::new(tls.clone());
    if let Some(name) = server_name {
        connector = connector.with_server_name(name);
    }
    Ok(configure(&plain_scheme(url))?.connect_with_connector_lazy(connector))
}

/// `url` with the scheme `http`, and the port `https` implied made explicit.
fn plain_scheme(url: &str) -> String {
    match url.strip_prefix("https://") {
        Some(rest) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            // `host:port`, `[v6]:port` have a port; `host`, `[v6]` do not.
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                && !authority.ends_with(']');
            if has_port {
                format!("http://{authority}{path}")
            } else {
                format!("http://{authority}:443{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// A lazily-connected channel from `from` to `to` at `url`, with `policy`'s layers, over TLS
/// when `tls` is given (`https://` URLs by convention; with TLS the connection is TLS
/// whatever the scheme says). The first call connects, so a peer that is down at start-up
/// does not stop this service from starting. Its breaker, retry policy and bulkhead are
/// registered as `from->to` in `registry` (the calling service's). Every call carries
/// `bearer` as its `authorization`.
pub fn channel(
    from: &str,
    to: &str,
    url: &str,
    policy: &ClientPolicy,
    bearer: Option<HeaderValue>,
    tls: Option<&Tls>,
    registry: &Registry,
) -> Result<GrpcChannel, ChannelError> {
    let name = format!("{from}->{to}");
    let mut retry = policy.retry_config().map_err(ChannelError::ServiceConfig)?;
    retry.idempotent_methods.extend(idempotent_methods());
    let retry = RetryPolicy::new(&name, retry);
    let bulkhead = Bulkhead::new(&name, policy.bulkhead);
    let adaptive = ConcurrencyLimiter::new(&name, &policy.adaptive_concurrency);
    let breaker = Breaker::new(&name, policy.circuit_breaker.clone());
    registry.retry(&name, &retry);
    registry.bulkhead(&name, &bulkhead);
    registry.adaptive_concurrency(&name, &adaptive);
    registry.breaker(&breaker);
    let targets = Targets::parse(url).map_err(ChannelError::Url)?;
    let (timeout, tls) = (policy.timeout, tls.cloned());
    let connect: balance::Connect = Arc::new(move |url: &str, host: &str| {
        lazy_verifying(url, Some(host), tls.as_ref(), |url| endpoint(url, timeout))
            .map_err(|e| e.to_string())
    });
    let channel =
        Balance::new(&name, targets, policy.balance, connect).map_err(ChannelError::Url)?;
    registry.source(&name, Arc::new(channel.clone()));
    Ok(ServiceBuilder::new()
        .layer(ClientSpanLayer::new(from))
        .layer(SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer))
        .layer(PropagateContextLayer)
        .layer(RetryLayer::new(retry.clone()))
        .layer(HedgeLayer::new(retry))
        .layer(BulkheadLayer::new(bulkhead).with_exempt(crate::server::probes()))
        .layer(AdaptiveConcurrencyLayer::new(adaptive).with_exempt(crate::server::probes()))
        .layer(CircuitBreakerLayer::new(breaker))
        .service(channel))
}

/// The channel `from` uses to reach `peer`.
pub fn to_peer(from: &str, peer: &Peer, registry: &Registry) -> Result<GrpcChannel, ChannelError> {
    channel(
        from,
        &peer.name,
        &peer.url,
        &peer.policy,
        peer.bearer.clone(),
        peer.tls.as_ref(),
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

#[cfg(test)]
mod tests {
    use super::plain_scheme;

    #[test]
    fn tls_urls_reach_tonic_as_http_with_their_port() {
        assert_eq!(plain_scheme("https://a:50052"), "http://a:50052");
        assert_eq!(plain_scheme("https://a"), "http://a:443");
        assert_eq!(plain_scheme("https://[::1]"), "http://[::1]:443");
        assert_eq!(plain_scheme("https://[::1]:7/x"), "http://[::1]:7/x");
        assert_eq!(plain_scheme("http://a:1"), "http://a:1");
    }
}
