//! Stored times and wire times: microseconds since the Unix epoch (one type on every backend)
//! and `google.protobuf.Timestamp`, and the conversions between them (`phantom_kit::time`
//! re-exports them).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A stored time as a protobuf timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// A protobuf timestamp as a stored time (sub-microsecond precision is dropped).
pub fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_round_trip_through_timestamps() {
        for m in [0, 1, 1_700_000_000_123_456, -1] {
            assert_eq!(micros(&timestamp(m)), m);
        }
    }
}
