//! What a benchmark run produces, as it is saved (`--save NAME`), compared (`--compare A B`)
//! and drawn (`--report FILE`).
//!
//! A run is a list of suites; a suite is a list of named metrics, each with the samples of
//! its repeated measurements (`--repeat`), so that a comparison can tell a change from
//! noise. Suites may also keep series to draw (latency CDFs, throughput over time) and a
//! timeline of events (faults injected, breakers opening).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of this format; a saved file of another version is refused, not misread.
pub const FORMAT: u32 = 1;

/// One run of `phantom bench`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    /// The name it was saved under (empty when not saved).
    pub name: String,
    /// When it started, RFC 3339.
    pub started: String,
    /// Where it ran.
    pub machine: Machine,
    /// The commit of the binary (`git describe`, or "unknown").
    pub commit: String,
    /// How it ran: durations, repeats, what was pinned where.
    pub config: BTreeMap<String, String>,
    /// The suites, in the order they ran.
    pub suites: Vec<Suite>,
    /// Suites of which a repeat failed (the reason is in the suite's notes).
    #[serde(default)]
    pub failed: Vec<String>,
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Machine {
    /// Host name.
    pub host: String,
    /// Logical CPUs this process may use.
    pub cpus: usize,
    /// The CPU's model name (`/proc/cpuinfo`), or empty.
    pub cpu_model: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Kernel release and OS.
    pub os: String,
}

/// One suite's results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Suite {
    /// `layers`, `database`, `chaos`, ...
    pub name: String,
    /// Its metrics, in the order they were measured.
    pub metrics: Vec<Metric>,
    /// Curves to draw.
    #[serde(default)]
    pub series: Vec<Series>,
    /// What happened when (chaos: faults injected and lifted, breakers opening).
    #[serde(default)]
    pub events: Vec<Event>,
    /// Lines for people: what the figures mean, what was skipped and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput, success rate, ratios against a reference.
    Higher,
    /// Latency, wall time, memory, calls wasted.
    Lower,
    /// A count that is reported, not judged.
    Neither,
}

/// A named figure, measured once per repeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    /// `default_vs_tonic`, `p99_ms`, ...
    pub name: String,
    /// `calls/s`, `ms`, `x`, `%`, ...
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// One value per repeat.
    pub samples: Vec<f64>,
    /// A target the issue tracker set, if any (`>= 0.8`, `<= 1.5`): the report says whether
    /// the median meets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// A bound a metric should meet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// At least this.
    AtLeast(f64),
    /// At most this.
    AtMost(f64),
}

impl Target {
    /// Whether `v` meets it.
    pub fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::AtMost(t) => v <= t,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtLeast(t) => write!(f, ">= {t}"),
            Target::AtMost(t) => write!(f, "<= {t}"),
        }
    }
}

impl Metric {
    /// A metric of one sample so far.
    pub fn new(name: &str, unit: &str, better: Better, value: f64) -> Self {
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            better,
            samples: vec![value],
            target: None,
        }
    }

    /// With a target.
    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The median of its samples (NaN for none).
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    /// The lowest and highest sample.
    pub fn spread(&self) -> (f64, f64) {
        self.samples
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }
}

/// A curve: `points` are (x, y).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// What it shows, as its legend says it: `ScoreCvss latency, default config`.
    pub name: String,
    /// Which chart it belongs to: series of the same chart are drawn together.
    pub chart: String,
    /// Kind of chart.
    pub kind: SeriesKind,
    /// Axis titles.
    pub x_label: String,
    /// Axis titles.
    pub y_label: String,
    /// The points, by increasing x.
    pub points: Vec<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// A latency CDF: x is latency (ms, drawn on a log scale), y the share of calls at or
    /// below it (0 to 1).
    Cdf,
    /// A value over time: x is seconds since the start of the run.
    Timeline,
}

/// Something that happened during a run, at `t` seconds from its start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Seconds since the start of the run (or of its phase, as `phase` says).
    pub t: f64,
    /// Which phase of the run (`layers on`, `layers off`; empty for none).
    #[serde(default)]
    pub phase: String,
    /// `fault`, `recovered`, `breaker`, `shed`, ...
    pub kind: String,
    /// What happened: `redis stopped`, `breaker vuln-analyzer open`.
    pub what: String,
}

/// The median of `v` (NaN for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What a comparison concludes of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// B is better than A beyond the noise.
    Better,
    /// B is worse than A beyond the noise.
    Worse,
    /// The spreads overlap, or the metric is not judged.
    NoChange,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoChange => "no change",
        })
    }
}

/// The verdict on `b` against `a` (the same metric of two runs): a change only when the
/// spreads (lowest to highest sample) do not overlap; with one sample each, a change only
/// beyond `min_change` (a share of A's median), since one sample says nothing of the noise.
pub fn verdict(a: &Metric, b: &Metric, min_change: f64) -> Verdict {
    if a.better == Better::Neither
        || b.better == Better::Neither
        || a.samples.is_empty()
        || b.samples.is_empty()
    {
        return Verdict::NoChange;
    }
    let (alo, ahi) = a.spread();
    let (blo, bhi) = b.spread();
    let overlap = blo <= ahi && alo <= bhi;
    let single = a.samples.len() < 2 || b.samples.len() < 2;
    let (ma, mb) = (a.median(), b.median());
    let relative = if ma == 0.0 {
        f64::INFINITY
    } else {
        ((mb - ma) / ma).abs()
    };
    if overlap || (single && relative < min_change) || mb == ma {
        return Verdict::NoChange;
    }
    let up = mb > ma;
    match (a.better, up) {
        (Better::Higher, true) | (Better::Lower, false) => Verdict::Better,
        _ => Verdict::Worse,
    }
}

/// One line of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// `suite/metric`.
    pub metric: String,
    /// Its unit.
    pub unit: String,
    /// Median in A, and its spread.
    pub a: (f64, f64, f64),
    /// Median in B, and its spread.
    pub b: (f64, f64, f64),
    /// (B − A) / A, in percent (NaN when A is 0).
    pub change_pct: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// Every metric A and B both have, compared; metrics only one of them has are listed in
/// the second value (`suite/metric`, and which run has it).
pub fn compare(a: &Results, b: &Results, min_change: f64) -> (Vec<Delta>, Vec<(String, char)>) {
    let index = |r: &Results| {
        r.suites
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |m| (format!("{}/{}", s.name, m.name), m.clone()))
            })
            .collect::<Vec<_>>()
    };
    let (ia, ib) = (index(a), index(b));
    let mut deltas = Vec::new();
    let mut alone = Vec::new();
    for (name, ma) in &ia {
        match ib.iter().find(|(n, _)| n == name) {
            Some((_, mb)) => {
                let (alo, ahi) = ma.spread();
                let (blo, bhi) = mb.spread();
                let (am, bm) = (ma.median(), mb.median());
                deltas.push(Delta {
                    metric: name.clone(),
                    unit: ma.unit.clone(),
                    a: (am, alo, ahi),
                    b: (bm, blo, bhi),
                    change_pct: if am == 0.0 {
                        f64::NAN
                    } else {
                        (bm - am) / am * 100.0
                    },
                    verdict: verdict(ma, mb, min_change),
                });
            }
            None => alone.push((name.clone(), 'A')),
        }
    }
    for (name, _) in &ib {
        if !ia.iter().any(|(n, _)| n == name) {
            alone.push((name.clone(), 'B'));
        }
    }
    (deltas, alone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(better: Better, samples: &[f64]) -> Metric {
        Metric {
            name: "x".into(),
            unit: "calls/s".into(),
            better,
            samples: samples.to_vec(),
            target: None,
        }
    }

    #[test]
    fn overlapping_spreads_are_no_change_and_separate_ones_are_judged_by_direction() {
        let a = m(Better::Higher, &[100.0, 104.0, 98.0]);
        assert_eq!(
            verdict(&a, &m(Better::Higher, &[103.0, 110.0, 111.0]), 0.05),
            Verdict::NoChange
        );
        assert_eq!(
            verdict(&a, &m(Better::Higher, &[120.0, 125.0, 122.0]), 0.05),
            Verdict::Better
        );
        assert_eq!(
            verdict(&a, &m(Better::Higher, &[80.0, 85.0, 82.0]), 0.05),
            Verdict::Worse
        );
        let lat = m(Better::Lower, &[10.0, 11.0, 10.5]);
        assert_eq!(
            verdict(&lat, &m(Better::Lower, &[5.0, 5.5, 6.0]), 0.05),
            Verdict::Better
        );
        assert_eq!(
            verdict(&lat, &m(Better::Neither, &[50.0]), 0.05),
            Verdict::NoChange
        );
    }

    #[test]
    fn single_samples_need_the_minimum_change_to_be_judged() {
        let a = m(Better::Lower, &[10.0]);
        assert_eq!(
            verdict(&a, &m(Better::Lower, &[10.3]), 0.05),
            Verdict::NoChange
        );
        assert_eq!(
            verdict(&a, &m(Better::Lower, &[12.0]), 0.05),
            Verdict::Worse
        );
    }

    #[test]
    fn a_comparison_lists_shared_metrics_and_those_only_one_run_has() {
        let run = |metrics: Vec<Metric>| Results {
            format: FORMAT,
            name: String::new(),
            started: String::new(),
            machine: Machine::default(),
            commit: String::new(),
            config: BTreeMap::new(),
            failed: Vec::new(),
            suites: vec![Suite {
                name: "layers".into(),
                metrics,
                ..Default::default()
            }],
        };
        let mut only_b = m(Better::Lower, &[1.0]);
        only_b.name = "p99_ms".into();
        let a = run(vec![m(Better::Higher, &[100.0, 101.0])]);
        let b = run(vec![m(Better::Higher, &[150.0, 151.0]), only_b]);
        let (deltas, alone) = compare(&a, &b, 0.05);
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].metric, "layers/x");
        assert!((deltas[0].change_pct - 49.75).abs() < 0.01);
        assert_eq!(deltas[0].verdict, Verdict::Better);
        assert_eq!(alone, vec![("layers/p99_ms".to_owned(), 'B')]);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
