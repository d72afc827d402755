//! The breaker's state machine, independent of any transport.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::time::Instant;

use super::{
    config::CircuitBreakerConfig,
    window::{Totals, Window},
};
use crate::classify::Verdict;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Calls pass; outcomes are recorded in the window.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probe calls pass; the rest are rejected.
    HalfOpen,
    /// Calls are rejected until an operator resets the breaker.
    ForcedOpen,
    /// Calls pass and nothing is recorded, until an operator resets the breaker.
    Disabled,
}

/// The state with what it needs.
#[derive(Debug)]
enum Phase {
    /// Recording into the window; `run` counts consecutive failures.
    Closed {
        window: Window,
        run: u32,
    },
    /// Rejecting until `until`.
    Open {
        until: Instant,
    },
    /// `in_flight` probes out, `successes` of them succeeded so far.
    HalfOpen {
        in_flight: u32,
        successes: u32,
    },
    ForcedOpen,
    Disabled,
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
            Phase::ForcedOpen => State::ForcedOpen,
            Phase::Disabled => State::Disabled,
        }
    }
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition: outcomes of calls admitted in an earlier phase do not
    /// count in this one.
    epoch: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    name: String,
    config: CircuitBreakerConfig,
    inner: Mutex<Inner>,
    counters: Counters,
}

/// A circuit breaker, shared by every clone (one per protected dependency).
#[derive(Debug, Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// Admission to make one call; report its outcome with [`Permit::record`]. A permit dropped
/// without a record (the call was abandoned) gives back its half-open slot and counts nothing.
#[derive(Debug)]
pub struct Permit {
    breaker: Option<Breaker>,
    epoch: u64,
    probe: bool,
    started: Instant,
}

/// A call refused because the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {name:?} is {state:?}")]
pub struct CircuitOpen {
    /// The breaker.
    pub name: String,
    /// Its state.
    pub state: State,
    /// When a call may pass again, if known.
    pub retry_after: Option<Duration>,
}

impl From<CircuitOpen> for crate::Error {
    fn from(e: CircuitOpen) -> Self {
        crate::Error::CircuitOpen {
            message: format!("{} is unavailable: circuit breaker {:?}", e.name, e.state),
            retry_after: e.retry_after,
        }
    }
}

/// What a breaker looks like now, for metrics and `/health/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    /// The breaker's name (the dependency).
    pub name: String,
    /// Its state.
    pub state: State,
    /// Calls admitted since start.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which were slow.
    pub slow_calls: u64,
    /// Calls rejected since start.
    pub rejected: u64,
    /// Failure rate over the current window (closed state only).
    pub failure_rate: f64,
    /// Slow-call rate over the current window (closed state only).
    pub slow_call_rate: f64,
    /// Calls in the current window.
    pub window_calls: u32,
    /// Transitions to OPEN since start.
    pub times_opened: u64,
    /// Transitions to HALF_OPEN since start.
    pub times_half_opened: u64,
    /// Transitions to CLOSED since start.
    pub times_closed: u64,
    /// How long it stays open, when open.
    pub open_remaining_ms: Option<u64>,
}

impl Breaker {
    /// A closed breaker named after the dependency it protects.
    pub fn new(name: impl Into<String>, config: CircuitBreakerConfig) -> Self {
        let now = Instant::now();
        let phase = if config.enabled {
            Phase::Closed {
                window: Window::new(config.window, now),
                run: 0,
            }
        } else {
            Phase::Disabled
        };
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                inner: Mutex::new(Inner { phase, epoch: 0 }),
                counters: Counters::default(),
            }),
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The current state (an open breaker whose time is up reads as HALF_OPEN).
    pub fn state(&self) -> State {
        let mut inner = self.lock();
        self.expire(&mut inner, Instant::now());
        inner.phase.state()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than refusing all calls would: keep going.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to make one call.
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        let epoch = inner.epoch;
        let probe = match &mut inner.phase {
            Phase::Closed { .. } => false,
            Phase::Disabled => {
                return Ok(Permit {
                    breaker: None,
                    epoch,
                    probe: false,
                    started: now,
                });
            }
            Phase::HalfOpen { in_flight, .. }
                if *in_flight < self.shared.config.half_open_permits =>
            {
                *in_flight += 1;
                true
            }
            Phase::HalfOpen { .. } => {
                drop(inner);
                // Probes are out; the verdict comes soon.
                return Err(self.reject(
                    State::HalfOpen,
                    Some(self.shared.config.open_duration.min(Duration::from_secs(1))),
                ));
            }
            Phase::Open { until } => {
                let left = until.saturating_duration_since(now);
                drop(inner);
                return Err(self.reject(State::Open, Some(left)));
            }
            Phase::ForcedOpen => {
                drop(inner);
                return Err(self.reject(State::ForcedOpen, None));
            }
        };
        self.shared.counters.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            breaker: Some(self.clone()),
            epoch,
            probe,
            started: now,
        })
    }

    fn reject(&self, state: State, retry_after: Option<Duration>) -> CircuitOpen {
        self.shared
            .counters
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        CircuitOpen {
            name: self.shared.name.clone(),
            state,
            retry_after,
        }
    }

    /// OPEN whose time is up becomes HALF_OPEN.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        if let Phase::Open { until } = inner.phase
            && now >= until
        {
            self.transition(
                inner,
                Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
            );
        }
    }

    fn transition(&self, inner: &mut Inner, to: Phase) {
        let from = inner.phase.state();
        let to_state = to.state();
        inner.phase = to;
        inner.epoch += 1;
        let c = &self.shared.counters;
        match to_state {
            State::Open => c.opened.fetch_add(1, Ordering::Relaxed),
            State::HalfOpen => c.half_opened.fetch_add(1, Ordering::Relaxed),
            State::Closed => c.closed.fetch_add(1, Ordering::Relaxed),
            State::ForcedOpen | State::Disabled => 0,
        };
        match to_state {
            State::Open | State::ForcedOpen => {
                tracing::warn!(breaker = %self.shared.name, ?from, to = ?to_state, "Circuit breaker opened");
            }
            _ => {
                tracing::info!(breaker = %self.shared.name, ?from, to = ?to_state, "Circuit breaker state changed")
            }
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        let until = now + self.shared.config.open_duration;
        self.transition(inner, Phase::Open { until });
    }

    fn closed(&self, now: Instant) -> Phase {
        Phase::Closed {
            window: Window::new(self.shared.config.window, now),
            run: 0,
        }
    }

    fn on_outcome(&self, epoch: u64, probe: bool, started: Instant, verdict: Verdict) {
        let now = Instant::now();
        let cfg = &self.shared.config;
        let slow = now.saturating_duration_since(started) >= cfg.slow_call_duration;
        let c = &self.shared.counters;
        if verdict.failure {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            c.slow.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return; // admitted in an earlier phase
        }
        match &mut inner.phase {
            Phase::Closed { window, run } => {
                window.record(verdict.failure, slow, now);
                *run = if verdict.failure { *run + 1 } else { 0 };
                let run = *run;
                let t = window.totals(now);
                if trips(cfg, t, run) {
                    self.open(&mut inner, now);
                }
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } if probe => {
                *in_flight = in_flight.saturating_sub(1);
                if verdict.failure || slow {
                    self.open(&mut inner, now);
                } else {
                    *successes += 1;
                    if *successes >= cfg.success_threshold {
                        let closed = self.closed(now);
                        self.transition(&mut inner, closed);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_abandon(&self, epoch: u64, probe: bool) {
        let mut inner = self.lock();
        if inner.epoch == epoch
            && probe
            && let Phase::HalfOpen { in_flight, .. } = &mut inner.phase
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Operator: reject every call until [`Breaker::reset`].
    pub fn force_open(&self) {
        let mut inner = self.lock();
        self.transition(&mut inner, Phase::ForcedOpen);
    }

    /// Operator: let every call through, recording nothing, until [`Breaker::reset`].
    pub fn disable(&self) {
        let mut inner = self.lock();
        self.transition(&mut inner, Phase::Disabled);
    }

    /// Operator: back to CLOSED with an empty window.
    pub fn reset(&self) {
        let mut inner = self.lock();
        let closed = self.closed(Instant::now());
        self.transition(&mut inner, closed);
    }

    /// The breaker now.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        let (totals, remaining) = match &mut inner.phase {
            Phase::Closed { window, .. } => (window.totals(now), None),
            Phase::Open { until } => (
                Totals::default(),
                Some(until.saturating_duration_since(now)),
            ),
            _ => (Totals::default(), None),
        };
        let state = inner.phase.state();
        drop(inner);
        let rate = |n: u32| {
            if totals.calls == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(totals.calls)
            }
        };
        let c = &self.shared.counters;
        BreakerSnapshot {
            name: self.shared.name.clone(),
            state,
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            slow_calls: c.slow.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failure_rate: rate(totals.failures),
            slow_call_rate: rate(totals.slow),
            window_calls: totals.calls,
            times_opened: c.opened.load(Ordering::Relaxed),
            times_half_opened: c.half_opened.load(Ordering::Relaxed),
            times_closed: c.closed.load(Ordering::Relaxed),
            open_remaining_ms: remaining.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Whether the closed window's totals (and the run of failures) open the breaker.
fn trips(cfg: &CircuitBreakerConfig, t: Totals, run: u32) -> bool {
    if cfg.consecutive_failures > 0 && run >= cfg.consecutive_failures {
        return true;
    }
    if t.calls < cfg.minimum_calls.max(1) {
        return false;
    }
    let calls = f64::from(t.calls);
    f64::from(t.failures) / calls >= cfg.failure_rate_threshold
        || f64::from(t.slow) / calls >= cfg.slow_call_rate_threshold
}

impl Permit {
    /// Reports the call's outcome.
    pub fn record(mut self, verdict: Verdict) {
        if let Some(b) = self.breaker.take() {
            b.on_outcome(self.epoch, self.probe, self.started, verdict);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.on_abandon(self.epoch, self.probe);
        }
    }
}

impl crate::exposition::Describe for BreakerSnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        let l = [("breaker", self.name.as_str())];
        let state = match self.state {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
            State::ForcedOpen => 3.0,
            State::Disabled => 4.0,
        };
        out.gauge(
            "phantom_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled.",
            &l,
            state,
        );
        out.counter(
            "phantom_circuit_breaker_calls_total",
            "Calls admitted by the breaker.",
            &l,
            self.calls as f64,
        );
        out.counter(
            "phantom_circuit_breaker_failures_total",
            "Admitted calls that failed.",
            &l,
            self.failures as f64,
        );
        out.counter(
            "phantom_circuit_breaker_rejected_total",
            "Calls rejected by the breaker.",
            &l,
            self.rejected as f64,
        );
    }
}
