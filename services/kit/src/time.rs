//! Wall-clock helpers. Stored times are microseconds since the Unix epoch, one type on every
//! backend; the wire uses `google.protobuf.Timestamp`. The conversions are the domain's
//! (`phantom_domain::time`); this module adds what only servers need.

pub use phantom_domain::time::{micros, now_micros, timestamp};

/// A protobuf timestamp of now.
pub fn timestamp_now() -> prost_types::Timestamp {
    timestamp(now_micros())
}
