//! CVSS v3.1 (and v3.0) base scores, by the specification's equations.
//!
//! Written from the FIRST specification (<https://www.first.org/cvss/v3.1/specification-document>,
//! section 7 and Appendix A) rather than taken from a crate, because the specification's
//! `Roundup` is defined on integers precisely so that implementations agree to the last
//! decimal, and that is the property this module is tested for. v3.0 vectors are scored with
//! the same equations (v3.1 changed only `Roundup` and definitions, not weights); the v3.1
//! `Roundup` is used for both, as NVD does when it rescores.

use std::fmt;

/// A parsed base vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseVector {
    version: &'static str,
    av: AttackVector,
    ac: High,
    pr: Privileges,
    ui: UserInteraction,
    scope_changed: bool,
    c: Impact,
    i: Impact,
    a: Impact,
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

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// The vector is empty.
    #[error("vector is empty")]
    Empty,
    /// No `CVSS:3.x/` prefix (CVSS v2 and v4 vectors are not scored here).
    #[error("vector must start with CVSS:3.1/ or CVSS:3.0/")]
    Prefix,
    /// A component is not `Metric:Value`.
    #[error("component {0:?} is not of the form METRIC:VALUE")]
    Component(String),
    /// A metric appears twice.
    #[error("metric {0} appears more than once")]
    Duplicate(String),
    /// A metric name is not defined by CVSS v3.
    #[error("unknown metric {0}")]
    UnknownMetric(String),
    /// A value is not defined for its metric.
    #[error("invalid value {value:?} for metric {metric}")]
    Value {
        /// The metric.
        metric: String,
        /// The value given.
        value: String,
    },
    /// A base metric is absent.
    #[error("base metric {0} is missing")]
    Missing(&'static str),
}

/// Temporal and environmental metrics and their values: accepted so that full vectors
/// (as NVD publishes them) parse, and ignored by the base score.
const NON_BASE: &[(&str, &[&str])] = &[
    ("E", &["X", "U", "P", "F", "H"]),
    ("RL", &["X", "O", "T", "W", "U"]),
    ("RC", &["X", "U", "R", "C"]),
    ("CR", &["X", "L", "M", "H"]),
    ("IR", &["X", "L", "M", "H"]),
    ("AR", &["X", "L", "M", "H"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "R"]),
    ("MS", &["X", "U", "C"]),
    ("MC", &["X", "N", "L", "H"]),
    ("MI", &["X", "N", "L", "H"]),
    ("MA", &["X", "N", "L", "H"]),
];

impl std::str::FromStr for BaseVector {
    type Err = CvssError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
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
            let impact = |v: &str| match v {
                "N" => Ok(Impact::None),
                "L" => Ok(Impact::Low),
                "H" => Ok(Impact::High),
                _ => Err(bad()),
            };
            match metric {
                "AV" => {
                    av = Some(match value {
                        "N" => AttackVector::Network,
                        "A" => AttackVector::Adjacent,
                        "L" => AttackVector::Local,
                        "P" => AttackVector::Physical,
                        _ => return Err(bad()),
                    })
                }
                "AC" => {
                    ac = Some(match value {
                        "L" => High::Low,
                        "H" => High::High,
                        _ => return Err(bad()),
                    })
                }
                "PR" => {
                    pr = Some(match value {
                        "N" => Privileges::None,
                        "L" => Privileges::Low,
                        "H" => Privileges::High,
                        _ => return Err(bad()),
                    })
                }
                "UI" => {
                    ui = Some(match value {
                        "N" => UserInteraction::None,
                        "R" => UserInteraction::Required,
                        _ => return Err(bad()),
                    })
                }
                "S" => {
                    sc = Some(match value {
                        "U" => false,
                        "C" => true,
                        _ => return Err(bad()),
                    })
                }
                "C" => c = Some(impact(value)?),
                "I" => i = Some(impact(value)?),
                "A" => a = Some(impact(value)?),
                other => match NON_BASE.iter().find(|(m, _)| *m == other) {
                    Some((_, values)) if values.contains(&value) => {}
                    Some(_) => return Err(bad()),
                    None => return Err(CvssError::UnknownMetric(other.to_owned())),
                },
            }
        }
        Ok(BaseVector {
            version,
            av: av.ok_or(CvssError::Missing("AV"))?,
            ac: ac.ok_or(CvssError::Missing("AC"))?,
            pr: pr.ok_or(CvssError::Missing("PR"))?,
            ui: ui.ok_or(CvssError::Missing("UI"))?,
            scope_changed: sc.ok_or(CvssError::Missing("S"))?,
            c: c.ok_or(CvssError::Missing("C"))?,
            i: i.ok_or(CvssError::Missing("I"))?,
            a: a.ok_or(CvssError::Missing("A"))?,
        })
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

/// Scores of a base vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Base score, 0.0-10.0.
    pub base: f64,
    /// Impact sub-score (rounded up to one decimal, as calculators show it).
    pub impact: f64,
    /// Exploitability sub-score (likewise).
    pub exploitability: f64,
}

impl BaseVector {
    /// Computes the base score by the equations of section 7.1.
    pub fn scores(&self) -> Scores {
        let av = match self.av {
            AttackVector::Network => 0.85,
            AttackVector::Adjacent => 0.62,
            AttackVector::Local => 0.55,
            AttackVector::Physical => 0.2,
        };
        let ac = match self.ac {
            High::Low => 0.77,
            High::High => 0.44,
        };
        let pr = match (self.pr, self.scope_changed) {
            (Privileges::None, _) => 0.85,
            (Privileges::Low, false) => 0.62,
            (Privileges::Low, true) => 0.68,
            (Privileges::High, false) => 0.27,
            (Privileges::High, true) => 0.5,
        };
        let ui = match self.ui {
            UserInteraction::None => 0.85,
            UserInteraction::Required => 0.62,
        };
        let w = |i: Impact| match i {
            Impact::None => 0.0,
            Impact::Low => 0.22,
            Impact::High => 0.56,
        };
        let iss: f64 = 1.0 - (1.0 - w(self.c)) * (1.0 - w(self.i)) * (1.0 - w(self.a));
        let impact = if self.scope_changed {
            7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
        } else {
            6.42 * iss
        };
        let exploitability = 8.22 * av * ac * pr * ui;
        let base = if impact <= 0.0 {
            0.0
        } else if self.scope_changed {
            roundup(f64::min(1.08 * (impact + exploitability), 10.0))
        } else {
            roundup(f64::min(impact + exploitability, 10.0))
        };
        Scores {
            base,
            impact: if impact <= 0.0 { 0.0 } else { round1(impact) },
            exploitability: round1(exploitability),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl fmt::Display for BaseVector {
    /// The canonical form: base metrics in specification order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let imp = |i: Impact| match i {
            Impact::None => "N",
            Impact::Low => "L",
            Impact::High => "H",
        };
        write!(
            f,
            "CVSS:{}/AV:{}/AC:{}/PR:{}/UI:{}/S:{}/C:{}/I:{}/A:{}",
            self.version,
            match self.av {
                AttackVector::Network => "N",
                AttackVector::Adjacent => "A",
                AttackVector::Local => "L",
                AttackVector::Physical => "P",
            },
            match self.ac {
                High::Low => "L",
                High::High => "H",
            },
            match self.pr {
                Privileges::None => "N",
                Privileges::Low => "L",
                Privileges::High => "H",
            },
            match self.ui {
                UserInteraction::None => "N",
                UserInteraction::Required => "R",
            },
            if self.scope_changed { "C" } else { "U" },
            imp(self.c),
            imp(self.i),
            imp(self.a),
        )
    }
}

/// The qualitative rating of a score (specification section 5).
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
        v.parse::<BaseVector>().unwrap().scores().base
    }

    #[test]
    fn scores_match_the_specification_and_nvd() {
        // (vector, expected base score): the specification's examples and NVD-published scores.
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), // e.g. CVE-2019-0708
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0), // CVE-2021-44228
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1), // typical reflected XSS
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8), // local privilege escalation
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9), // CVE-2014-3566 (POODLE)
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5), // DoS
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3), // info disclosure
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4), // stored XSS
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 9.1),
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 6.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N", 3.7),
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N", 4.7), // CVE-2017-5753 (Spectre)
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8),
        ];
        for (vector, expected) in cases {
            assert_eq!(score(vector), expected, "{vector}");
        }
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
        let v: BaseVector = "CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N"
            .parse()
            .unwrap();
        assert_eq!(
            v.to_string(),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        );
    }

    #[test]
    fn malformed_vectors_are_refused_with_the_reason() {
        let err = |v: &str| v.parse::<BaseVector>().unwrap_err();
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
