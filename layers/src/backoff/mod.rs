//! Backoff strategies: how long to wait before attempt `n + 1`.
//!
//! Each strategy starts at `initial` and never exceeds `max`. The jittered ones follow
//! "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015): *full* jitter draws from
//! `[0, exp]`, *equal* from `[exp/2, exp]`, *decorrelated* from `[initial, 3 × previous]`.
//! A delay the server asked for (`RetryInfo`, `grpc-retry-pushback-ms`) overrides them all;
//! see [`crate::retry`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shape of the delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `initial` every time.
    Fixed,
    /// `initial × (n + 1)`.
    Linear,
    /// `initial × multiplier^n`.
    Exponential,
    /// Uniform in `[0, initial × multiplier^n]`.
    FullJitter,
    /// Uniform in `[e/2, e]` with `e = initial × multiplier^n`.
    EqualJitter,
    /// Uniform in `[initial, 3 × previous delay]`.
    DecorrelatedJitter,
    /// `initial × fib(n + 1)`: 1, 1, 2, 3, 5, 8…
    Fibonacci,
}

/// A backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// The shape.
    pub strategy: Strategy,
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor of the exponential strategies.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            strategy: Strategy::DecorrelatedJitter,
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n.min(90) {
        (a, b) = (b, a.saturating_add(b));
    }
    a
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry), given the previous
    /// delay (for decorrelated jitter) and a random source.
    pub fn delay(&self, attempt: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64();
        let exp = || {
            (initial
                * self
                    .multiplier
                    .powi(i32::try_from(attempt).unwrap_or(i32::MAX)))
            .min(max)
        };
        let secs = match self.strategy {
            Strategy::Fixed => initial,
            Strategy::Linear => initial * f64::from(attempt + 1),
            Strategy::Exponential => exp(),
            Strategy::FullJitter => rng.f64() * exp(),
            Strategy::EqualJitter => {
                let e = exp();
                e / 2.0 + rng.f64() * e / 2.0
            }
            Strategy::DecorrelatedJitter => {
                let prev = previous.as_secs_f64().max(initial);
                let hi = (prev * 3.0).min(max).max(initial);
                initial + rng.f64() * (hi - initial)
            }
            Strategy::Fibonacci => initial * fib(attempt + 1) as f64,
        };
        Duration::from_secs_f64(secs.clamp(0.0, max))
    }

    /// Checks the values make sense; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max < self.initial {
            return Err("max must not be below initial".into());
        }
        if self.multiplier.is_nan() || self.multiplier < 1.0 {
            return Err("multiplier must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(strategy: Strategy) -> Backoff {
        Backoff {
            strategy,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        }
    }

    fn sequence(strategy: Strategy) -> Vec<u128> {
        let p = policy(strategy);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut prev = Duration::ZERO;
        (0..6)
            .map(|n| {
                prev = p.delay(n, prev, &mut rng);
                prev.as_millis()
            })
            .collect()
    }

    #[test]
    fn deterministic_strategies_follow_their_sequences_up_to_the_cap() {
        assert_eq!(
            sequence(Strategy::Fixed),
            vec![100, 100, 100, 100, 100, 100]
        );
        assert_eq!(
            sequence(Strategy::Linear),
            vec![100, 200, 300, 400, 500, 600]
        );
        assert_eq!(
            sequence(Strategy::Exponential),
            vec![100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(
            sequence(Strategy::Fibonacci),
            vec![100, 100, 200, 300, 500, 800]
        );
    }

    #[test]
    fn jittered_strategies_stay_within_their_bounds() {
        let p = policy(Strategy::FullJitter);
        let mut rng = fastrand::Rng::with_seed(1);
        for n in 0..10 {
            let exp = (100.0 * 2f64.powi(n)).min(1000.0);
            for _ in 0..100 {
                let full = p.delay(n as u32, Duration::ZERO, &mut rng).as_millis() as f64;
                assert!(full <= exp, "full {full} > {exp}");
                let equal = Backoff {
                    strategy: Strategy::EqualJitter,
                    ..p
                }
                .delay(n as u32, Duration::ZERO, &mut rng)
                .as_millis() as f64;
                assert!(
                    equal >= (exp / 2.0).floor() && equal <= exp,
                    "equal {equal} for {exp}"
                );
            }
        }
        let d = Backoff {
            strategy: Strategy::DecorrelatedJitter,
            ..p
        };
        let mut prev = Duration::ZERO;
        for n in 0..100 {
            let next = d.delay(n, prev, &mut rng);
            assert!(next >= p.initial && next <= p.max, "{next:?}");
            assert!(next.as_secs_f64() <= (prev.as_secs_f64().max(0.1) * 3.0) + 1e-9);
            prev = next;
        }
    }

    #[test]
    fn nonsense_is_refused() {
        let bad = Backoff {
            max: Duration::from_millis(1),
            ..Backoff::default()
        };
        assert!(bad.validate().is_err());
    }
}
