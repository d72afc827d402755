//! AIMD over calls in flight (TCP Reno's congestion window, Netflix's `AIMDLimit`): while
//! the limit is well used, successes add [`AimdConfig::increase`] per limit's worth of them
//! (about once per round trip); a drop (or a success slower than
//! [`AimdConfig::latency_threshold`]) multiplies the limit by
//! [`AimdConfig::decrease_factor`].
//!
//! The increase is spread over a limit's worth of successes, as TCP's congestion avoidance
//! adds one segment per window and not per acknowledgement: Netflix's `AIMDLimit` adds it
//! per success, which at a limit of 100 is +100 per round trip, and settles far above what
//! the dependency takes (at nine times it, when each round trip also sees a drop).
//!
//! It is the rule of the AIMD rate limiter ([`AdaptiveLimiter`](super::AdaptiveLimiter))
//! applied to concurrency: it needs no latency baseline, only a clear overload signal, so it
//! suits a dependency that sheds load explicitly (`RESOURCE_EXHAUSTED`) or whose latency
//! varies too much by request for a gradient to read.
//!
//! One decrease per overload episode, as TCP halves once per window: the calls that were
//! in flight when the limit last shrank were admitted under the old limit, and their drops
//! are the same episode. Without this, a burst of fifty concurrent timeouts would multiply
//! the limit by 0.9 fifty times and take it to its floor at once.

use tokio::time::Instant;

use super::{
    algorithm::{LimitAlgorithm, Sample},
    config::AimdConfig,
};

/// The AIMD algorithm.
#[derive(Debug, Clone)]
pub struct Aimd {
    config: AimdConfig,
    /// When the limit last shrank: drops of calls admitted before it are not new news.
    decreased: Option<Instant>,
}

impl Aimd {
    /// The algorithm with `config`.
    pub fn new(config: AimdConfig) -> Self {
        Self {
            config,
            decreased: None,
        }
    }
}

impl LimitAlgorithm for Aimd {
    fn name(&self) -> &'static str {
        "aimd"
    }

    fn update(&mut self, limit: f64, sample: &Sample) -> f64 {
        let c = &self.config;
        if sample.dropped || sample.rtt >= c.latency_threshold {
            if self.decreased.is_some_and(|at| sample.started < at) {
                return limit;
            }
            self.decreased = Some(sample.answered());
            return limit * c.decrease_factor;
        }
        // Netflix's test: with less than half the limit in use, the limit is not what bounds
        // the calls, and raising it would only raise a ceiling nobody reaches (and that the
        // next burst would find far above what the dependency can take).
        if f64::from(sample.in_flight) * 2.0 >= limit {
            limit + c.increase / limit.max(1.0)
        } else {
            limit
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(started: Instant, rtt_ms: u64, in_flight: u32, dropped: bool) -> Sample {
        Sample {
            started,
            rtt: Duration::from_millis(rtt_ms),
            dropped,
            in_flight,
        }
    }

    #[test]
    fn successes_add_one_per_limits_worth_only_while_the_limit_is_well_used() {
        let mut a = Aimd::new(AimdConfig::default());
        let t = Instant::now();
        let once = a.update(10.0, &sample(t, 10, 5, false));
        assert!(
            (once - 10.1).abs() < 1e-9,
            "a tenth: +1 per 10 successes: {once}"
        );
        assert_eq!(a.update(10.0, &sample(t, 10, 4, false)), 10.0, "4 of 10");
    }

    #[test]
    fn drops_and_slow_calls_multiply_once_per_episode() {
        let mut a = Aimd::new(AimdConfig::default());
        let t = Instant::now();
        let limit = a.update(100.0, &sample(t, 10, 100, true));
        assert!((limit - 90.0).abs() < 1e-9);
        // Fifty more drops of calls admitted before that decrease: the same episode.
        let mut same = limit;
        for _ in 0..50 {
            same = a.update(same, &sample(t, 20, 100, true));
        }
        assert_eq!(same, limit);
        // A call admitted after it, slower than the threshold: a new episode.
        let later = t + Duration::from_secs(1);
        let slow = a.update(limit, &sample(later, 6_000, 90, false));
        assert!((slow - 81.0).abs() < 1e-9, "{slow}");
    }
}
