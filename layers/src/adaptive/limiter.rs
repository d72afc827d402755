//! The limiter: the limit, the calls in flight, and the one atomic step that admits a call.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

use super::{
    aimd::Aimd,
    algorithm::{LimitAlgorithm, Sample},
    config::{AdaptiveConcurrencyConfig, Algorithm},
    gradient2::Gradient2,
};

/// How long each of the two periods the minimum latency is taken over lasts.
const MIN_RTT_PERIOD: Duration = Duration::from_secs(30);

/// An adaptive concurrency limit, shared by its clones.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    enabled: bool,
    min: u32,
    max: u32,
    algorithm: &'static str,
    /// The limit admission compares against: `State::limit`, rounded down.
    limit: AtomicU32,
    in_flight: AtomicU32,
    rejected: AtomicU64,
    /// The algorithm's recent latency, microseconds (0: none yet), so that refusing a call
    /// (what an overloaded limiter does most) takes no lock.
    recent_rtt_micros: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("name", &self.name)
            .field("limit", &self.limit.load(Ordering::Relaxed))
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct State {
    /// The limit as the algorithm moves it (fractional: Gradient2 grows by fractions).
    limit: f64,
    algorithm: Box<dyn LimitAlgorithm>,
    min_rtt: MinRtt,
}

/// The minimum latency of the last one to two [`MIN_RTT_PERIOD`]s, for operators.
///
/// It is refreshed from ordinary traffic, by dropping the older period, and is only
/// reported: nothing pins the limit to learn it (Envoy's filter drops the limit to its
/// floor for each measurement, refusing most calls while it does).
#[derive(Debug, Default)]
struct MinRtt {
    opened: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl MinRtt {
    fn observe(&mut self, rtt: Duration, at: Instant) {
        let opened = *self.opened.get_or_insert(at);
        let age = at.saturating_duration_since(opened);
        if age >= MIN_RTT_PERIOD {
            // A silence longer than a period leaves nothing recent to keep.
            self.previous = if age < 2 * MIN_RTT_PERIOD {
                self.current
            } else {
                None
            };
            self.current = None;
            self.opened = Some(at);
        }
        self.current = Some(self.current.map_or(rtt, |m| m.min(rtt)));
    }

    fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A call's place under the limit: it is given back when dropped, so a call cancelled or
/// abandoned anywhere still gives its place back.
#[derive(Debug)]
pub struct Slot {
    shared: Arc<Shared>,
    started: Instant,
    in_flight: u32,
}

/// What an adaptive concurrency limit looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptiveConcurrencySnapshot {
    /// Its name.
    pub name: String,
    /// The algorithm moving the limit (`gradient2`, `aimd`).
    pub algorithm: &'static str,
    /// Calls allowed in flight now (0: disabled, unbounded).
    pub limit: u32,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls refused since start.
    pub rejected: u64,
    /// Lowest latency of the last 30 to 60 s, seconds.
    pub min_rtt_seconds: Option<f64>,
    /// The algorithm's long-term latency, seconds.
    pub long_rtt_seconds: Option<f64>,
    /// The algorithm's recent latency, seconds.
    pub short_rtt_seconds: Option<f64>,
}

impl ConcurrencyLimiter {
    /// A limiter starting at `config.initial_limit`, moved by `config.algorithm`.
    pub fn new(name: &str, config: &AdaptiveConcurrencyConfig) -> Self {
        let algorithm: Box<dyn LimitAlgorithm> = match config.algorithm {
            Algorithm::Gradient2 => Box::new(Gradient2::new(config.gradient2)),
            Algorithm::Aimd => Box::new(Aimd::new(config.aimd)),
        };
        Self::with_boxed(name, config, algorithm)
    }

    /// A limiter moved by `algorithm` (config's `algorithm` and its sections are not read).
    pub fn with_algorithm(
        name: &str,
        config: &AdaptiveConcurrencyConfig,
        algorithm: impl LimitAlgorithm,
    ) -> Self {
        Self::with_boxed(name, config, Box::new(algorithm))
    }

    fn with_boxed(
        name: &str,
        config: &AdaptiveConcurrencyConfig,
        algorithm: Box<dyn LimitAlgorithm>,
    ) -> Self {
        let min = config.min_limit.max(1);
        let max = config.max_limit.max(min);
        let initial = config.initial_limit.clamp(min, max);
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                enabled: config.enabled,
                min,
                max,
                algorithm: algorithm.name(),
                limit: AtomicU32::new(initial),
                in_flight: AtomicU32::new(0),
                rejected: AtomicU64::new(0),
                recent_rtt_micros: AtomicU64::new(0),
                state: Mutex::new(State {
                    limit: f64::from(initial),
                    algorithm,
                    min_rtt: MinRtt::default(),
                }),
            }),
        }
    }

    /// A slot, or `RESOURCE_EXHAUSTED` with a `RetryInfo` when the limit is reached.
    ///
    /// Admission is one compare-and-swap of the in-flight count against the limit: two
    /// callers racing for the last slot cannot both see it free and both take it, as they
    /// could if the count were read, compared, then incremented.
    pub fn try_acquire(&self) -> Result<Slot, crate::Error> {
        let s = &self.shared;
        let admitted = s
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (!s.enabled || n < s.limit.load(Ordering::Acquire)).then_some(n + 1)
            });
        match admitted {
            Ok(before) => Ok(Slot {
                shared: Arc::clone(s),
                started: Instant::now(),
                in_flight: before + 1,
            }),
            Err(_) => {
                s.rejected.fetch_add(1, Ordering::Relaxed);
                Err(crate::Error::ResourceExhausted {
                    message: format!(
                        "{} is at its adaptive limit of {} concurrent calls",
                        s.name,
                        s.limit.load(Ordering::Relaxed)
                    ),
                    retry_after: Some(self.retry_after()),
                })
            }
        }
    }

    /// A slot frees when a call ends, about one latency from now: the recent latency,
    /// between 10 ms and 1 s, jittered up to twice that so refused callers do not return
    /// together.
    fn retry_after(&self) -> Duration {
        let recent = match self.shared.recent_rtt_micros.load(Ordering::Relaxed) {
            0 => Duration::from_millis(50),
            micros => Duration::from_micros(micros),
        };
        let base = recent.clamp(Duration::from_millis(10), Duration::from_secs(1));
        base.mul_f64(1.0 + fastrand::f64())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.shared.limit.load(Ordering::Acquire)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The limiter now.
    pub fn snapshot(&self) -> AdaptiveConcurrencySnapshot {
        let s = &self.shared;
        let state = self.lock();
        let rtt = state.algorithm.rtt();
        AdaptiveConcurrencySnapshot {
            name: s.name.clone(),
            algorithm: s.algorithm,
            limit: if s.enabled {
                s.limit.load(Ordering::Relaxed)
            } else {
                0
            },
            in_flight: s.in_flight.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            min_rtt_seconds: state.min_rtt.get().map(|d| d.as_secs_f64()),
            long_rtt_seconds: rtt.long.map(|d| d.as_secs_f64()),
            short_rtt_seconds: rtt.short.map(|d| d.as_secs_f64()),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn learn(&self, sample: &Sample) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        if !sample.dropped {
            state.min_rtt.observe(sample.rtt, sample.answered());
        }
        let current = state.limit;
        let next = state.algorithm.update(current, sample);
        // The floor is the floor: no algorithm takes the limit below it (nor above the
        // ceiling), and nothing else ever sets the limit.
        let next = if next.is_finite() {
            next.clamp(f64::from(self.min), f64::from(self.max))
        } else {
            state.limit
        };
        state.limit = next;
        self.limit.store(next as u32, Ordering::Release);
        if let Some(recent) = state.algorithm.rtt().short {
            let micros = u64::try_from(recent.as_micros()).unwrap_or(u64::MAX);
            self.recent_rtt_micros.store(micros, Ordering::Relaxed);
        }
    }
}

impl Slot {
    /// When the call was admitted.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Reports the call (answered in `rtt`, `dropped` or not) and gives the slot back.
    /// A slot dropped without a report gives its place back and teaches nothing.
    pub fn record(self, rtt: Duration, dropped: bool) {
        self.shared.learn(&Sample {
            started: self.started,
            rtt,
            dropped,
            in_flight: self.in_flight,
        });
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl crate::exposition::Describe for AdaptiveConcurrencySnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        let l = [("limiter", self.name.as_str())];
        out.gauge(
            "phantom_adaptive_concurrency_limit",
            "Calls an adaptive concurrency limit allows in flight now (0: disabled).",
            &[
                ("limiter", self.name.as_str()),
                ("algorithm", self.algorithm),
            ],
            f64::from(self.limit),
        );
        out.gauge(
            "phantom_adaptive_concurrency_in_flight",
            "Calls in flight under an adaptive concurrency limit.",
            &l,
            f64::from(self.in_flight),
        );
        out.counter(
            "phantom_adaptive_concurrency_rejected_total",
            "Calls refused because the adaptive concurrency limit was reached.",
            &l,
            self.rejected as f64,
        );
        for (kind, value) in [
            ("min", self.min_rtt_seconds),
            ("long", self.long_rtt_seconds),
            ("short", self.short_rtt_seconds),
        ] {
            if let Some(value) = value {
                out.gauge(
                    "phantom_adaptive_concurrency_rtt_seconds",
                    "Latency an adaptive concurrency limit works from: the minimum, the \
                     long-term and the recent average.",
                    &[("limiter", self.name.as_str()), ("kind", kind)],
                    value,
                );
            }
        }
    }
}
