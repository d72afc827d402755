//! The retry throttle of gRFC A6: a token bucket per client that failures drain and
//! successes refill, so a client stops retrying (and hedging) while most of its calls fail.
//!
//! Tokens are kept in thousandths, as gRPC's own clients do, because `token_ratio` has at
//! most three decimals: the arithmetic is then exact and lock-free.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

/// Default bucket size (gRFC A6 `maxTokens`). Sized for a client with tens of calls in
/// flight: when one replica of a peer dies, every call in flight to it fails at once, and a
/// bucket of 10 would be below half after six of them, refusing the very retries that move
/// those calls to the other replicas. With 100, a peer failing 50 % of calls still drains it
/// within a hundred or so calls, and retries stop then (amplification stays at 1.0).
const DEFAULT_MAX_TOKENS: u32 = 100;
/// Default refill per success (gRFC A6 `tokenRatio`).
const DEFAULT_TOKEN_RATIO: f32 = 0.1;

/// The retry throttle of gRFC A6 (`retryThrottling` in a gRPC service config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottlingConfig {
    /// Tokens in a full bucket (1-1000); retries stop at half of it.
    pub max_tokens: u32,
    /// Tokens a successful attempt gives back (above 0, at most three decimals).
    pub token_ratio: f32,
}

impl Default for ThrottlingConfig {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            token_ratio: DEFAULT_TOKEN_RATIO,
        }
    }
}

impl ThrottlingConfig {
    /// Checks the values are the ones gRFC A6 allows; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1000).contains(&self.max_tokens) {
            return Err(format!(
                "max_tokens must be between 1 and 1000, not {}",
                self.max_tokens
            ));
        }
        let r = self.token_ratio;
        if r.is_nan() || r <= 0.0 || r > 1000.0 {
            return Err(format!("token_ratio must be above 0, not {r}"));
        }
        let milli = f64::from(r) * 1000.0;
        if (milli - milli.round()).abs() > 1e-3 * milli.max(1.0) {
            return Err(format!("token_ratio has at most 3 decimals, not {r}"));
        }
        Ok(())
    }

    /// `token_ratio` in thousandths of a token.
    fn ratio_milli(&self) -> u64 {
        (f64::from(self.token_ratio) * 1000.0).round().max(1.0) as u64
    }
}

#[derive(Debug)]
struct Bucket {
    /// Tokens now, in thousandths.
    milli: AtomicU64,
    /// A full bucket, in thousandths.
    max_milli: u64,
    /// What a success gives back, in thousandths.
    ratio_milli: u64,
}

/// One client's token bucket; clones share it (the retry and the hedging layer of a client
/// hold the same one).
#[derive(Debug, Clone)]
pub struct Throttle(Arc<Bucket>);

impl Throttle {
    /// A full bucket.
    pub fn new(config: ThrottlingConfig) -> Self {
        let max_milli = u64::from(config.max_tokens.clamp(1, 1000)) * 1000;
        Self(Arc::new(Bucket {
            milli: AtomicU64::new(max_milli),
            max_milli,
            ratio_milli: config.ratio_milli(),
        }))
    }

    /// Whether another attempt may be sent now (tokens above half the bucket).
    pub fn allows(&self) -> bool {
        self.0.milli.load(Ordering::Relaxed) * 2 > self.0.max_milli
    }

    /// An attempt failed with a retryable (or, when hedging, non-fatal) status: one token less.
    pub fn on_failure(&self) {
        let _ = self
            .0
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(1000))
            });
    }

    /// An attempt succeeded: `token_ratio` more, up to a full bucket.
    pub fn on_success(&self) {
        let b = &self.0;
        let _ = b
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + b.ratio_milli).min(b.max_milli))
            });
    }

    /// Tokens now.
    pub fn tokens(&self) -> f64 {
        self.0.milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_half_the_bucket_and_refills_by_the_ratio() {
        let t = Throttle::new(ThrottlingConfig {
            max_tokens: 4,
            token_ratio: 0.5,
        });
        assert!(t.allows());
        t.on_failure();
        assert!(t.allows(), "3 > 2");
        t.on_failure();
        assert!(!t.allows(), "2 is not above 2");
        t.on_success();
        assert!(t.allows(), "2.5 > 2");
        for _ in 0..10 {
            t.on_success();
        }
        assert!((t.tokens() - 4.0).abs() < f64::EPSILON, "capped");
    }

    #[test]
    fn refuses_what_grfc_a6_refuses() {
        let ok = ThrottlingConfig::default();
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (
                ThrottlingConfig {
                    max_tokens: 0,
                    ..ok
                },
                "max_tokens",
            ),
            (
                ThrottlingConfig {
                    max_tokens: 1001,
                    ..ok
                },
                "max_tokens",
            ),
            (
                ThrottlingConfig {
                    token_ratio: 0.0,
                    ..ok
                },
                "token_ratio",
            ),
            (
                ThrottlingConfig {
                    token_ratio: 0.1234,
                    ..ok
                },
                "3 decimals",
            ),
        ] {
            assert!(bad.validate().unwrap_err().contains(field), "{bad:?}");
        }
    }
}
