//! When an asset is due: a cron pattern read in a time zone, or a fixed interval; the jitter
//! that spreads runs due together; and what a due time that could not run on time does.
//!
//! Cron patterns are parsed and evaluated by `croner` (POSIX/Vixie semantics: five fields, an
//! optional seconds field, `@daily`-style aliases, `L`/`W`/`#`), over `jiff` time zones whose
//! database is compiled in, so a container without `/usr/share/zoneinfo` reads
//! "Europe/Paris" the same as a laptop, daylight saving time included. Both were picked over
//! `cron` (seven fields, Quartz weekdays: `1` is Sunday) because a platform team writes the
//! crontab patterns it already knows.

use std::{fmt, time::Duration};

use croner::Cron;
use jiff::{Timestamp, tz::TimeZone};
use phantom_proto::pb;

/// Shortest interval: a schedule faster than this is a load test, not a watch.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest interval.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);
/// Largest jitter.
pub const MAX_JITTER: Duration = Duration::from_secs(3600);
/// Longest cron pattern or time zone name read.
const MAX_TEXT: usize = 128;

/// When an asset is due.
#[derive(Clone)]
pub enum When {
    /// A cron pattern in a time zone.
    Cron {
        /// The pattern as given.
        pattern: String,
        /// The parsed pattern.
        cron: Box<Cron>,
        /// The zone's IANA name as given ("UTC" when none was).
        zone_name: String,
        /// The zone.
        zone: TimeZone,
    },
    /// Every so often, counted from the asset's creation.
    Every(Duration),
}

impl fmt::Debug for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Cron {
                pattern, zone_name, ..
            } => write!(f, "Cron({pattern:?} in {zone_name})"),
            When::Every(every) => write!(f, "Every({every:?})"),
        }
    }
}

/// What a due time that could not run on time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Run once, as soon as possible (however many due times were missed).
    RunOnce,
    /// Skip; the schedule goes on at its next due time.
    Skip,
}

impl Missed {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::RunOnce => "run_once",
            Missed::Skip => "skip",
        }
    }

    /// The policy stored as `name`.
    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "run_once" => Some(Missed::RunOnce),
            "skip" => Some(Missed::Skip),
            _ => None,
        }
    }
}

/// An asset's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When it is due.
    pub when: When,
    /// Each run starts up to this much after its due time.
    pub jitter: Duration,
    /// What missed due times do.
    pub missed: Missed,
}

/// Why a schedule was refused: the request field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field of `Schedule` (`cron`, `time_zone`, `every`, `jitter`).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

fn duration_of(
    field: &'static str,
    d: Option<&prost_types::Duration>,
) -> Result<Duration, Invalid> {
    let Some(d) = d else {
        return Ok(Duration::ZERO);
    };
    if d.seconds < 0 || d.nanos < 0 {
        return Err(invalid(field, "must not be negative"));
    }
    Duration::try_from(*d).map_err(|_| invalid(field, "is not a valid duration"))
}

/// A cron pattern, parsed (five or six fields, or an alias).
pub fn parse_cron(pattern: &str) -> Result<Cron, Invalid> {
    if pattern.len() > MAX_TEXT {
        return Err(invalid("cron", format!("is longer than {MAX_TEXT} bytes")));
    }
    if !pattern.is_ascii() || pattern.chars().any(|c| c.is_ascii_control()) {
        return Err(invalid("cron", "must be printable ASCII"));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|e| invalid("cron", format!("is not a cron pattern: {e}")))
}

/// A time zone by IANA name, from the compiled-in database.
pub fn parse_zone(name: &str) -> Result<TimeZone, Invalid> {
    if name.len() > MAX_TEXT || !name.is_ascii() || name.chars().any(|c| c.is_ascii_control()) {
        return Err(invalid("time_zone", "is not an IANA time zone name"));
    }
    TimeZone::get(name).map_err(|_| {
        invalid(
            "time_zone",
            format!(
                "{} is not an IANA time zone name (\"Europe/Paris\", \"UTC\")",
                phantom_layers::status::echo(name)
            ),
        )
    })
}

impl Schedule {
    /// The schedule a request gives, checked.
    pub fn from_request(s: &pb::Schedule) -> Result<Self, Invalid> {
        let every = duration_of("every", s.every.as_ref())?;
        let jitter = duration_of("jitter", s.jitter.as_ref())?;
        let cron = s.cron.trim();
        let when = match (cron.is_empty(), every.is_zero()) {
            (true, true) => {
                return Err(invalid(
                    "cron",
                    "a schedule needs a cron pattern or an interval (every)",
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "every",
                    "give a cron pattern or an interval, not both",
                ));
            }
            (false, true) => {
                let zone_name = match s.time_zone.trim() {
                    "" => "UTC",
                    name => name,
                };
                When::Cron {
                    pattern: cron.to_owned(),
                    cron: Box::new(parse_cron(cron)?),
                    zone: parse_zone(zone_name)?,
                    zone_name: zone_name.to_owned(),
                }
            }
            (true, false) => {
                if !s.time_zone.trim().is_empty() {
                    return Err(invalid(
                        "time_zone",
                        "only a cron pattern is read in a time zone",
                    ));
                }
                if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
                    return Err(invalid("every", "must be between 1 s and 366 days"));
                }
                When::Every(every)
            }
        };
        if jitter > MAX_JITTER {
            return Err(invalid("jitter", "must be at most 1 hour"));
        }
        if let When::Every(every) = when
            && jitter >= every
        {
            return Err(invalid("jitter", "must be shorter than the interval"));
        }
        let missed = match pb::MissedRuns::try_from(s.missed) {
            Ok(pb::MissedRuns::Unspecified | pb::MissedRuns::RunOnce) => Missed::RunOnce,
            Ok(pb::MissedRuns::Skip) => Missed::Skip,
            Err(_) => return Err(invalid("missed", "is not a MissedRuns value")),
        };
        Ok(Self {
            when,
            jitter,
            missed,
        })
    }

    /// The schedule as stored: `(cron, time_zone, every µs, jitter µs, missed)`.
    pub fn from_stored(
        cron: &str,
        time_zone: &str,
        every_micros: i64,
        jitter_micros: i64,
        missed: &str,
    ) -> Result<Self, String> {
        let when = if cron.is_empty() {
            let every = Duration::from_micros(every_micros.unsigned_abs());
            if every < MIN_EVERY {
                return Err(format!("interval of {every_micros} µs"));
            }
            When::Every(every)
        } else {
            When::Cron {
                pattern: cron.to_owned(),
                cron: Box::new(parse_cron(cron).map_err(|e| e.reason)?),
                zone: parse_zone(time_zone).map_err(|e| e.reason)?,
                zone_name: time_zone.to_owned(),
            }
        };
        Ok(Self {
            when,
            jitter: Duration::from_micros(jitter_micros.unsigned_abs()),
            missed: Missed::from_stored(missed).ok_or_else(|| format!("missed runs {missed:?}"))?,
        })
    }

    /// The stored columns: `(cron, time_zone, every µs, jitter µs, missed)`.
    pub fn to_stored(&self) -> (String, String, i64, i64, &'static str) {
        let (cron, zone, every) = match &self.when {
            When::Cron {
                pattern, zone_name, ..
            } => (pattern.clone(), zone_name.clone(), 0),
            When::Every(every) => (String::new(), "UTC".to_owned(), micros(*every)),
        };
        (cron, zone, every, micros(self.jitter), self.missed.as_str())
    }

    /// The schedule as the API shows it.
    pub fn to_wire(&self) -> pb::Schedule {
        let (cron, time_zone, every) = match &self.when {
            When::Cron {
                pattern, zone_name, ..
            } => (pattern.clone(), zone_name.clone(), None),
            When::Every(every) => (
                String::new(),
                String::new(),
                prost_types::Duration::try_from(*every).ok(),
            ),
        };
        pb::Schedule {
            cron,
            time_zone,
            every,
            jitter: (!self.jitter.is_zero())
                .then(|| prost_types::Duration::try_from(self.jitter).ok())
                .flatten(),
            missed: match self.missed {
                Missed::RunOnce => pb::MissedRuns::RunOnce,
                Missed::Skip => pb::MissedRuns::Skip,
            }
            .into(),
        }
    }

    /// The first due time strictly after `after` (µs since the epoch); `anchor` is where an
    /// interval counts from (the asset's creation). `None` when the pattern never matches
    /// again (a pattern naming a day that does not exist, say).
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        match &self.when {
            When::Every(every) => {
                let every = micros(*every).max(1);
                if after < anchor {
                    return Some(anchor);
                }
                let periods = (after - anchor) / every + 1;
                anchor.checked_add(periods.checked_mul(every)?)
            }
            When::Cron { cron, zone, .. } => {
                let at = Timestamp::from_microsecond(after)
                    .ok()?
                    .to_zoned(zone.clone());
                let next = cron.find_next_occurrence(&at, false).ok()?;
                let next = next.timestamp().as_microsecond();
                // croner works to the second: a due time is never at or before `after`.
                (next > after).then_some(next)
            }
        }
    }

    /// When a run due at `due` starts: `due` plus a random part of the jitter.
    pub fn run_at(&self, due: i64) -> i64 {
        let jitter = micros(self.jitter);
        if jitter == 0 {
            return due;
        }
        due.saturating_add(fastrand::i64(0..=jitter))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What a replica does with an asset whose run time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a scan for due time `due`; the next due time is `next`.
    Run {
        /// The due time the scan runs for.
        due: i64,
        /// The next due time.
        next: i64,
    },
    /// Skip the missed due times (the policy says so); the next due time is `next`.
    Skip {
        /// The next due time.
        next: i64,
    },
    /// Wait: the previous run is still going, and missed runs run once when it ends.
    Wait,
    /// The schedule never fires again.
    Finished,
}

/// What to do with an asset due at `due` (its nominal due time), at `now`, when its previous
/// run `busy` or not, with `grace`: how late a due time may start before it counts as missed.
pub fn decide(
    schedule: &Schedule,
    due: i64,
    anchor: i64,
    now: i64,
    busy: bool,
    grace: Duration,
) -> Decision {
    let Some(next) = schedule.next_after(now.max(due), anchor) else {
        return if busy {
            Decision::Wait
        } else {
            Decision::Finished
        };
    };
    // A due time is on time within the grace, counted from when the run was meant to start
    // (its jitter included: a jittered run is not late).
    let late = now.saturating_sub(due) > micros(grace) + micros(schedule.jitter);
    match (busy, schedule.missed) {
        // Never two runs of one asset at once.
        (true, Missed::RunOnce) => Decision::Wait,
        (true, Missed::Skip) => Decision::Skip { next },
        (false, Missed::Skip) if late => Decision::Skip { next },
        (false, _) => Decision::Run { due, next },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn every(secs: u64, missed: Missed) -> Schedule {
        Schedule {
            when: When::Every(Duration::from_secs(secs)),
            jitter: Duration::ZERO,
            missed,
        }
    }

    fn cron(pattern: &str, zone: &str) -> Schedule {
        Schedule::from_request(&pb::Schedule {
            cron: pattern.into(),
            time_zone: zone.into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn an_interval_counts_from_the_anchor() {
        let s = every(10, Missed::RunOnce);
        assert_eq!(s.next_after(0, 0), Some(10 * S));
        assert_eq!(s.next_after(9 * S, 0), Some(10 * S));
        assert_eq!(s.next_after(10 * S, 0), Some(20 * S));
        assert_eq!(s.next_after(-5 * S, 0), Some(0));
    }

    #[test]
    fn a_cron_pattern_is_read_in_its_time_zone_across_daylight_saving_time() {
        let s = cron("0 3 * * *", "Europe/Paris");
        // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC in summer.
        assert_eq!(
            s.next_after(at("2026-03-27T12:00:00Z"), 0),
            Some(at("2026-03-28T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-03-28T12:00:00Z"), 0),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // 02:30 does not exist in Paris on 2026-03-29: the run is not lost.
        let gap = cron("30 2 * * *", "Europe/Paris");
        let next = gap.next_after(at("2026-03-28T12:00:00Z"), 0).unwrap();
        assert!(next > at("2026-03-28T12:00:00Z") && next < at("2026-03-30T00:00:00Z"));
        // Six fields: seconds first.
        let fast = cron("*/5 * * * * *", "");
        assert_eq!(
            fast.next_after(at("2026-01-01T00:00:01Z"), 0),
            Some(at("2026-01-01T00:00:05Z"))
        );
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        let refuse = |s: pb::Schedule| Schedule::from_request(&s).unwrap_err().field;
        assert_eq!(refuse(pb::Schedule::default()), "cron");
        assert_eq!(
            refuse(pb::Schedule {
                cron: "61 * * * *".into(),
                ..Default::default()
            }),
            "cron"
        );
        assert_eq!(
            refuse(pb::Schedule {
                cron: "0 3 * * *".into(),
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            }),
            "time_zone"
        );
        assert_eq!(
            refuse(pb::Schedule {
                cron: "0 3 * * *".into(),
                every: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0
                }),
                ..Default::default()
            }),
            "every"
        );
        assert_eq!(
            refuse(pb::Schedule {
                every: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0
                }),
                jitter: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0
                }),
                ..Default::default()
            }),
            "jitter"
        );
        assert_eq!(
            refuse(pb::Schedule {
                every: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0
                }),
                ..Default::default()
            }),
            "every"
        );
        assert_eq!(
            refuse(pb::Schedule {
                cron: "0 3 * * *".repeat(100),
                ..Default::default()
            }),
            "cron"
        );
    }

    #[test]
    fn a_schedule_round_trips_through_the_store() {
        let s = cron("0 3 * * 1-5", "America/New_York");
        let (c, z, e, j, m) = s.to_stored();
        let back = Schedule::from_stored(&c, &z, e, j, m).unwrap();
        assert_eq!(back.to_wire(), s.to_wire());
        let s = every(30, Missed::Skip);
        let (c, z, e, j, m) = s.to_stored();
        assert_eq!(
            Schedule::from_stored(&c, &z, e, j, m).unwrap().to_wire(),
            s.to_wire()
        );
    }

    #[test]
    fn jitter_delays_a_run_within_its_bound() {
        let mut s = every(60, Missed::RunOnce);
        s.jitter = Duration::from_secs(5);
        for _ in 0..100 {
            let run = s.run_at(100 * S);
            assert!((100 * S..=105 * S).contains(&run));
        }
    }

    #[test]
    fn a_due_time_runs_once_on_time_and_missed_ones_follow_the_policy() {
        let grace = Duration::from_secs(2);
        let run_once = every(10, Missed::RunOnce);
        let skip = every(10, Missed::Skip);
        // On time: both run, and the next due time is the following one.
        assert_eq!(
            decide(&run_once, 10 * S, 0, 10 * S, false, grace),
            Decision::Run {
                due: 10 * S,
                next: 20 * S
            }
        );
        assert_eq!(
            decide(&skip, 10 * S, 0, 11 * S, false, grace),
            Decision::Run {
                due: 10 * S,
                next: 20 * S
            }
        );
        // Down from 10 s to 55 s: run once now, next at 60 s; or skip to 60 s.
        assert_eq!(
            decide(&run_once, 10 * S, 0, 55 * S, false, grace),
            Decision::Run {
                due: 10 * S,
                next: 60 * S
            }
        );
        assert_eq!(
            decide(&skip, 10 * S, 0, 55 * S, false, grace),
            Decision::Skip { next: 60 * S }
        );
        // The previous run still going: wait for it, or skip this due time.
        assert_eq!(
            decide(&run_once, 10 * S, 0, 11 * S, true, grace),
            Decision::Wait
        );
        assert_eq!(
            decide(&skip, 10 * S, 0, 11 * S, true, grace),
            Decision::Skip { next: 20 * S }
        );
    }
}
