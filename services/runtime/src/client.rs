//! Channels between PHANTOM services, wrapped in the client-side layers.

use std::time::Duration;

use phantom_layers::{PropagateContext, PropagateContextLayer};
use tonic::transport::{Channel, Endpoint};
use tower::Layer;

/// A channel to another PHANTOM service; requests carry the caller's request id and tenant.
pub type GrpcChannel = PropagateContext<Channel>;

/// A lazily-connected channel to `url`: the first call connects, and a peer that is down at
/// start-up does not stop this service from starting.
pub fn channel(url: &str) -> Result<GrpcChannel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        // Default deadline of a unary call; streaming calls run until either side ends them.
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(PropagateContextLayer.layer(endpoint.connect_lazy()))
}
