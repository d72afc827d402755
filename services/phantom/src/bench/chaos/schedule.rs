//! The fault schedule: which fault, from when, for how long, and what the fake LLM does with
//! each triage it is sent. Both are made from a seed, so that a run can be repeated and the
//! two phases of one run (layers on, layers off) meet the same faults at the same times and
//! the same answers in the same order.
//!
//! The faults never overlap, and each is followed by a quiet gap: the time to recover from
//! one fault is measured in the gap after it, against the success rate of the gap before.

use std::time::Duration;

/// The seed of the schedule `phantom bench --chaos` runs (the number): fixed, so two
/// runs of one build meet the same faults and can be compared.
pub(crate) const SEED: u64 = 17;

/// Share of an erring LLM's triages answered HTTP 500.
pub(crate) const LLM_ERROR_SHARE: f64 = 0.30;
/// Share of an erring LLM's triages never answered (held until the client gives up).
pub(crate) const LLM_HANG_SHARE: f64 = 0.10;
/// The `Retry-After` of a rate-limited LLM's 429s, seconds.
pub(crate) const RETRY_AFTER_S: u64 = 1;
/// The delay the database proxy adds to each request in a latency spike.
pub(crate) const DB_DELAY: Duration = Duration::from_millis(250);

/// A fault the injector can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FaultKind {
    /// The LLM answers [`LLM_ERROR_SHARE`] of its triages HTTP 500 and never answers
    /// [`LLM_HANG_SHARE`] of them.
    LlmErrors,
    /// The LLM answers every triage 429 with `Retry-After`.
    LlmRateLimited,
    /// Redis is stopped, then started again, empty, on the same port.
    RedisDown,
    /// Every request to PostgreSQL is held back by [`DB_DELAY`].
    DbLatency,
}

impl FaultKind {
    /// Its name in metric names (`on/recovery_s/llm_errors`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            FaultKind::LlmErrors => "llm_errors",
            FaultKind::LlmRateLimited => "llm_429",
            FaultKind::RedisDown => "redis_down",
            FaultKind::DbLatency => "db_latency",
        }
    }

    /// What it is, for events and notes.
    pub(crate) fn describe(self) -> String {
        match self {
            FaultKind::LlmErrors => format!(
                "LLM fails {:.0} % of triages (HTTP 500) and hangs {:.0} %",
                LLM_ERROR_SHARE * 100.0,
                LLM_HANG_SHARE * 100.0
            ),
            FaultKind::LlmRateLimited => {
                format!("LLM answers every triage 429, Retry-After: {RETRY_AFTER_S}")
            }
            FaultKind::RedisDown => "Redis stopped (restarted empty on the same port)".to_owned(),
            FaultKind::DbLatency => format!(
                "PostgreSQL latency spike: +{} ms on every request",
                DB_DELAY.as_millis()
            ),
        }
    }
}

/// One fault, from `start` to `end` after the start of a phase's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// The fault.
    pub(crate) kind: FaultKind,
    /// When it is injected.
    pub(crate) start: Duration,
    /// When it is lifted.
    pub(crate) end: Duration,
}

/// The faults of one phase, in order, and how long the phase measures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    /// What it was made from.
    pub(crate) seed: u64,
    /// The factor its times were scaled by (1 for a measurement, less for a smoke run).
    pub(crate) scale: f64,
    /// How long each phase measures.
    pub(crate) length: Duration,
    /// The faults, by increasing start, never overlapping.
    pub(crate) windows: Vec<Window>,
}

/// Quiet time before the first fault, seconds (unscaled): the reference success rate.
const BASELINE_S: f64 = 6.0;
/// Each fault, how long it lasts, and the quiet gap after it (the time it has to recover
/// in), seconds (unscaled). Redis is down for 10 s, as the issue asks; the gap after it is
/// the longest, as a client reconnecting to Redis takes longest to come back.
const PLAN: [(FaultKind, f64, f64); 4] = [
    (FaultKind::LlmErrors, 8.0, 5.0),
    (FaultKind::LlmRateLimited, 6.0, 5.0),
    (FaultKind::RedisDown, 10.0, 6.0),
    (FaultKind::DbLatency, 6.0, 6.0),
];
/// The most each fault's start is moved later by the seed, seconds (unscaled).
const JITTER_S: f64 = 1.0;
/// How long a phase measures, seconds (unscaled): the plan with every jitter at its most.
pub(crate) const LENGTH_S: f64 = 62.0;

impl Schedule {
    /// The schedule of `seed`, its times multiplied by `scale`.
    pub(crate) fn new(seed: u64, scale: f64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut cursor = BASELINE_S;
        let windows = PLAN
            .iter()
            .map(|&(kind, lasts, gap)| {
                let start = cursor + rng.f64() * JITTER_S;
                cursor = start + lasts + gap;
                Window {
                    kind,
                    start: Duration::from_secs_f64(start * scale),
                    end: Duration::from_secs_f64((start + lasts) * scale),
                }
            })
            .collect();
        Self {
            seed,
            scale,
            length: Duration::from_secs_f64(LENGTH_S * scale),
            windows,
        }
    }
}

/// What the fake LLM does with one triage while it errs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A well-formed triage, after the latency drawn with it.
    Answer,
    /// HTTP 500.
    Error,
    /// No answer until the client gives up.
    Hang,
}

/// The fake LLM's draws, one per triage it receives, in order: the same seed gives the same
/// sequence, so the n-th triage of either phase meets the same fate.
#[derive(Debug)]
pub(crate) struct Draws(fastrand::Rng);

/// The fastest and slowest healthy answer of the fake LLM, ms: a small model's latency, short
/// enough that a triage fits a call's deadline many times over.
const ANSWER_MS: (f64, f64) = (50.0, 250.0);

impl Draws {
    /// The sequence of `seed` (kept apart from the schedule's own draws).
    pub(crate) fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed ^ 0x11a_0000))
    }

    /// The next triage's fate while the LLM errs, and its latency if it answers. Both are
    /// drawn for every triage, healthy or not, so the sequence does not depend on when the
    /// faults were.
    pub(crate) fn next(&mut self) -> (Outcome, Duration) {
        let r = self.0.f64();
        let latency = ANSWER_MS.0 + (ANSWER_MS.1 - ANSWER_MS.0) * self.0.f64();
        let outcome = if r < LLM_ERROR_SHARE {
            Outcome::Error
        } else if r < LLM_ERROR_SHARE + LLM_HANG_SHARE {
            Outcome::Hang
        } else {
            Outcome::Answer
        };
        (outcome, Duration::from_secs_f64(latency / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_schedule_and_another_seed_moves_the_faults() {
        assert_eq!(Schedule::new(SEED, 1.0), Schedule::new(SEED, 1.0));
        let other = Schedule::new(SEED + 1, 1.0);
        assert_ne!(Schedule::new(SEED, 1.0).windows, other.windows);
    }

    #[test]
    fn faults_come_in_order_never_overlap_and_leave_their_gap_within_the_phase() {
        for seed in 0..200 {
            let s = Schedule::new(seed, 1.0);
            let mut quiet_from = Duration::from_secs_f64(BASELINE_S);
            for (w, &(kind, lasts, gap)) in s.windows.iter().zip(&PLAN) {
                assert_eq!(w.kind, kind);
                assert!(w.start >= quiet_from, "seed {seed}: {w:?} starts too soon");
                let length = (w.end - w.start).as_secs_f64();
                assert!((length - lasts).abs() < 1e-6, "seed {seed}: {w:?}");
                quiet_from = w.end + Duration::from_secs_f64(gap);
            }
            assert!(quiet_from <= s.length, "seed {seed}: the last gap is cut");
        }
    }

    #[test]
    fn a_smoke_schedule_is_the_same_schedule_shrunk() {
        let full = Schedule::new(SEED, 1.0);
        let smoke = Schedule::new(SEED, 0.1);
        for (f, s) in full.windows.iter().zip(&smoke.windows) {
            assert!((f.start.as_secs_f64() * 0.1 - s.start.as_secs_f64()).abs() < 1e-6);
        }
        assert!((full.length.as_secs_f64() * 0.1 - smoke.length.as_secs_f64()).abs() < 1e-6);
    }

    #[test]
    fn the_llm_draws_repeat_for_a_seed_and_hold_their_shares() {
        let a: Vec<_> = {
            let mut d = Draws::new(SEED);
            (0..10_000).map(|_| d.next()).collect()
        };
        let mut d = Draws::new(SEED);
        assert!(a.iter().all(|x| *x == d.next()));
        let share = |o| a.iter().filter(|(x, _)| *x == o).count() as f64 / a.len() as f64;
        assert!((share(Outcome::Error) - LLM_ERROR_SHARE).abs() < 0.02);
        assert!((share(Outcome::Hang) - LLM_HANG_SHARE).abs() < 0.02);
        assert!(a.iter().all(|(_, l)| {
            let ms = l.as_secs_f64() * 1000.0;
            (ANSWER_MS.0..=ANSWER_MS.1).contains(&ms)
        }));
    }
}
