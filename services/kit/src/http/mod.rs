//! The HTTP ports (the health-aggregator's `/health`, the notifier's WebSocket gateway),
//! served so that no client can hold them: every connection is bounded in time at every
//! phase and in number, whatever the router behind it does.
//!
//! Each phase of a connection has its bound:
//! - accepting: [`HttpLimits::max_connections`]; beyond it a connection is closed at once;
//! - reading a request head, and waiting for the next one on a kept-alive connection:
//!   [`HttpLimits::header_read_timeout`] (hyper restarts it for every request);
//! - the handler: [`HttpLimits::request_timeout`], then 408;
//! - the request body: [`HttpLimits::max_request_body`], then 413;
//! - any other time the socket makes no progress (a client that stopped reading its
//!   response): [`HttpLimits::idle_timeout`];
//! - after a WebSocket upgrade: the application's own pings, and the connection still counts
//!   against the cap until it closes.
//!
//! HTTP/1.1 only: what browsers, `curl` and Prometheus speak to a plaintext port. (HTTP/2
//! over cleartext has no client here and no header read timeout in hyper.)
//!
//! # Layout
//! - `config`: [`HttpLimits`] and their defaults.
//! - `serve`: the accept loop, the per-connection task and the layer stack ([`serve`]).
//! - `io`: the connection's socket, with its idle timer and its place under the cap.
//! - `hosts`: [`AllowedHosts`], the `Host` check that keeps DNS rebinding out.

mod config;
mod hosts;
mod io;
mod serve;

pub use config::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_REQUEST_TIMEOUT, HttpLimits, MAX_HEAD_BYTES,
};
pub use hosts::{AllowedHosts, restrict_hosts};
pub use serve::serve;

#[cfg(test)]
mod tests;
