use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

/// One quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Calls per second, sustained (0.5: one every two seconds).
    pub per_second: f64,
    /// Calls allowed at once above the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

impl QuotaConfig {
    /// The seed's form: `max_calls_per_minute`, as a burst of that many refilled over a minute.
    pub fn per_minute(max_calls_per_minute: u32) -> Self {
        Self {
            per_second: f64::from(max_calls_per_minute) / 60.0,
            burst: max_calls_per_minute.max(1),
        }
    }

    pub(crate) fn quota(&self) -> Option<governor::Quota> {
        if self.per_second.is_nan() || self.per_second <= 0.0 || !self.per_second.is_finite() {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Some(
            governor::Quota::with_period(period)?
                .allow_burst(std::num::NonZeroU32::new(self.burst.max(1))?),
        )
    }
}

/// What happens to a call over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LimitMode {
    /// Rejected at once with `RESOURCE_EXHAUSTED` and `RetryInfo`.
    Reject,
    /// Held until it may pass, if that is within `max_wait`; rejected otherwise.
    Wait {
        /// Longest hold.
        #[serde(with = "humantime_serde")]
        max_wait: Duration,
    },
}

/// The limiting algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Algorithm {
    /// GCRA (a token bucket without the timer): `per_second` sustained, `burst` at once.
    Gcra,
    /// Sliding-window counter: at most `per_second × window` calls in any `window`
    /// (`burst` is not used).
    SlidingWindow {
        /// Length of the window.
        #[serde(with = "humantime_serde")]
        window: Duration,
    },
}

/// A server's (or a client's) rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Off: nothing is limited.
    pub enabled: bool,
    /// The quota of methods without their own.
    pub default: QuotaConfig,
    /// Quotas of single methods, by path (`/phantom.v1.ScanOrchestrator/CreateScan`).
    pub methods: BTreeMap<String, QuotaConfig>,
    /// Reject or wait.
    pub mode: LimitMode,
    /// GCRA or sliding window.
    pub algorithm: Algorithm,
    /// Limits shared by every replica through Redis.
    pub distributed: super::DistributedConfig,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default: QuotaConfig {
                per_second: 1000.0,
                burst: 2000,
            },
            methods: BTreeMap::new(),
            mode: LimitMode::Reject,
            algorithm: Algorithm::Gcra,
            distributed: super::DistributedConfig::default(),
        }
    }
}

impl RateLimitConfig {
    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Algorithm::SlidingWindow { window } = self.algorithm
            && window < Duration::from_millis(10)
        {
            return Err("algorithm.window must be at least 10ms".into());
        }
        if self.default.quota().is_none() {
            return Err("default.per_second must be a positive number".into());
        }
        for (method, q) in &self.methods {
            if !method.starts_with('/') {
                return Err(format!(
                    "methods: {method:?} is not a /package.Service/Method path"
                ));
            }
            if q.quota().is_none() {
                return Err(format!(
                    "methods.{method:?}.per_second must be a positive number"
                ));
            }
        }
        Ok(())
    }
}
