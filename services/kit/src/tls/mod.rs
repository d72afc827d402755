//! TLS of PHANTOM's listeners and of the calls between its services, with service
//! identities from client certificates (mTLS), reloaded from disk as certificates rotate.
//!
//! # Identities
//! Every service has one certificate, issued by the services' CA (cert-manager in the
//! chart), with the URI SAN `spiffe://<trust-domain>/<service>`: it is the server
//! certificate of its ports and the client certificate of its calls. A listener asks every
//! client for a certificate but does not require one: users come with bearer tokens and no
//! certificate, services with theirs. A certificate that is presented must chain to the CA
//! or the handshake fails; one that does and names a service makes the connection's
//! [`Peer::service`](phantom_layers::auth::Peer) that service, which the auth layer trusts as
//! a service identity. Nothing else ever sets it.
//!
//! # Reloading
//! cert-manager renews certificates long before they expire and Kubernetes updates the
//! mounted Secret in place by swapping a symlink. A task reads the three files every
//! `reload_interval` and compares their bytes (not file events, which a symlink swap of the
//! directory does not raise on the file); when they changed and make a valid set, the new
//! configurations replace the old ones for every connection accepted or opened after it.
//! Connections already open keep the session they have. A set that does not load (a key
//! written before its certificate, a truncated file) leaves the previous one in use with a
//! warning naming the file, and the next change is tried again. At start-up, files that do
//! not load are an error: a service never starts half-secured.
//!
//! # Handshakes
//! The accept loop only accepts: each handshake runs in a task of its own, bounded by
//! `handshake_timeout`, at most [`MAX_CONCURRENT_HANDSHAKES`] at once per listener, and
//! tonic is handed connections as their handshakes complete. A client that opens TCP and
//! never speaks holds one task for the timeout and delays no one.
//!
//! # What stays plaintext
//! The probe port (`grpc.health.v1` and metrics for Kubernetes): the kubelet's gRPC probe
//! presents no certificate and trusts no CA, so a TLS probe port could not be probed. It
//! serves nothing but statuses and metrics.
//!
//! # Layout
//! - `config`: [`TlsConfig`], the `[tls]` settings.
//! - `reload`: [`Tls`], the handle to the current configurations, and the reload task.
//! - `server`: [`incoming`] (tonic's incoming connections), [`Conn`], [`Tls::accept`].
//! - `client`: [`TlsConnector`], the connector of the channels to peers.
//! - `error`: [`TlsError`].

mod accept;
mod client;
mod config;
mod error;
mod reload;

pub(crate) use accept::tune;
pub use accept::{
    Conn, Incoming, MAX_CONCURRENT_HANDSHAKES, TCP_KEEPALIVE, incoming, spiffe_service,
};
pub use client::{TlsConnection, TlsConnector, client_config};
pub use config::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_RELOAD_INTERVAL, TlsConfig};
pub use error::TlsError;
pub use reload::{Alpn, Tls};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
