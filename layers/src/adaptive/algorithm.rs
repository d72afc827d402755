//! What an adaptive concurrency limit learns from, and the trait its algorithms implement.
//!
//! An algorithm sees every completed call that says something about load (a success, or a
//! drop: shed, timed out, unavailable) and answers the new limit. It keeps its own state
//! (averages, windows) but not the limit itself, which the limiter owns and clamps between
//! its floor and its ceiling, so no algorithm can take it out of bounds.

use std::{fmt, time::Duration};

use tokio::time::Instant;

/// One completed call, as an algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the call was admitted.
    pub started: Instant,
    /// How long it took to answer: to its response head, so a stream's setup, not its
    /// lifetime (a stream open for an hour says nothing about load).
    pub rtt: Duration,
    /// It was dropped: shed, timed out, unavailable, or its connection failed. The limit
    /// must not grow on it, however fast it came back.
    pub dropped: bool,
    /// Calls in flight when it was admitted, itself included.
    pub in_flight: u32,
}

impl Sample {
    /// When its answer came.
    pub fn answered(&self) -> Instant {
        self.started + self.rtt
    }
}

/// What an algorithm estimates of the dependency's latency now, for the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimates {
    /// The long-term average: the latency without queueing, as far as it can tell.
    pub long: Option<Duration>,
    /// The recent average: the latency now.
    pub short: Option<Duration>,
}

/// Decides the concurrency limit from completed calls.
pub trait LimitAlgorithm: Send + fmt::Debug + 'static {
    /// Its name, for the snapshot and metrics (`gradient2`, `aimd`).
    fn name(&self) -> &'static str;

    /// The limit after `sample`, given the current `limit`. The limiter clamps the answer
    /// between its floor and its ceiling and hands the clamped value back next time.
    fn update(&mut self, limit: f64, sample: &Sample) -> f64;

    /// The latencies it works from, if it keeps any.
    fn rtt(&self) -> RttEstimates {
        RttEstimates::default()
    }
}
