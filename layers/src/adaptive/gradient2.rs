//! Gradient2 (Netflix concurrency-limits' `Gradient2Limit`): the limit follows the ratio of
//! the long-term latency to the recent one.
//!
//! Calls are averaged over windows (at least [`Gradient2Config::window`] and 10 calls);
//! once per window:
//!
//! ```text
//! gradient  = clamp(rtt_tolerance × long / short, 0.5, 1)
//! new limit = limit × gradient + queue_size
//! limit     = limit × (1 − smoothing) + new limit × smoothing
//! ```
//!
//! While the recent latency (`short`, the window's average) holds within the tolerance of
//! the long-term one (`long`, an average over `long_window` windows), the gradient is 1 and
//! the limit grows by `queue_size` (smoothed); as calls queue and latency rises, it shrinks,
//! by half at most per window so one outlier cannot collapse it.
//!
//! No blackout is needed to learn the latency: Envoy's filter drops the limit to a floor
//! for a window to measure the minimum latency, refusing most calls while it does; the
//! long-term average is learnt from ordinary traffic, from the first window on, and the
//! limit keeps its value while it is.
//!
//! Two departures from Netflix's algorithm, each for a failure it has:
//! - **The long-term average does not learn from queueing.** Netflix's absorbs every window,
//!   so under sustained load it catches up with the queued latency, the gradient returns to
//!   1 and the limit creeps up by `queue_size` a window until it reaches the ceiling (the
//!   convergence test shows it). Here a window where the limit was in use and latency rose
//!   is not absorbed; windows that were not using the limit (no queue of ours) and windows
//!   where latency fell are, so a dependency that became slower is learnt once load eases,
//!   and one that became faster at once.
//! - **A drop shrinks the limit.** Netflix's Gradient2 ignores drops; here a window with a
//!   drop (shed, timed out, unavailable) shrinks the limit as a halving gradient would,
//!   without the `queue_size` probe, and drops never enter the latency averages: a fast
//!   refusal is not a fast success.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    algorithm::{LimitAlgorithm, RttEstimates, Sample},
    config::Gradient2Config,
};

/// Calls a window holds at least before it closes: fewer say too little to move the limit.
const MIN_WINDOW_CALLS: u32 = 10;

/// Windows averaged with equal weight before the long-term average becomes exponential, so
/// the first window does not weigh for the whole long window.
const WARMUP_WINDOWS: u32 = 10;

/// The smallest gradient: the limit at most halves in one window.
const MIN_GRADIENT: f64 = 0.5;

/// The Gradient2 algorithm.
#[derive(Debug, Clone)]
pub struct Gradient2 {
    config: Gradient2Config,
    window: Window,
    /// Long-term average latency, seconds.
    long: Option<f64>,
    /// The last window's average latency, seconds.
    short: Option<f64>,
    /// Windows absorbed into `long` (for the warm-up).
    absorbed: u32,
}

/// The calls of the window being filled.
#[derive(Debug, Clone, Default)]
struct Window {
    opened: Option<Instant>,
    calls: u32,
    /// Sum of the latencies of the calls not dropped, seconds.
    rtt_sum: f64,
    served: u32,
    dropped: bool,
    max_in_flight: u32,
}

impl Gradient2 {
    /// The algorithm with `config`.
    pub fn new(config: Gradient2Config) -> Self {
        Self {
            config,
            window: Window::default(),
            long: None,
            short: None,
            absorbed: 0,
        }
    }

    fn absorb(&mut self, short: f64) {
        self.absorbed = self.absorbed.saturating_add(1);
        let weight = if self.absorbed <= WARMUP_WINDOWS {
            1.0 / f64::from(self.absorbed)
        } else {
            2.0 / (f64::from(self.config.long_window) + 1.0)
        };
        let long = self.long.unwrap_or(short);
        self.long = Some(long + (short - long) * weight);
    }

    /// The limit after a closed window.
    fn close(&mut self, limit: f64, w: &Window) -> f64 {
        let c = self.config;
        if w.dropped {
            // As a gradient of one half would, without the probe: never a rise.
            return limit * (1.0 - c.smoothing) + limit * MIN_GRADIENT * c.smoothing;
        }
        let short = w.rtt_sum / f64::from(w.served);
        self.short = Some(short);
        // Netflix's test: at less than half the limit in use, the limit is not what bounds
        // the calls; their latency is the dependency's own, and the limit should not move.
        let app_limited = f64::from(w.max_in_flight) * 2.0 < limit;
        match self.long {
            Some(long) if !app_limited && short >= long => {}
            _ => self.absorb(short),
        }
        let Some(long) = self.long.as_mut() else {
            return limit;
        };
        // After a long overload, latency falls well below the long-term average: bring it
        // down faster than its smoothing would (Netflix's recovery).
        if *long / short > 2.0 {
            *long *= 0.95;
        }
        if app_limited {
            return limit;
        }
        let gradient = (c.rtt_tolerance * *long / short).clamp(MIN_GRADIENT, 1.0);
        let next = limit * gradient + c.queue_size;
        limit * (1.0 - c.smoothing) + next * c.smoothing
    }
}

impl LimitAlgorithm for Gradient2 {
    fn name(&self) -> &'static str {
        "gradient2"
    }

    fn update(&mut self, limit: f64, sample: &Sample) -> f64 {
        let at = sample.answered();
        let w = &mut self.window;
        let opened = *w.opened.get_or_insert(at);
        w.calls += 1;
        w.max_in_flight = w.max_in_flight.max(sample.in_flight);
        if sample.dropped {
            w.dropped = true;
        } else {
            w.rtt_sum += sample.rtt.as_secs_f64();
            w.served += 1;
        }
        if at.saturating_duration_since(opened) < self.config.window || w.calls < MIN_WINDOW_CALLS {
            return limit;
        }
        let closed = std::mem::take(&mut self.window);
        self.close(limit, &closed)
    }

    fn rtt(&self) -> RttEstimates {
        RttEstimates {
            long: self.long.map(Duration::from_secs_f64),
            short: self.short.map(Duration::from_secs_f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `calls` calls of `rtt` at `in_flight`, one window's worth, and returns the limit.
    fn window(
        g: &mut Gradient2,
        limit: f64,
        at: &mut Instant,
        rtt_ms: u64,
        in_flight: u32,
        dropped: bool,
    ) -> f64 {
        let mut limit = limit;
        for _ in 0..MIN_WINDOW_CALLS {
            let rtt = Duration::from_millis(rtt_ms);
            limit = g.update(
                limit,
                &Sample {
                    started: *at,
                    rtt,
                    dropped,
                    in_flight,
                },
            );
            *at += Duration::from_millis(100);
        }
        limit
    }

    #[test]
    fn the_limit_grows_while_latency_holds_and_shrinks_when_it_rises() {
        let mut g = Gradient2::new(Gradient2Config::default());
        let mut at = Instant::now();
        let mut limit = 20.0;
        for _ in 0..5 {
            limit = window(&mut g, limit, &mut at, 10, 20, false);
        }
        assert!(limit > 22.0, "grew by the probe: {limit}");
        let before = limit;
        limit = window(&mut g, limit, &mut at, 40, before as u32, false);
        assert!(limit < before, "latency ×4 shrinks it: {before} → {limit}");
        assert!(
            limit >= before * 0.9 - 1e-9,
            "by half a window's weight at most"
        );
    }

    #[test]
    fn a_window_using_less_than_half_the_limit_does_not_move_it() {
        let mut g = Gradient2::new(Gradient2Config::default());
        let mut at = Instant::now();
        let limit = window(&mut g, 50.0, &mut at, 10, 10, false);
        assert_eq!(limit, 50.0);
        let limit = window(&mut g, limit, &mut at, 40, 10, false);
        assert_eq!(limit, 50.0, "not ours to shed: nothing of ours queued");
    }

    #[test]
    fn a_fast_drop_shrinks_the_limit_and_never_enters_the_latency() {
        let mut g = Gradient2::new(Gradient2Config::default());
        let mut at = Instant::now();
        let limit = window(&mut g, 20.0, &mut at, 10, 20, false);
        let long = g.rtt().long;
        let after = window(&mut g, limit, &mut at, 1, 20, true);
        assert!(after < limit, "{limit} → {after}");
        assert_eq!(g.rtt().long, long, "a 1 ms refusal is not a 1 ms success");
    }

    #[test]
    fn no_blackout_while_the_latency_is_learnt() {
        // Envoy's filter pins the limit to a floor while it measures; here the first
        // windows, before any average exists, leave the limit where it is or above.
        let mut g = Gradient2::new(Gradient2Config::default());
        let mut at = Instant::now();
        let mut limit = 20.0;
        for i in 0..MIN_WINDOW_CALLS - 1 {
            limit = g.update(
                limit,
                &Sample {
                    started: at,
                    rtt: Duration::from_millis(10 + u64::from(i)),
                    dropped: false,
                    in_flight: 20,
                },
            );
            assert_eq!(limit, 20.0, "no change inside the first window");
            at += Duration::from_millis(200);
        }
        for _ in 0..WARMUP_WINDOWS {
            limit = window(&mut g, limit, &mut at, 10, limit as u32, false);
            assert!(limit >= 20.0, "{limit}");
        }
    }
}
