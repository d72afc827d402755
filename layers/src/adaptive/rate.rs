//! Adaptive *rate* limiting (AIMD): the allowed rate towards a dependency shrinks
//! multiplicatively when it struggles (failures, slow answers, its breaker half-open) and
//! grows back additively while it is healthy, between a floor and a ceiling.
//!
//! Calls take a token from a bucket refilled at the current rate (one second's worth at
//! most); an empty bucket refuses with the time until the next token.
//!
//! # How it relates to the concurrency limit
//! This is the same AIMD rule as the [`Aimd`](super::Aimd) algorithm of the adaptive
//! concurrency limit ([`ConcurrencyLimiter`](super::ConcurrencyLimiter)), applied to calls
//! *per second* instead of calls *in flight*. The concurrency limit is what gRPC servers and
//! clients use: by Little's law, in-flight calls are rate × latency, so bounding them
//! follows both a dependency's throughput and its latency, and a slow dependency is shed
//! without any rate to tune. This rate limiter stays for the vuln-analyzer's LLM client,
//! whose provider enforces a quota of requests per second (and whose callers wait for a
//! token rather than being refused), which a concurrency limit would not express.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{circuit_breaker::State as BreakerState, classify::Verdict, rate_limit::Limited};

/// How an adaptive limiter adapts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Off: no limit.
    pub enabled: bool,
    /// Rate at start, calls per second.
    pub initial_per_second: f64,
    /// Floor.
    pub min_per_second: f64,
    /// Ceiling.
    pub max_per_second: f64,
    /// Added to the rate after each healthy `interval`.
    pub increase_per_second: f64,
    /// The rate is multiplied by this (0-1) after a struggling `interval`.
    pub decrease_factor: f64,
    /// How often the rate may change.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// An answer slower than this counts as struggling.
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_per_second: 5.0,
            min_per_second: 0.5,
            max_per_second: 50.0,
            increase_per_second: 1.0,
            decrease_factor: 0.5,
            interval: Duration::from_secs(1),
            latency_threshold: Duration::from_secs(10),
        }
    }
}

impl AdaptiveConfig {
    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.min_per_second)
            || !positive(self.max_per_second)
            || self.min_per_second > self.max_per_second
        {
            return Err("min_per_second and max_per_second must be positive, min ≤ max".into());
        }
        if !(self.min_per_second..=self.max_per_second).contains(&self.initial_per_second) {
            return Err(
                "initial_per_second must be between min_per_second and max_per_second".into(),
            );
        }
        if !(self.decrease_factor > 0.0 && self.decrease_factor < 1.0) {
            return Err("decrease_factor must be between 0 and 1".into());
        }
        if self.increase_per_second.is_nan() || self.increase_per_second < 0.0 {
            return Err("increase_per_second must not be negative".into());
        }
        if self.interval.is_zero() {
            return Err("interval must be more than 0s".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Inner {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// Start of the current adaptation interval and whether it saw trouble / success.
    interval_start: Instant,
    struggled: bool,
    succeeded: bool,
    rejected: u64,
}

/// An AIMD limiter of calls *per second*, shared by its clones.
///
/// The same rule as the [`Aimd`](super::Aimd) algorithm of a
/// [`ConcurrencyLimiter`](super::ConcurrencyLimiter), which bounds calls *in flight* and is
/// what gRPC servers and clients use; this one stays for a dependency whose quota is a rate
/// (the LLM provider), where callers wait for a token.
#[derive(Debug, Clone)]
pub struct AdaptiveLimiter {
    name: Arc<str>,
    config: AdaptiveConfig,
    inner: Arc<Mutex<Inner>>,
}

/// What an adaptive limiter looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptiveSnapshot {
    /// Its name.
    pub name: String,
    /// The allowed rate now, calls per second.
    pub current_rate: f64,
    /// Calls refused since start.
    pub rejected: u64,
}

impl AdaptiveLimiter {
    /// A limiter starting at `config.initial_per_second`.
    pub fn new(name: &str, config: AdaptiveConfig) -> Self {
        let now = Instant::now();
        Self {
            name: name.into(),
            config,
            inner: Arc::new(Mutex::new(Inner {
                rate: config.initial_per_second,
                tokens: config.initial_per_second.max(1.0),
                refilled: now,
                interval_start: now,
                struggled: false,
                succeeded: false,
                rejected: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a token, or says when the next one comes.
    pub fn try_acquire(&self) -> Result<(), Limited> {
        if !self.config.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let mut s = self.lock();
        self.adapt(&mut s, now);
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(s.rate.max(1.0));
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            s.rejected += 1;
            Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - s.tokens) / s.rate),
            })
        }
    }

    /// Reports how a call went: `verdict` and how long it took.
    pub fn record(&self, verdict: Verdict, latency: Duration) {
        if !self.config.enabled {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        self.adapt(&mut s, now);
        if verdict.failure || latency >= self.config.latency_threshold {
            s.struggled = true;
        } else {
            s.succeeded = true;
        }
    }

    /// Reports the dependency's breaker state: half-open means "barely alive": the floor.
    pub fn observe_breaker(&self, state: BreakerState) {
        if matches!(state, BreakerState::HalfOpen | BreakerState::Open) {
            let mut s = self.lock();
            s.rate = self.config.min_per_second;
            s.tokens = s.tokens.min(1.0);
        }
    }

    /// Closes an interval when one has passed: decrease if it struggled, else increase if
    /// it saw successes (an idle interval changes nothing).
    fn adapt(&self, s: &mut Inner, now: Instant) {
        let c = &self.config;
        if now.saturating_duration_since(s.interval_start) < c.interval {
            return;
        }
        if s.struggled {
            s.rate = (s.rate * c.decrease_factor).max(c.min_per_second);
        } else if s.succeeded {
            s.rate = (s.rate + c.increase_per_second).min(c.max_per_second);
        }
        s.struggled = false;
        s.succeeded = false;
        s.interval_start = now;
    }

    /// The limiter now.
    pub fn snapshot(&self) -> AdaptiveSnapshot {
        let s = self.lock();
        AdaptiveSnapshot {
            name: self.name.to_string(),
            current_rate: if self.config.enabled {
                s.rate
            } else {
                f64::INFINITY
            },
            rejected: s.rejected,
        }
    }

    /// The allowed rate now.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

impl crate::exposition::Describe for AdaptiveSnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        out.gauge(
            "phantom_adaptive_rate_per_second",
            "Current allowed rate of an adaptive limiter.",
            &[("limiter", self.name.as_str())],
            self.current_rate,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Verdict = Verdict {
        failure: false,
        retryable: false,
    };
    const FAIL: Verdict = Verdict {
        failure: true,
        retryable: true,
    };

    fn limiter() -> AdaptiveLimiter {
        AdaptiveLimiter::new(
            "dep",
            AdaptiveConfig {
                initial_per_second: 8.0,
                min_per_second: 1.0,
                max_per_second: 10.0,
                ..AdaptiveConfig::default()
            },
        )
    }

    async fn interval(l: &AdaptiveLimiter, v: Verdict) {
        l.record(v, Duration::from_millis(10));
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = l.try_acquire();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_halve_the_rate_down_to_the_floor_and_health_adds_back_up_to_the_ceiling() {
        let l = limiter();
        interval(&l, FAIL).await;
        assert_eq!(l.rate(), 4.0);
        interval(&l, FAIL).await;
        interval(&l, FAIL).await;
        interval(&l, FAIL).await;
        assert_eq!(l.rate(), 1.0, "floor");
        for _ in 0..20 {
            interval(&l, OK).await;
        }
        assert_eq!(l.rate(), 10.0, "ceiling, reached one step at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_answers_count_as_trouble_and_a_half_open_breaker_drops_to_the_floor() {
        let l = limiter();
        l.record(OK, Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = l.try_acquire();
        assert_eq!(l.rate(), 4.0);
        l.observe_breaker(BreakerState::HalfOpen);
        assert_eq!(l.rate(), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refuses_beyond_the_current_rate_with_the_time_to_the_next_token() {
        let l = AdaptiveLimiter::new(
            "dep",
            AdaptiveConfig {
                initial_per_second: 2.0,
                min_per_second: 1.0,
                max_per_second: 2.0,
                ..AdaptiveConfig::default()
            },
        );
        assert!(l.try_acquire().is_ok());
        assert!(l.try_acquire().is_ok());
        let refused = l.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        tokio::time::advance(refused.retry_after).await;
        assert!(l.try_acquire().is_ok());
    }
}
