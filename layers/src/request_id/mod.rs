//! Correlation ids and their propagation across hops.
//!
//! On the server side, [`RequestIdLayer`] takes the caller's `x-correlation-id` (or, from
//! older callers, `x-request-id`) when it is a sane token, or generates a UUIDv7; stores it in
//! the request's extensions, records it as `correlation_id` on the call's span (the server
//! span of [`crate::trace::ServerSpanLayer`], so every log line of the call carries it),
//! echoes it on the response under both names, and makes it (with the tenant) the *call
//! context* of the task. On the client side, [`PropagateContextLayer`] copies the call
//! context onto outgoing requests, so one id follows a scan from the CLI through every service.

mod context;
mod layer;
mod service;

pub use context::{CallContext, current, scope};
pub use layer::{PropagateContextLayer, RequestIdLayer};
pub use service::{PropagateContext, PropagateFuture, RequestIdService, ResponseFuture};

/// The metadata key carrying the correlation id, under the name most proxies and tracers use.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The metadata key carrying the correlation id; it wins over [`REQUEST_ID_HEADER`] when a
/// caller sends both.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// The correlation id of one request, as logged and propagated: every call made on its
/// behalf, in every service, carries the same one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh, time-ordered id: a UUIDv7 whose 74 random bits come from a per-thread
    /// generator seeded once, not from the OS per call (`Uuid::now_v7` asks `getrandom(2)`
    /// each time: a system call on every request, measured at about 1 us of the server's
    /// time per call). A correlation id only has to be unique, not unpredictable.
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random = fastrand::u128(..).to_le_bytes();
        let id = uuid::Builder::from_unix_timestamp_millis(
            millis,
            random[..10].try_into().expect("10 bytes"),
        )
        .into_uuid();
        let mut text = uuid::Uuid::encode_buffer();
        Self(id.hyphenated().encode_lower(&mut text).to_owned())
    }

    /// Accepts a caller-supplied id when it is 1-128 visible ASCII characters; anything else is
    /// replaced rather than trusted, since it ends up in logs.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        ok.then(|| Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
