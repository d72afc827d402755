//! The limits of an HTTP port and their defaults.
//!
//! The defaults suit both ports as the chart sizes them (the health-aggregator at 128 MiB,
//! the notifier at 256 MiB): a connection that has not been upgraded holds at most
//! [`MAX_HEAD_BYTES`] of buffers plus a task, so [`DEFAULT_MAX_CONNECTIONS`] of them stay
//! within a few tens of MiB. An upgraded WebSocket costs what the notifier's gateway says
//! (`notifier.ws.max_connections` bounds those).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest a client may take to send a request's head, and longest a keep-alive connection
/// may wait for its next request. Ten seconds is long for any real client on these ports
/// (a browser, `curl`, Prometheus) and short for a slowloris attacker.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a connection may make no progress reading or writing outside a handler: a client
/// that stopped reading its response is cut after this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a handler may take before the client gets 408. `/health/metrics` asks every
/// service within `health.timeout` (2 s by default), concurrently.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Most connections open at once on one port (upgraded WebSockets included); more are
/// closed as soon as they are accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Largest request body: no endpoint of these ports takes one.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 64 * 1024;

/// Largest request head (request line and headers) hyper buffers; larger is answered 431.
/// Its read and write buffers are bounded by it too (hyper's default is ~400 KiB).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The limits of the HTTP ports: `[http]` in the configuration, for the health-aggregator's
/// port (`listen.http`) and the notifier's WebSocket port (`listen.ws`, whose upgraded
/// sockets `notifier.ws` then bounds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Longest wait for a request's head, the first or the next on a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest time without progress on the socket outside a handler.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest a handler may take (408 after it).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most connections at once; more are closed at once.
    pub max_connections: usize,
    /// Largest request body (413 beyond it).
    pub max_request_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
        }
    }
}

impl HttpLimits {
    /// Why these limits cannot serve, if they cannot: every one must be more than zero.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.header_read_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.request_timeout.is_zero()
            || self.max_connections == 0
            || self.max_request_body == 0
        {
            return Err("every timeout and limit must be more than 0");
        }
        Ok(())
    }
}
