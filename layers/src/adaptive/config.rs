//! The adaptive concurrency limit's settings: bounds, the algorithm, and its parameters.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Invalid;

/// Default [`AdaptiveConcurrencyConfig::initial_limit`]: Netflix concurrency-limits' own.
pub const DEFAULT_INITIAL_LIMIT: u32 = 20;
/// Default [`AdaptiveConcurrencyConfig::min_limit`]: enough to keep serving (and measuring)
/// under sustained overload.
pub const DEFAULT_MIN_LIMIT: u32 = 4;
/// Default [`AdaptiveConcurrencyConfig::max_limit`]: Netflix's Gradient2 default.
pub const DEFAULT_MAX_LIMIT: u32 = 200;

/// Which algorithm moves the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Latency gradient (Netflix's Gradient2): shrinks as the recent latency rises above
    /// the long-term one, grows while it does not.
    #[default]
    Gradient2,
    /// Additive increase, multiplicative decrease on drops and slow calls (TCP Reno).
    Aimd,
}

impl Algorithm {
    /// Its name in settings and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gradient2 => "gradient2",
            Self::Aimd => "aimd",
        }
    }
}

/// How an adaptive concurrency limit adapts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConcurrencyConfig {
    /// Off: calls are counted but never refused, and the limit does not move.
    pub enabled: bool,
    /// Which algorithm moves the limit.
    pub algorithm: Algorithm,
    /// Calls in flight allowed at start, before anything is learnt.
    pub initial_limit: u32,
    /// The floor: the limit never goes below it, however overloaded the dependency.
    pub min_limit: u32,
    /// The ceiling: the limit never goes above it, however fast the dependency.
    pub max_limit: u32,
    /// Parameters of [`Algorithm::Gradient2`].
    pub gradient2: Gradient2Config,
    /// Parameters of [`Algorithm::Aimd`].
    pub aimd: AimdConfig,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            algorithm: Algorithm::default(),
            initial_limit: DEFAULT_INITIAL_LIMIT,
            min_limit: DEFAULT_MIN_LIMIT,
            max_limit: DEFAULT_MAX_LIMIT,
            gradient2: Gradient2Config::default(),
            aimd: AimdConfig::default(),
        }
    }
}

/// Parameters of the Gradient2 algorithm (defaults: Netflix concurrency-limits').
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gradient2Config {
    /// Calls are averaged over windows at least this long (and of at least 10 calls); the
    /// limit moves once per window, so one slow call cannot move it.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Windows the long-term latency averages over.
    pub long_window: u32,
    /// How much slower than the long-term latency the recent one may be before the limit
    /// shrinks (1.5: 50 % slower).
    pub rtt_tolerance: f64,
    /// Added to the limit every window the latency holds: how fast it probes upwards.
    pub queue_size: f64,
    /// Weight (0-1] of each window's new limit against the previous one.
    pub smoothing: f64,
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1),
            long_window: 600,
            rtt_tolerance: 1.5,
            queue_size: 4.0,
            smoothing: 0.2,
        }
    }
}

/// Parameters of the AIMD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AimdConfig {
    /// Added to the limit per limit's worth of successes (about once per round trip) while
    /// at least half of it is in use.
    pub increase: f64,
    /// The limit is multiplied by this (0-1) on a drop, once per overload episode.
    pub decrease_factor: f64,
    /// A success slower than this counts as a drop.
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        Self {
            increase: 1.0,
            decrease_factor: 0.9,
            latency_threshold: Duration::from_secs(5),
        }
    }
}

impl AdaptiveConcurrencyConfig {
    /// Checks the values make sense; the refusal names the field.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.min_limit == 0 {
            // A limit of 0 refuses everything, and with nothing admitted nothing is learnt:
            // the limit could never rise again.
            return Err(Invalid::new("min_limit", "must be at least 1"));
        }
        if self.max_limit < self.min_limit {
            return Err(Invalid::new("max_limit", "must be at least min_limit"));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(Invalid::new(
                "initial_limit",
                "must be between min_limit and max_limit",
            ));
        }
        self.gradient2
            .validate()
            .map_err(|e| e.within("gradient2"))?;
        self.aimd.validate().map_err(|e| e.within("aimd"))
    }
}

impl Gradient2Config {
    fn validate(&self) -> Result<(), Invalid> {
        if self.window.is_zero() {
            return Err(Invalid::new("window", "must be more than 0s"));
        }
        if self.long_window == 0 {
            return Err(Invalid::new("long_window", "must be at least 1"));
        }
        // Below 1, a steady latency reads as queueing and the limit shrinks for ever.
        if !(self.rtt_tolerance.is_finite() && self.rtt_tolerance >= 1.0) {
            return Err(Invalid::new("rtt_tolerance", "must be at least 1"));
        }
        if !(self.queue_size.is_finite() && self.queue_size >= 0.0) {
            return Err(Invalid::new("queue_size", "must not be negative"));
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(Invalid::new("smoothing", "must be in (0, 1]"));
        }
        Ok(())
    }
}

impl AimdConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if !(self.increase.is_finite() && self.increase > 0.0) {
            return Err(Invalid::new("increase", "must be above 0"));
        }
        if !(self.decrease_factor > 0.0 && self.decrease_factor < 1.0) {
            return Err(Invalid::new("decrease_factor", "must be between 0 and 1"));
        }
        if self.latency_threshold.is_zero() {
            return Err(Invalid::new("latency_threshold", "must be more than 0s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_section_is_the_defaults() {
        let parsed: AdaptiveConcurrencyConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, AdaptiveConcurrencyConfig::default());
        assert_eq!(parsed.algorithm, Algorithm::Gradient2);
        parsed.validate().unwrap();
        let aimd: AdaptiveConcurrencyConfig =
            serde_json::from_str(r#"{"algorithm": "aimd", "aimd": {"latency_threshold": "2s"}}"#)
                .unwrap();
        assert_eq!(aimd.algorithm, Algorithm::Aimd);
        assert_eq!(aimd.aimd.latency_threshold, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_and_algorithms_are_refused() {
        for bad in [
            r#"{"max_concurency": 5}"#,
            r#"{"algorithm": "vegas"}"#,
            r#"{"gradient2": {"tolerance": 2}}"#,
        ] {
            assert!(
                serde_json::from_str::<AdaptiveConcurrencyConfig>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_field() {
        let key = |c: AdaptiveConcurrencyConfig| c.validate().unwrap_err().key;
        let d = AdaptiveConcurrencyConfig::default();
        assert_eq!(
            key(AdaptiveConcurrencyConfig { min_limit: 0, ..d }),
            "min_limit"
        );
        assert_eq!(
            key(AdaptiveConcurrencyConfig {
                min_limit: 10,
                max_limit: 5,
                ..d
            }),
            "max_limit"
        );
        assert_eq!(
            key(AdaptiveConcurrencyConfig {
                initial_limit: 1,
                ..d
            }),
            "initial_limit"
        );
        let mut g = d;
        g.gradient2.rtt_tolerance = 0.9;
        assert_eq!(key(g), "gradient2.rtt_tolerance");
        let mut a = d;
        a.aimd.decrease_factor = 1.0;
        assert_eq!(key(a), "aimd.decrease_factor");
    }
}
