//! CVSS scores of a whole vector: v3.1 and v3.0 by the specification's equations, v4.0 by the
//! `cvss` crate.
//!
//! What a vector is scored for:
//! - v3.x: the base score (section 7.1), the temporal score (7.2) and the environmental score
//!   (7.3), each with its severity. A vector without temporal metrics (or with all of them X)
//!   has a temporal score equal to its base score, as the specification says. The
//!   environmental score is always computed, modified metrics given as X taking their base
//!   values: without environmental metrics it is the temporal score, except that for a v3.1
//!   vector whose scope changes v3.1's modified-impact equation can put it a tenth above (as
//!   FIRST's calculator shows it).
//! - v4.0: the base score (CVSS-B, from the base metrics alone) and the score of the vector as
//!   given, named as the specification's section 1.3 names it: CVSS-B, CVSS-BT, CVSS-BE or
//!   CVSS-BTE, by which threat and environmental metrics are present with a value other than
//!   X. Supplemental metrics are validated and kept in the vector but never change a score.
//!
//! v3.x is written from the FIRST specification
//! (<https://www.first.org/cvss/v3.1/specification-document>, section 7 and Appendix A) rather
//! than taken from a crate, because the specification's `Roundup` is defined on integers
//! precisely so that implementations agree to the last decimal, and that is the property this
//! module is tested for. v3.0 vectors are scored with the same base and temporal equations
//! (v3.1 changed only `Roundup` and definitions, not weights) and the v3.1 `Roundup`, as NVD
//! does when it rescores; the one equation v3.1 changed is the Scope-changed modified impact
//! of the environmental score, `7.52 × (MISS − 0.029) − 3.25 × (MISS × 0.9731 − 0.02)^13`,
//! where v3.0 has `7.52 × (MISS − 0.029) − 3.25 × (MISS − 0.02)^15`: each version gets its own.
//! v3.x vectors are parsed order-tolerantly, as the v3.1 specification allows ("metrics can
//! be specified in any order").
//!
//! v4.0 is not an equation but FIRST's calculator: a table of 270 macro-vector scores and an
//! interpolation between them. Rather than transcribe that table, v4.0 vectors are scored by
//! RustSec's `cvss` crate, which ports the reference calculator and is tested against Red Hat's
//! exhaustive vector set. The crate parses leniently (any order), while the v4.0
//! specification (section 7) fixes the order of the metrics, makes names and values
//! case-sensitive and forbids repeats, so this module checks a v4.0 vector strictly first
//! ([`V4_METRICS`]) and hands the crate only vectors the specification accepts.
//!
//! The test data (`tests/data/cvss-v3.txt`, `tests/data/cvss-v4.txt`) are Red Hat's published
//! vectors and scores, plus rows scored by Red Hat's package; each file says which.

use std::fmt;

use phantom_layers::status::echo;
use phantom_proto::pb;

/// The longest vector parsed. A v3.1 vector with every base, temporal and environmental
/// metric is 132 characters, a v4.0 one with every metric about 200; a longer one is junk,
/// refused before it costs anything.
pub const MAX_VECTOR_LEN: usize = 512;

/// A parsed CVSS vector: v3.x with its temporal and environmental metrics, or v4.0.
#[derive(Debug, Clone, PartialEq)]
pub struct Vector(Version);

#[derive(Debug, Clone, PartialEq)]
enum Version {
    /// CVSS v3.1 or v3.0, scored by [`V3Vector::scores`].
    V3(V3Vector),
    /// CVSS v4.0, scored by the `cvss` crate.
    V4(V4Vector),
}

/// A CVSS v4.0 vector as the `cvss` crate scores it.
#[derive(Debug, Clone, PartialEq)]
struct V4Vector {
    /// The base metrics alone, for the CVSS-B score.
    base: cvss::v4::Vector,
    /// Every metric given with a value other than X, in specification order.
    full: cvss::v4::Vector,
    /// Whether a threat metric is given (not X).
    threat: bool,
    /// Whether an environmental metric is given (not X).
    environmental: bool,
}

/// A CVSS v3.x vector. Temporal and environmental metrics given as X are `None`, as are those
/// absent: the specification treats the two alike.
#[derive(Debug, Clone, Copy, PartialEq)]
struct V3Vector {
    version: &'static str,
    av: AttackVector,
    ac: High,
    pr: Privileges,
    ui: UserInteraction,
    scope_changed: bool,
    c: Impact,
    i: Impact,
    a: Impact,
    /// Exploit Code Maturity, Remediation Level, Report Confidence (section 4).
    e: Option<Weight>,
    rl: Option<Weight>,
    rc: Option<Weight>,
    /// Security requirements (section 5.1).
    cr: Option<Weight>,
    ir: Option<Weight>,
    ar: Option<Weight>,
    /// Modified base metrics (section 5.2).
    mav: Option<AttackVector>,
    mac: Option<High>,
    mpr: Option<Privileges>,
    mui: Option<UserInteraction>,
    ms: Option<bool>,
    mc: Option<Impact>,
    mi: Option<Impact>,
    ma: Option<Impact>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AttackVector {
    Network,
    Adjacent,
    Local,
    Physical,
}

/// Attack complexity: Low or High.
#[derive(Debug, Clone, Copy, PartialEq)]
enum High {
    Low,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Privileges {
    None,
    Low,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum UserInteraction {
    None,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Impact {
    None,
    Low,
    High,
}

/// A temporal metric's or a security requirement's value: its letter and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Weight {
    letter: &'static str,
    weight: f64,
}

/// The values of a v3.x temporal metric or security requirement and their weights (v3.1
/// specification section 7.4), X first. X weighs 1, like the value that means "no change".
type Weights = &'static [(&'static str, f64)];

const E_WEIGHTS: Weights = &[
    ("X", 1.0),
    ("H", 1.0),
    ("F", 0.97),
    ("P", 0.94),
    ("U", 0.91),
];
const RL_WEIGHTS: Weights = &[
    ("X", 1.0),
    ("U", 1.0),
    ("W", 0.97),
    ("T", 0.96),
    ("O", 0.95),
];
const RC_WEIGHTS: Weights = &[("X", 1.0), ("C", 1.0), ("R", 0.96), ("U", 0.92)];
const REQUIREMENT_WEIGHTS: Weights = &[("X", 1.0), ("H", 1.5), ("M", 1.0), ("L", 0.5)];

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// The vector is empty.
    #[error("vector is empty")]
    Empty,
    /// The vector is longer than any valid one (the longest, v4.0 with every metric, is
    /// under 200 characters): refused before it is parsed.
    #[error("vector is {0} bytes long, over the limit of {MAX_VECTOR_LEN}")]
    TooLong(usize),
    /// No `CVSS:3.1/`, `CVSS:3.0/` or `CVSS:4.0/` prefix (CVSS v2 vectors are not scored here).
    #[error("vector must start with CVSS:3.1/, CVSS:3.0/ or CVSS:4.0/")]
    Prefix,
    /// A component is not `Metric:Value`.
    #[error("component {} is not of the form METRIC:VALUE", echo(.0))]
    Component(String),
    /// A metric appears twice.
    #[error("metric {} appears more than once", echo(.0))]
    Duplicate(String),
    /// A metric name is not defined by the vector's CVSS version.
    #[error("unknown metric {}", echo(.0))]
    UnknownMetric(String),
    /// A value is not defined for its metric.
    #[error("invalid value {} for metric {}", echo(.value), echo(.metric))]
    Value {
        /// The metric.
        metric: String,
        /// The value given.
        value: String,
    },
    /// A base metric is absent.
    #[error("base metric {0} is missing")]
    Missing(&'static str),
    /// A v4.0 metric written out of the specification's order.
    #[error("metric {metric} must come before {after} (CVSS v4.0 fixes the order of metrics)")]
    OutOfOrder {
        /// The metric out of place.
        metric: &'static str,
        /// The metric it follows but must precede.
        after: &'static str,
    },
    /// A v4.0 metric name or value in the wrong case.
    #[error("{} must be written {expected} (CVSS v4.0 is case-sensitive)", echo(.given))]
    Case {
        /// What was written.
        given: String,
        /// How the specification writes it.
        expected: &'static str,
    },
    /// A `CVSS:4.0/` vector the `cvss` crate refused (it says which metric and why). The
    /// strict check before it should leave none.
    #[error("invalid CVSS v4.0 vector: {0}")]
    V4(cvss::Error),
}

/// The metrics of CVSS v4.0 and their values, in the order the specification's section 7
/// (Table 23) requires them in a vector: base (all mandatory), threat, environmental,
/// supplemental. Every optional metric accepts X (Not Defined), listed first.
pub const V4_METRICS: &[(&str, &[&str])] = &[
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("AT", &["N", "P"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "P", "A"]),
    ("VC", &["H", "L", "N"]),
    ("VI", &["H", "L", "N"]),
    ("VA", &["H", "L", "N"]),
    ("SC", &["H", "L", "N"]),
    ("SI", &["H", "L", "N"]),
    ("SA", &["H", "L", "N"]),
    ("E", &["X", "A", "P", "U"]),
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MAT", &["X", "N", "P"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "P", "A"]),
    ("MVC", &["X", "H", "L", "N"]),
    ("MVI", &["X", "H", "L", "N"]),
    ("MVA", &["X", "H", "L", "N"]),
    ("MSC", &["X", "H", "L", "N"]),
    ("MSI", &["X", "S", "H", "L", "N"]),
    ("MSA", &["X", "S", "H", "L", "N"]),
    ("S", &["X", "N", "P"]),
    ("AU", &["X", "N", "Y"]),
    ("R", &["X", "A", "U", "I"]),
    ("V", &["X", "D", "C"]),
    ("RE", &["X", "L", "M", "H"]),
    ("U", &["X", "Clear", "Green", "Amber", "Red"]),
];

/// How many of [`V4_METRICS`] are base metrics (the first ones).
const V4_BASE_COUNT: usize = 11;
/// The index in [`V4_METRICS`] of the threat metric (E).
const V4_THREAT: usize = 11;
/// The indices in [`V4_METRICS`] of the environmental metrics (CR to MSA).
const V4_ENVIRONMENTAL: std::ops::Range<usize> = 12..26;

impl std::str::FromStr for Vector {
    type Err = CvssError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_VECTOR_LEN {
            return Err(CvssError::TooLong(s.len()));
        }
        if let Some(rest) = s.strip_prefix("CVSS:4.0/") {
            parse_v4(rest).map(|v| Self(Version::V4(v)))
        } else {
            s.parse::<V3Vector>().map(|v| Self(Version::V3(v)))
        }
    }
}

/// Checks the metrics of a v4.0 vector (after `CVSS:4.0/`) as the specification's section 7
/// requires, then has the `cvss` crate parse the base metrics alone and every metric not X.
fn parse_v4(rest: &str) -> Result<V4Vector, CvssError> {
    // (index in V4_METRICS, value) of each metric given, in the order given.
    let mut given: Vec<(usize, &'static str)> = Vec::new();
    for part in rest.split('/') {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| CvssError::Component(part.to_owned()))?;
        let index = match V4_METRICS.iter().position(|(m, _)| *m == name) {
            Some(i) => i,
            // ASCII-only case folding: "ı" (dotless i) or a full-width letter matches nothing.
            None => match V4_METRICS
                .iter()
                .find(|(m, _)| m.eq_ignore_ascii_case(name))
            {
                Some((m, _)) => {
                    return Err(CvssError::Case {
                        given: name.to_owned(),
                        expected: m,
                    });
                }
                None => return Err(CvssError::UnknownMetric(name.to_owned())),
            },
        };
        let (metric, values) = V4_METRICS[index];
        if let Some(&(last, _)) = given.last() {
            if index == last || given.iter().any(|(i, _)| *i == index) {
                return Err(CvssError::Duplicate(name.to_owned()));
            }
            if index < last {
                return Err(CvssError::OutOfOrder {
                    metric,
                    after: V4_METRICS[last].0,
                });
            }
        }
        let value = match values.iter().find(|v| **v == value) {
            Some(v) => *v,
            None => match values.iter().find(|v| v.eq_ignore_ascii_case(value)) {
                Some(v) => {
                    return Err(CvssError::Case {
                        given: value.to_owned(),
                        expected: v,
                    });
                }
                None => {
                    return Err(CvssError::Value {
                        metric: metric.to_owned(),
                        value: value.to_owned(),
                    });
                }
            },
        };
        given.push((index, value));
    }
    // Given in increasing order without repeats: the base metrics are all there exactly when
    // the first eleven given are indices 0..11.
    if let Some(missing) = (0..V4_BASE_COUNT).find(|i| given.get(*i).is_none_or(|(g, _)| g != i)) {
        return Err(CvssError::Missing(V4_METRICS[missing].0));
    }
    let vector = |keep: &dyn Fn(usize, &str) -> bool| -> Result<cvss::v4::Vector, CvssError> {
        let mut s = String::from("CVSS:4.0");
        for &(i, value) in given.iter().filter(|(i, v)| keep(*i, v)) {
            s.push('/');
            s.push_str(V4_METRICS[i].0);
            s.push(':');
            s.push_str(value);
        }
        s.parse().map_err(CvssError::V4)
    };
    let set = |range: std::ops::Range<usize>| {
        given
            .iter()
            .any(|(i, value)| range.contains(i) && *value != "X")
    };
    Ok(V4Vector {
        base: vector(&|i, _| i < V4_BASE_COUNT)?,
        full: vector(&|_, value| value != "X")?,
        threat: set(V4_THREAT..V4_THREAT + 1),
        environmental: set(V4_ENVIRONMENTAL),
    })
}

/// Looks `value` up in `weights`: `Ok(None)` for X.
fn weight(weights: Weights, value: &str) -> Result<Option<Weight>, ()> {
    match weights.iter().find(|(letter, _)| *letter == value) {
        Some(("X", _)) => Ok(None),
        Some(&(letter, weight)) => Ok(Some(Weight { letter, weight })),
        None => Err(()),
    }
}

fn attack_vector(v: &str) -> Option<AttackVector> {
    Some(match v {
        "N" => AttackVector::Network,
        "A" => AttackVector::Adjacent,
        "L" => AttackVector::Local,
        "P" => AttackVector::Physical,
        _ => return None,
    })
}

fn complexity(v: &str) -> Option<High> {
    Some(match v {
        "L" => High::Low,
        "H" => High::High,
        _ => return None,
    })
}

fn privileges(v: &str) -> Option<Privileges> {
    Some(match v {
        "N" => Privileges::None,
        "L" => Privileges::Low,
        "H" => Privileges::High,
        _ => return None,
    })
}

fn interaction(v: &str) -> Option<UserInteraction> {
    Some(match v {
        "N" => UserInteraction::None,
        "R" => UserInteraction::Required,
        _ => return None,
    })
}

fn scope(v: &str) -> Option<bool> {
    Some(match v {
        "U" => false,
        "C" => true,
        _ => return None,
    })
}

fn impact(v: &str) -> Option<Impact> {
    Some(match v {
        "N" => Impact::None,
        "L" => Impact::Low,
        "H" => Impact::High,
        _ => return None,
    })
}

/// A modified metric's value: `Ok(None)` for X, otherwise parsed as its base metric is.
fn modified<T>(value: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, ()> {
    if value == "X" {
        Ok(None)
    } else {
        parse(value).map(Some).ok_or(())
    }
}

impl std::str::FromStr for V3Vector {
    type Err = CvssError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CvssError::Empty);
        }
        let (version, rest) = if let Some(rest) = s.strip_prefix("CVSS:3.1/") {
            ("3.1", rest)
        } else if let Some(rest) = s.strip_prefix("CVSS:3.0/") {
            ("3.0", rest)
        } else {
            return Err(CvssError::Prefix);
        };
        let mut seen: Vec<&str> = Vec::new();
        let (mut av, mut ac, mut pr, mut ui, mut sc, mut c, mut i, mut a) =
            (None, None, None, None, None, None, None, None);
        let mut v = V3Vector {
            version,
            av: AttackVector::Network,
            ac: High::Low,
            pr: Privileges::None,
            ui: UserInteraction::None,
            scope_changed: false,
            c: Impact::None,
            i: Impact::None,
            a: Impact::None,
            e: None,
            rl: None,
            rc: None,
            cr: None,
            ir: None,
            ar: None,
            mav: None,
            mac: None,
            mpr: None,
            mui: None,
            ms: None,
            mc: None,
            mi: None,
            ma: None,
        };
        for part in rest.split('/') {
            let (metric, value) = part
                .split_once(':')
                .ok_or_else(|| CvssError::Component(part.to_owned()))?;
            if seen.contains(&metric) {
                return Err(CvssError::Duplicate(metric.to_owned()));
            }
            seen.push(metric);
            let bad = || CvssError::Value {
                metric: metric.to_owned(),
                value: value.to_owned(),
            };
            match metric {
                "AV" => av = Some(attack_vector(value).ok_or_else(bad)?),
                "AC" => ac = Some(complexity(value).ok_or_else(bad)?),
                "PR" => pr = Some(privileges(value).ok_or_else(bad)?),
                "UI" => ui = Some(interaction(value).ok_or_else(bad)?),
                "S" => sc = Some(scope(value).ok_or_else(bad)?),
                "C" => c = Some(impact(value).ok_or_else(bad)?),
                "I" => i = Some(impact(value).ok_or_else(bad)?),
                "A" => a = Some(impact(value).ok_or_else(bad)?),
                "E" => v.e = weight(E_WEIGHTS, value).map_err(|()| bad())?,
                "RL" => v.rl = weight(RL_WEIGHTS, value).map_err(|()| bad())?,
                "RC" => v.rc = weight(RC_WEIGHTS, value).map_err(|()| bad())?,
                "CR" => v.cr = weight(REQUIREMENT_WEIGHTS, value).map_err(|()| bad())?,
                "IR" => v.ir = weight(REQUIREMENT_WEIGHTS, value).map_err(|()| bad())?,
                "AR" => v.ar = weight(REQUIREMENT_WEIGHTS, value).map_err(|()| bad())?,
                "MAV" => v.mav = modified(value, attack_vector).map_err(|()| bad())?,
                "MAC" => v.mac = modified(value, complexity).map_err(|()| bad())?,
                "MPR" => v.mpr = modified(value, privileges).map_err(|()| bad())?,
                "MUI" => v.mui = modified(value, interaction).map_err(|()| bad())?,
                "MS" => v.ms = modified(value, scope).map_err(|()| bad())?,
                "MC" => v.mc = modified(value, impact).map_err(|()| bad())?,
                "MI" => v.mi = modified(value, impact).map_err(|()| bad())?,
                "MA" => v.ma = modified(value, impact).map_err(|()| bad())?,
                other => return Err(CvssError::UnknownMetric(other.to_owned())),
            }
        }
        v.av = av.ok_or(CvssError::Missing("AV"))?;
        v.ac = ac.ok_or(CvssError::Missing("AC"))?;
        v.pr = pr.ok_or(CvssError::Missing("PR"))?;
        v.ui = ui.ok_or(CvssError::Missing("UI"))?;
        v.scope_changed = sc.ok_or(CvssError::Missing("S"))?;
        v.c = c.ok_or(CvssError::Missing("C"))?;
        v.i = i.ok_or(CvssError::Missing("I"))?;
        v.a = a.ok_or(CvssError::Missing("A"))?;
        Ok(v)
    }
}

/// The specification's `Roundup` (Appendix A): the smallest number, to one decimal place,
/// that is equal to or higher than its input, computed on integers so that floating-point
/// noise (`4.000000000000001`) cannot push a score up a tenth.
pub fn roundup(x: f64) -> f64 {
    #[allow(clippy::cast_possible_truncation)]
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// Scores of a vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Base score, 0.0-10.0 (for v4.0, CVSS-B: the base metrics alone).
    pub base: f64,
    /// Impact sub-score (rounded to one decimal, as calculators and NVD show it); `None` for
    /// v4.0, which defines no sub-scores.
    pub impact: Option<f64>,
    /// Exploitability sub-score (likewise); `None` for v4.0.
    pub exploitability: Option<f64>,
    /// What the version scores beyond the base.
    pub more: More,
}

/// The scores a version defines beyond the base score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum More {
    /// CVSS v3.x.
    V3 {
        /// Temporal score (section 7.2); the base score when no temporal metric is given.
        temporal: f64,
        /// Environmental score (section 7.3), modified metrics given as X taking their base
        /// values.
        environmental: f64,
    },
    /// CVSS v4.0.
    V4 {
        /// The score of the vector as given.
        score: f64,
        /// Which metrics it accounts for: "CVSS-B", "CVSS-BT", "CVSS-BE" or "CVSS-BTE".
        nomenclature: &'static str,
    },
}

impl Vector {
    /// Computes the scores: v3.x by the equations of section 7, v4.0 by the `cvss` crate.
    pub fn scores(&self) -> Scores {
        match &self.0 {
            Version::V3(v) => v.scores(),
            Version::V4(v) => Scores {
                base: v.base.score().value(),
                impact: None,
                exploitability: None,
                more: More::V4 {
                    score: v.full.score().value(),
                    nomenclature: match (v.threat, v.environmental) {
                        (false, false) => "CVSS-B",
                        (true, false) => "CVSS-BT",
                        (false, true) => "CVSS-BE",
                        (true, true) => "CVSS-BTE",
                    },
                },
            },
        }
    }

    /// The version: "3.0", "3.1" or "4.0".
    pub fn version(&self) -> &'static str {
        match &self.0 {
            Version::V3(v) => v.version,
            Version::V4(_) => "4.0",
        }
    }

    /// The scores as the API returns them.
    pub fn to_pb(&self) -> pb::CvssScores {
        let s = self.scores();
        let sev = |score: f64| severity_name(score).to_owned();
        let mut out = pb::CvssScores {
            version: self.version().to_owned(),
            base_score: s.base,
            base_severity: sev(s.base),
            normalized_vector: self.to_string(),
            ..Default::default()
        };
        match s.more {
            More::V3 {
                temporal,
                environmental,
            } => {
                out.temporal_score = temporal;
                out.temporal_severity = sev(temporal);
                out.environmental_score = environmental;
                out.environmental_severity = sev(environmental);
            }
            More::V4 {
                score,
                nomenclature,
            } => {
                out.v4_score = score;
                out.v4_nomenclature = nomenclature.to_owned();
                out.v4_severity = sev(score);
            }
        }
        out
    }
}

impl fmt::Display for Vector {
    /// The canonical form: specification order, metrics given as X left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Version::V3(v) => v.fmt(f),
            Version::V4(v) => v.full.fmt(f),
        }
    }
}

/// The exploitability sub-score from the metrics' weights (section 7.4); Privileges Required
/// weighs more when the scope changes.
fn exploitability_of(
    av: AttackVector,
    ac: High,
    pr: Privileges,
    ui: UserInteraction,
    scope_changed: bool,
) -> f64 {
    let av = match av {
        AttackVector::Network => 0.85,
        AttackVector::Adjacent => 0.62,
        AttackVector::Local => 0.55,
        AttackVector::Physical => 0.2,
    };
    let ac = match ac {
        High::Low => 0.77,
        High::High => 0.44,
    };
    let pr = match (pr, scope_changed) {
        (Privileges::None, _) => 0.85,
        (Privileges::Low, false) => 0.62,
        (Privileges::Low, true) => 0.68,
        (Privileges::High, false) => 0.27,
        (Privileges::High, true) => 0.5,
    };
    let ui = match ui {
        UserInteraction::None => 0.85,
        UserInteraction::Required => 0.62,
    };
    8.22 * av * ac * pr * ui
}

/// The weight of an impact on C, I or A (section 7.4).
fn impact_weight(i: Impact) -> f64 {
    match i {
        Impact::None => 0.0,
        Impact::Low => 0.22,
        Impact::High => 0.56,
    }
}

impl V3Vector {
    /// Computes the scores by the equations of section 7.
    fn scores(&self) -> Scores {
        // 7.1 Base.
        let w = impact_weight;
        let iss: f64 = 1.0 - (1.0 - w(self.c)) * (1.0 - w(self.i)) * (1.0 - w(self.a));
        let impact = if self.scope_changed {
            7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
        } else {
            6.42 * iss
        };
        let exploitability =
            exploitability_of(self.av, self.ac, self.pr, self.ui, self.scope_changed);
        let base = if impact <= 0.0 {
            0.0
        } else if self.scope_changed {
            roundup(f64::min(1.08 * (impact + exploitability), 10.0))
        } else {
            roundup(f64::min(impact + exploitability, 10.0))
        };

        // 7.2 Temporal: X weighs 1.
        let t = |m: Option<Weight>| m.map_or(1.0, |w| w.weight);
        let temporal_factor = t(self.e) * t(self.rl) * t(self.rc);
        let temporal = roundup(base * temporal_factor);

        // 7.3 Environmental: a modified metric given as X takes its base metric's value.
        let ms = self.ms.unwrap_or(self.scope_changed);
        let (mc, mi, ma) = (
            self.mc.unwrap_or(self.c),
            self.mi.unwrap_or(self.i),
            self.ma.unwrap_or(self.a),
        );
        let miss = f64::min(
            1.0 - (1.0 - t(self.cr) * w(mc))
                * (1.0 - t(self.ir) * w(mi))
                * (1.0 - t(self.ar) * w(ma)),
            0.915,
        );
        let modified_impact = if !ms {
            6.42 * miss
        } else if self.version == "3.0" {
            7.52 * (miss - 0.029) - 3.25 * (miss - 0.02).powi(15)
        } else {
            7.52 * (miss - 0.029) - 3.25 * (miss * 0.9731 - 0.02).powi(13)
        };
        let modified_exploitability = exploitability_of(
            self.mav.unwrap_or(self.av),
            self.mac.unwrap_or(self.ac),
            self.mpr.unwrap_or(self.pr),
            self.mui.unwrap_or(self.ui),
            ms,
        );
        let environmental = if modified_impact <= 0.0 {
            0.0
        } else if ms {
            roundup(
                roundup(f64::min(
                    1.08 * (modified_impact + modified_exploitability),
                    10.0,
                )) * temporal_factor,
            )
        } else {
            roundup(
                roundup(f64::min(modified_impact + modified_exploitability, 10.0))
                    * temporal_factor,
            )
        };

        Scores {
            base,
            impact: Some(if impact <= 0.0 { 0.0 } else { round1(impact) }),
            exploitability: Some(round1(exploitability)),
            more: More::V3 {
                temporal,
                environmental,
            },
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl AttackVector {
    fn letter(self) -> &'static str {
        match self {
            AttackVector::Network => "N",
            AttackVector::Adjacent => "A",
            AttackVector::Local => "L",
            AttackVector::Physical => "P",
        }
    }
}

impl High {
    fn letter(self) -> &'static str {
        match self {
            High::Low => "L",
            High::High => "H",
        }
    }
}

impl Privileges {
    fn letter(self) -> &'static str {
        match self {
            Privileges::None => "N",
            Privileges::Low => "L",
            Privileges::High => "H",
        }
    }
}

impl UserInteraction {
    fn letter(self) -> &'static str {
        match self {
            UserInteraction::None => "N",
            UserInteraction::Required => "R",
        }
    }
}

impl Impact {
    fn letter(self) -> &'static str {
        match self {
            Impact::None => "N",
            Impact::Low => "L",
            Impact::High => "H",
        }
    }
}

fn scope_letter(changed: bool) -> &'static str {
    if changed { "C" } else { "U" }
}

impl fmt::Display for V3Vector {
    /// The canonical form: metrics in specification order (section 6, Table 15), those
    /// absent or X left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CVSS:{}/AV:{}/AC:{}/PR:{}/UI:{}/S:{}/C:{}/I:{}/A:{}",
            self.version,
            self.av.letter(),
            self.ac.letter(),
            self.pr.letter(),
            self.ui.letter(),
            scope_letter(self.scope_changed),
            self.c.letter(),
            self.i.letter(),
            self.a.letter(),
        )?;
        let optional = [
            ("E", self.e.map(|w| w.letter)),
            ("RL", self.rl.map(|w| w.letter)),
            ("RC", self.rc.map(|w| w.letter)),
            ("CR", self.cr.map(|w| w.letter)),
            ("IR", self.ir.map(|w| w.letter)),
            ("AR", self.ar.map(|w| w.letter)),
            ("MAV", self.mav.map(AttackVector::letter)),
            ("MAC", self.mac.map(High::letter)),
            ("MPR", self.mpr.map(Privileges::letter)),
            ("MUI", self.mui.map(UserInteraction::letter)),
            ("MS", self.ms.map(scope_letter)),
            ("MC", self.mc.map(Impact::letter)),
            ("MI", self.mi.map(Impact::letter)),
            ("MA", self.ma.map(Impact::letter)),
        ];
        for (metric, value) in optional {
            if let Some(value) = value {
                write!(f, "/{metric}:{value}")?;
            }
        }
        Ok(())
    }
}

/// The qualitative rating of a score (v3.1 specification section 5; v4.0 uses the same bands).
pub fn severity_name(score: f64) -> &'static str {
    match score {
        s if s <= 0.0 => "NONE",
        s if s < 4.0 => "LOW",
        s if s < 7.0 => "MEDIUM",
        s if s < 9.0 => "HIGH",
        _ => "CRITICAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(v: &str) -> f64 {
        v.parse::<Vector>().unwrap().scores().base
    }

    #[test]
    fn scores_match_the_specification_and_nvd() {
        // (vector, base score, impact sub-score, exploitability sub-score), as published by NVD
        // or in FIRST's "CVSS v3.1 Examples" document. Every number was also recomputed with
        // Red Hat's Python `cvss` package (`CVSS3(v).scores()`, sub-scores from its unrounded
        // `isc`/`esc` rounded to one decimal), which agrees with this module on all 5,184
        // v3.0 and v3.1 base vectors.
        #[rustfmt::skip] // one case per line
        let cases = [
            // CVE-2021-44228 (Log4Shell), NVD.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, 6.0, 3.9),
            // CVE-2019-0708 (BlueKeep), NVD.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, 5.9, 3.9),
            // CVE-2023-44487 (HTTP/2 Rapid Reset), NVD.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5, 3.6, 3.9),
            // CVE-2018-15473 (OpenSSH user enumeration), NVD.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3, 1.4, 3.9),
            // CVE-2017-0144 (EternalBlue), NVD.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.1, 5.9, 2.2),
            // CVE-2021-4034 (PwnKit), NVD.
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8, 5.9, 1.8),
            // CVE-2016-5195 (Dirty COW), NVD.
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.0, 5.9, 1.0),
            // CVE-2017-5754 (Meltdown), NVD.
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:C/C:H/I:N/A:N", 5.6, 4.0, 1.1),
            // CVE-2017-0785 (BlueBorne, Android SDP leak), NVD.
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 6.5, 3.6, 2.8),
            // CVE-2015-4000 (Logjam), NVD.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:L/A:N", 3.7, 1.4, 2.2),
            // CVE-2016-0800 (DROWN), NVD (v3.0 vector).
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9, 3.6, 2.2),
            // CVE-2017-13077 (KRACK), NVD (v3.0 vector).
            ("CVSS:3.0/AV:A/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 6.8, 5.2, 1.6),
            // CVE-2013-1937 phpMyAdmin reflected XSS, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, 2.7, 2.8),
            // CVE-2013-0375 MySQL stored SQLi, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4, 2.7, 3.1),
            // CVE-2014-3566 (POODLE), FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1, 1.4, 1.6),
            // CVE-2012-1516 VMware guest-to-host escape, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9, 6.0, 3.1),
            // CVE-2009-0783 Apache Tomcat XML parser, FIRST v3.1 examples.
            ("CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L", 4.2, 3.4, 0.8),
            // CVE-2012-0384 Cisco IOS command execution, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8, 5.9, 2.8),
            // CVE-2015-1098 Apple iWork, FIRST v3.1 examples.
            ("CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8, 5.9, 1.8),
            // CVE-2014-0160 (Heartbleed), FIRST v3.0 and v3.1 examples.
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5, 3.6, 3.9),
            // CVE-2008-1447 DNS Kaminsky bug, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8, 4.0, 2.2),
            // CVE-2014-2005 Sophos login screen bypass, FIRST v3.1 examples.
            ("CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8, 5.9, 0.9),
            // CVE-2010-0467 Joomla directory traversal, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8, 1.4, 3.9),
            // CVE-2012-1342 Cisco access-list bypass, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:L/A:N", 5.8, 1.4, 3.9),
            // CVE-2013-6014 Juniper proxy ARP, FIRST v3.1 examples.
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:H", 9.3, 5.8, 2.8),
            // CVE-2014-9253 DokuWiki reflected XSS, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.4, 2.7, 2.3),
            // CVE-2011-1265 Windows Bluetooth RCE, FIRST v3.1 examples.
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8, 5.9, 2.8),
            // CVE-2014-2019 Apple iOS security control bypass, FIRST v3.1 examples.
            ("CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N", 4.6, 3.6, 0.9),
            // CVE-2015-0970 SearchBlox CSRF, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8, 5.9, 2.8),
            // CVE-2014-0224 OpenSSL CCS injection, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 7.4, 5.2, 2.2),
            // CVE-2012-5376 Chrome sandbox bypass, FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:H", 9.6, 6.0, 2.8),
            // CVE-2016-0128 (Badlock), FIRST v3.1 examples.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:N", 6.8, 5.2, 1.6),
            // CVE-2016-5729 Lenovo BIOS SMM code execution, FIRST v3.1 examples.
            ("CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 8.2, 6.0, 1.5),
            // CVE-2018-3652 Intel Xeon debug interface, FIRST v3.1 examples.
            ("CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 7.6, 6.0, 0.9),
            // No impact: 0.0 by definition (specification section 7.1).
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, 0.0, 3.9),
            // No impact, scope changed: the impact equation goes negative; still 0.0.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:N/A:N", 0.0, 0.0, 3.9),
            // Lowest non-zero class (FIRST calculator).
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6, 1.4, 0.1),
            // Roundup edge: 5.50032 must round up to 5.6, not to the nearest 5.5.
            ("CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:U/C:H/I:L/A:L", 5.6, 4.7, 0.8),
            // Roundup edge, scope changed: 1.08 x 5.55599 = 6.00047 rounds up to 6.1.
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:R/S:C/C:H/I:L/A:N", 6.1, 4.7, 0.8),
            // Scope changed, capped at 10.0 (1.08 x 9.64467 = 10.42).
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:N", 10.0, 5.8, 3.9),
        ];
        for (vector, base, impact, exploitability) in cases {
            let scores = vector.parse::<Vector>().unwrap().scores();
            assert_eq!(
                (scores.base, scores.impact, scores.exploitability),
                (base, Some(impact), Some(exploitability)),
                "{vector}"
            );
            // Without temporal metrics the temporal score is the base score. So is the
            // environmental score when the scope is unchanged; when it changes, v3.1's
            // modified-impact equation (MISS × 0.9731) can put it a tenth above (the FIRST
            // calculator and Red Hat's package agree: AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H is
            // 9.9, 9.9, 10.0).
            let More::V3 {
                temporal,
                environmental,
            } = scores.more
            else {
                panic!("{vector} is not v3");
            };
            assert_eq!(temporal, base, "{vector}");
            if vector.contains("/S:U/") || vector.starts_with("CVSS:3.0/") {
                assert_eq!(environmental, base, "{vector}");
            } else {
                assert!(environmental - base < 0.15, "{vector}");
            }
        }
    }

    #[test]
    fn v4_scores_match_the_reference_calculator() {
        // (vector, base score). Expected scores are Red Hat's Python `cvss` package's
        // (`CVSS4(v).base_score`), a port of FIRST's calculator.
        #[rustfmt::skip] // one case per line
        let cases = [
            // FIRST calculator example: high impact on the vulnerable system only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3),
            // Maximum: high impact on the subsequent system too.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 10.0),
            // Low impacts only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N", 6.9),
            // No impact at all.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0.0),
            // Confidentiality only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", 8.7),
            // Integrity only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:H/VA:N/SC:N/SI:N/SA:N", 8.7),
            // Availability only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", 8.7),
            // UI:P, impact on the subsequent system only (reflected XSS).
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:N/VI:N/VA:N/SC:L/SI:L/SA:N", 5.3),
            // PR:L.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.7),
            // PR:H.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 9.4),
            // PR:L, subsequent system only.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:N/VI:N/VA:N/SC:H/SI:H/SA:H", 6.5),
            // UI:A (stored XSS).
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:A/VC:N/VI:N/VA:N/SC:L/SI:L/SA:N", 4.8),
            // PR:H, UI:P, low impacts.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:P/VC:L/VI:L/VA:N/SC:N/SI:N/SA:N", 4.8),
            // AC:H.
            ("CVSS:4.0/AV:N/AC:H/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.2),
            // AT:P.
            ("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.2),
            // AC:H, AT:P, UI:A.
            ("CVSS:4.0/AV:N/AC:H/AT:P/PR:N/UI:A/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", 5.9),
            // AV:A.
            ("CVSS:4.0/AV:A/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.7),
            // AV:A, AT:P, mixed impacts.
            ("CVSS:4.0/AV:A/AC:L/AT:P/PR:N/UI:N/VC:H/VI:L/VA:L/SC:N/SI:N/SA:N", 6.1),
            // AV:A, AC:H, availability only.
            ("CVSS:4.0/AV:A/AC:H/AT:N/PR:L/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", 5.9),
            // AV:L, local privilege escalation.
            ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.5),
            // AV:L, UI:A (malicious file opened).
            ("CVSS:4.0/AV:L/AC:L/AT:N/PR:N/UI:A/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 8.4),
            // AV:L, low confidentiality only.
            ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N", 4.8),
            // AV:L, every exploitability metric at its hardest.
            ("CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:P/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N", 1.0),
            // AV:P.
            ("CVSS:4.0/AV:P/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 7.0),
            // AV:P, UI:P, low availability only.
            ("CVSS:4.0/AV:P/AC:L/AT:N/PR:N/UI:P/VC:N/VI:N/VA:L/SC:N/SI:N/SA:N", 2.4),
            // AV:P, hardest to exploit, low impacts everywhere.
            ("CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:L/VI:L/VA:L/SC:L/SI:L/SA:L", 1.0),
            // Rounding tie: 8.55 (8.549999999999999 as a float) rounds up to 8.6, as FIRST's does.
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:H/VI:L/VA:N/SC:H/SI:H/SA:H", 8.6),
        ];
        for (vector, expected) in cases {
            let scores = vector.parse::<Vector>().unwrap().scores();
            assert_eq!(scores.base, expected, "{vector}");
            // v4.0 defines no impact or exploitability sub-score.
            assert_eq!(
                (scores.impact, scores.exploitability),
                (None, None),
                "{vector}"
            );
        }
    }

    /// The rows of a test data file: (vector, expected scores as written), comments skipped.
    fn rows(data: &'static str) -> Vec<(&'static str, &'static str)> {
        data.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_once(" - ").expect("VECTOR - SCORES"))
            .collect()
    }

    #[test]
    fn v3_temporal_and_environmental_scores_match_red_hats_table() {
        let rows = rows(include_str!("../tests/data/cvss-v3.txt"));
        let mut v31 = 0;
        for (vector, expected) in &rows {
            let expected: Vec<f64> = expected
                .trim_matches(|c| c == '(' || c == ')')
                .split(", ")
                .map(|n| n.parse().unwrap())
                .collect();
            let v: Vector = vector.parse().unwrap_or_else(|e| panic!("{vector}: {e}"));
            let s = v.scores();
            let More::V3 {
                temporal,
                environmental,
            } = s.more
            else {
                panic!("{vector} is not v3");
            };
            assert_eq!(vec![s.base, temporal, environmental], expected, "{vector}");
            // The normalized vector scores the same.
            assert_eq!(v.to_string().parse::<Vector>().unwrap().scores(), s);
            if vector.starts_with("CVSS:3.1/") {
                v31 += 1;
            }
        }
        assert!(rows.len() >= 90, "{} rows", rows.len());
        assert!(v31 >= 50, "{v31} v3.1 rows");
    }

    #[test]
    fn v4_scores_of_whole_vectors_match_red_hats_table() {
        let rows = rows(include_str!("../tests/data/cvss-v4.txt"));
        let mut named = std::collections::HashMap::new();
        for (vector, expected) in &rows {
            let expected: f64 = expected.parse().unwrap();
            let v: Vector = vector.parse().unwrap_or_else(|e| panic!("{vector}: {e}"));
            let s = v.scores();
            let More::V4 {
                score,
                nomenclature,
            } = s.more
            else {
                panic!("{vector} is not v4");
            };
            assert_eq!(score, expected, "{vector}");
            *named.entry(nomenclature).or_insert(0) += 1;
            // The base score is that of the base metrics alone.
            let base: String = vector.split('/').take(12).collect::<Vec<_>>().join("/");
            assert_eq!(s.base, base.parse::<Vector>().unwrap().scores().base);
            // The normalized vector (X left out) scores the same and is named the same.
            let again = v.to_string().parse::<Vector>().unwrap();
            assert_eq!(again.scores(), s, "{vector}");
            assert!(!again.to_string().contains(":X"), "{again}");
        }
        assert!(rows.len() >= 110, "{} rows", rows.len());
        for n in ["CVSS-BT", "CVSS-BE", "CVSS-BTE"] {
            assert!(named.get(n).copied().unwrap_or(0) >= 6, "{n}: {named:?}");
        }
    }

    #[test]
    fn v4_nomenclature_names_the_metrics_given_other_than_x() {
        let base = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let named = |suffix: &str| {
            let v: Vector = format!("{base}{suffix}").parse().unwrap();
            match v.scores().more {
                More::V4 {
                    score,
                    nomenclature,
                } => (nomenclature, score),
                More::V3 { .. } => unreachable!(),
            }
        };
        // Expected scores: Red Hat's Python `cvss` 3.6, `CVSS4(vector).base_score`.
        assert_eq!(named(""), ("CVSS-B", 9.3));
        // X is "Not Defined": the same as leaving the metric out.
        assert_eq!(named("/E:X/CR:X/MAV:X"), ("CVSS-B", 9.3));
        // Supplemental metrics never change the score or the name.
        assert_eq!(named("/S:P/AU:Y/U:Red"), ("CVSS-B", 9.3));
        assert_eq!(named("/E:U"), ("CVSS-BT", 8.1));
        assert_eq!(named("/E:A"), ("CVSS-BT", 9.3));
        assert_eq!(named("/CR:L/IR:L/AR:L"), ("CVSS-BE", 8.9));
        assert_eq!(named("/E:X/MAV:P"), ("CVSS-BE", 7.0));
        assert_eq!(named("/E:U/CR:L/MAV:P/S:P/AU:Y"), ("CVSS-BTE", 3.7));
        // The base score stays the base score.
        let v: Vector = format!("{base}/E:U/CR:L/MAV:P").parse().unwrap();
        assert_eq!(v.scores().base, 9.3);
        assert_eq!(v.to_pb().base_score, 9.3);
        assert_eq!(v.to_pb().v4_nomenclature, "CVSS-BTE");
        assert_eq!(v.to_pb().v4_severity, "LOW");
        assert_eq!(v.to_string(), format!("{base}/E:U/CR:L/MAV:P"));
    }

    #[test]
    fn v4_refuses_what_its_specification_refuses() {
        let err = |v: &str| v.parse::<Vector>().unwrap_err();
        let base = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        // Out of order: base metrics, and optional metrics after the base.
        assert_eq!(
            err("CVSS:4.0/AC:L/AV:N/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            CvssError::OutOfOrder {
                metric: "AV",
                after: "AC"
            }
        );
        assert_eq!(
            err(&format!("{base}/CR:L/E:U")),
            CvssError::OutOfOrder {
                metric: "E",
                after: "CR"
            }
        );
        assert_eq!(
            err("CVSS:4.0/E:U/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            CvssError::OutOfOrder {
                metric: "AV",
                after: "E"
            }
        );
        // Case: names and values.
        assert_eq!(
            err(&base.replace("AV:N", "av:N")),
            CvssError::Case {
                given: "av".into(),
                expected: "AV"
            }
        );
        assert_eq!(
            err(&base.replace("AV:N", "AV:n")),
            CvssError::Case {
                given: "n".into(),
                expected: "N"
            }
        );
        assert_eq!(
            err(&format!("{base}/U:red")),
            CvssError::Case {
                given: "red".into(),
                expected: "Red"
            }
        );
        assert_eq!(
            err(&format!("{base}/U:RED")),
            CvssError::Case {
                given: "RED".into(),
                expected: "Red"
            }
        );
        // Unicode look-alikes are not folded: Turkish dotless i, full-width letters.
        assert_eq!(
            err(&base.replace("UI:N", "Uı:N")),
            CvssError::UnknownMetric("Uı".into())
        );
        assert_eq!(
            err(&base.replace("AV:N", "ＡＶ:N")),
            CvssError::UnknownMetric("ＡＶ".into())
        );
        assert!(matches!(
            err(&base.replace("AV:N", "AV:Ｎ")),
            CvssError::Value { .. }
        ));
        // Repeats, including a repeat of X.
        assert_eq!(
            err(&format!("{base}/E:X/E:X")),
            CvssError::Duplicate("E".into())
        );
        assert_eq!(
            err(&base.replace("AV:N/", "AV:N/AV:N/")),
            CvssError::Duplicate("AV".into())
        );
        // Mandatory base metrics; X is no base value.
        assert_eq!(
            err("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N"),
            CvssError::Missing("SA")
        );
        assert_eq!(
            err("CVSS:4.0/AV:N/AC:L/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:U"),
            CvssError::Missing("AT")
        );
        assert!(matches!(
            err(&base.replace("AV:N", "AV:X")),
            CvssError::Value { .. }
        ));
        assert_eq!(
            err(&format!("{base}/ZZ:N")),
            CvssError::UnknownMetric("ZZ".into())
        );
        assert!(matches!(
            err(&format!("{base}/E:Q")),
            CvssError::Value { .. }
        ));
        assert!(matches!(err("CVSS:4.0/AVN"), CvssError::Component(_)));
        assert!(matches!(err(&format!("{base}/")), CvssError::Component(_)));
        assert_eq!(
            err("CVSS:4.1/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            CvssError::Prefix
        );
        // Every refusal reads as a sentence naming the problem.
        assert_eq!(
            err(&format!("{base}/CR:L/E:U")).to_string(),
            "metric E must come before CR (CVSS v4.0 fixes the order of metrics)"
        );
    }

    #[test]
    fn v3_modified_impact_uses_each_versions_equation() {
        // Scope changed by MS:C with a high MISS: v3.1's (MISS × 0.9731 − 0.02)^13 and v3.0's
        // (MISS − 0.02)^15 part here by a tenth (Red Hat's package agrees: 10.0 and 9.9).
        let tail = "AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:H/CR:H/IR:H/AR:H/MPR:L/MS:C";
        let env = |v: &str| match v.parse::<Vector>().unwrap().scores().more {
            More::V3 { environmental, .. } => environmental,
            More::V4 { .. } => unreachable!(),
        };
        assert_eq!(env(&format!("CVSS:3.1/{tail}")), 10.0);
        assert_eq!(env(&format!("CVSS:3.0/{tail}")), 9.9);
        // Temporal metrics lower the temporal score and scale the environmental one.
        let v: Vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:U"
            .parse()
            .unwrap();
        let pb = v.to_pb();
        assert_eq!((pb.base_score, pb.temporal_score), (9.8, 7.8));
        assert_eq!(pb.environmental_score, 7.8);
        assert_eq!(pb.temporal_severity, "HIGH");
        assert_eq!(pb.version, "3.1");
        assert_eq!(pb.v4_nomenclature, "");
    }

    #[test]
    fn v3_normalized_vector_keeps_non_base_metrics_not_x_in_order() {
        let v: Vector = "CVSS:3.1/MA:L/E:X/RC:R/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N/CR:H/MS:X"
            .parse()
            .unwrap();
        assert_eq!(
            v.to_string(),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/RC:R/CR:H/MA:L"
        );
    }

    #[test]
    fn roundup_is_immune_to_floating_point_noise() {
        assert_eq!(roundup(4.000_000_000_000_001), 4.0);
        assert_eq!(roundup(4.02), 4.1);
        assert_eq!(roundup(4.0), 4.0);
    }

    #[test]
    fn metric_order_does_not_matter_and_non_base_metrics_are_accepted() {
        assert_eq!(score("CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N"), 9.8);
        let full = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C";
        assert_eq!(score(full), 9.8);
        let v: Vector = "CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N"
            .parse()
            .unwrap();
        assert_eq!(
            v.to_string(),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        );
    }

    #[test]
    fn malformed_vectors_are_refused_with_the_reason() {
        let err = |v: &str| v.parse::<Vector>().unwrap_err();
        assert_eq!(err(""), CvssError::Empty);
        assert_eq!(err("AV:N/AC:L"), CvssError::Prefix);
        assert_eq!(err("CVSS:2.0/AV:N"), CvssError::Prefix);
        assert_eq!(
            err("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
            CvssError::Missing("A")
        );
        assert!(matches!(
            err("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            CvssError::Value { .. }
        ));
        assert!(matches!(
            err("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            CvssError::Duplicate(_)
        ));
        assert!(matches!(
            err("CVSS:3.1/AV:N/ZZ:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            CvssError::UnknownMetric(_)
        ));
        assert!(matches!(err("CVSS:3.1/AVN"), CvssError::Component(_)));
        let junk = format!(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/{}",
            "X:Y/".repeat(2500)
        );
        assert_eq!(err(&junk), CvssError::TooLong(junk.len()));
        let one_long = format!("CVSS:3.1/{}", "A".repeat(400));
        assert!(err(&one_long).to_string().len() < 200, "{}", err(&one_long));
    }

    #[test]
    fn severity_bands_follow_the_specification() {
        assert_eq!(severity_name(0.0), "NONE");
        assert_eq!(severity_name(0.1), "LOW");
        assert_eq!(severity_name(3.9), "LOW");
        assert_eq!(severity_name(4.0), "MEDIUM");
        assert_eq!(severity_name(6.9), "MEDIUM");
        assert_eq!(severity_name(7.0), "HIGH");
        assert_eq!(severity_name(8.9), "HIGH");
        assert_eq!(severity_name(9.0), "CRITICAL");
    }
}
