use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The sliding window failure rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// Calls in the window.
        size: u32,
    },
    /// The calls of the last `duration`, in one-second buckets.
    Time {
        /// Length of the window.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
}

/// How a breaker decides. Every field has a default; the seed's simple form
/// (`failure_threshold` consecutive failures, `recovery_timeout`, `success_threshold`) is
/// [`CircuitBreakerConfig::consecutive`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Off: every call passes and nothing is recorded.
    pub enabled: bool,
    /// The window failure and slow-call rates are computed over.
    pub window: WindowConfig,
    /// No rate trips the breaker before the window holds this many calls.
    pub minimum_calls: u32,
    /// Open when this fraction (0-1] of the window's calls failed; above 1 disables it.
    pub failure_rate_threshold: f64,
    /// A call slower than this is a slow call (whatever its outcome).
    #[serde(with = "humantime_serde")]
    pub slow_call_duration: Duration,
    /// Open when this fraction (0-1] of the window's calls were slow; above 1 disables it.
    pub slow_call_rate_threshold: f64,
    /// Also open after this many failures in a row (0: only rates decide).
    pub consecutive_failures: u32,
    /// How long the breaker stays open before probing.
    #[serde(with = "humantime_serde")]
    pub open_duration: Duration,
    /// Most probe calls in flight while half-open; more are rejected, never queued.
    pub half_open_permits: u32,
    /// Successful probes needed to close again.
    pub success_threshold: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: WindowConfig::Count { size: 100 },
            minimum_calls: 20,
            failure_rate_threshold: 0.5,
            slow_call_duration: Duration::from_secs(5),
            slow_call_rate_threshold: 1.1,
            consecutive_failures: 0,
            open_duration: Duration::from_secs(30),
            half_open_permits: 3,
            success_threshold: 3,
        }
    }
}

impl CircuitBreakerConfig {
    /// The seed's form: open after `failure_threshold` consecutive failures, stay open
    /// `recovery_timeout`, close after `success_threshold` successful probes.
    pub fn consecutive(
        failure_threshold: u32,
        recovery_timeout: Duration,
        success_threshold: u32,
    ) -> Self {
        Self {
            consecutive_failures: failure_threshold,
            // Rates off: only the run of failures decides.
            failure_rate_threshold: 1.1,
            open_duration: recovery_timeout,
            success_threshold,
            half_open_permits: success_threshold.max(1),
            ..Self::default()
        }
    }

    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let WindowConfig::Count { size: 0 } = self.window {
            return Err("window.size must be at least 1".into());
        }
        if let WindowConfig::Time { duration } = self.window
            && duration < Duration::from_secs(1)
        {
            return Err("window.duration must be at least 1s".into());
        }
        if self.failure_rate_threshold.is_nan() || self.failure_rate_threshold <= 0.0 {
            return Err("failure_rate_threshold must be above 0".into());
        }
        if self.slow_call_rate_threshold.is_nan() || self.slow_call_rate_threshold <= 0.0 {
            return Err("slow_call_rate_threshold must be above 0".into());
        }
        if self.half_open_permits == 0 {
            return Err("half_open_permits must be at least 1".into());
        }
        if self.success_threshold == 0 {
            return Err("success_threshold must be at least 1".into());
        }
        Ok(())
    }
}
