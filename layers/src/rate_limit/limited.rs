//! The verdict of a limiter that refuses a call: shared by the local and the shared
//! (Redis) limiters.

use std::time::Duration;

/// A call over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; next call allowed in {retry_after:?}")]
pub struct Limited {
    /// When the caller may call again, by the limiter's own schedule.
    pub retry_after: Duration,
}

impl From<Limited> for crate::Error {
    fn from(l: Limited) -> Self {
        crate::Error::ResourceExhausted {
            message: format!(
                "rate limit exceeded; retry in {} ms",
                l.retry_after.as_millis()
            ),
            retry_after: Some(l.retry_after),
        }
    }
}
