//! CVSS base scores: v3.1 and v3.0 by the specification's equations, v4.0 by the `cvss` crate.
//!
//! v3.x is written from the FIRST specification
//! (<https://www.first.org/cvss/v3.1/specification-document>, section 7 and Appendix A) rather
//! than taken from a crate, because the specification's `Roundup` is defined on integers
//! precisely so that implementations agree to the last decimal, and that is the property this
//! module is tested for. v3.0 vectors are scored with the same equations (v3.1 changed only
//! `Roundup` and definitions, not weights); the v3.1 `Roundup` is used for both, as NVD does
//! when it rescores.
//!
//! v4.0 is not an equation but FIRST's calculator: a table of 270 macro-vector scores and an
//! interpolation between them. Rather than transcribe that table, v4.0 vectors are parsed and
//! scored by RustSec's `cvss` crate, which ports the reference calculator and is tested against
//! Red Hat's exhaustive vector set. Before adopting it, every one of the 104,976 v4.0 base
//! vectors (and 20,000 random full vectors) was scored by it and by Red Hat's Python `cvss`
//! package, with no disagreement; `v4_scores_match_the_reference_calculator` keeps a sample.
//!
//! Both versions are reduced to their base metrics: threat, temporal, environmental and
//! supplemental metrics are validated and then ignored, so the score is always the base score
//! (CVSS-B in v4.0's nomenclature) and the normalized vector is the base vector.

use std::fmt;

use phantom_layers::status::echo;

/// The longest vector parsed. A v3.1 vector with every base, temporal and environmental
/// metric is 132 characters, a v4.0 one with every metric about 200; a longer one is junk,
/// refused before it costs anything.
pub const MAX_VECTOR_LEN: usize = 512;

/// A parsed vector, reduced to its base metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseVector(Version);

#[derive(Debug, Clone, PartialEq)]
enum Version {
    /// CVSS v3.1 or v3.0, scored by [`V3Vector::scores`].
    V3(V3Vector),
    /// CVSS v4.0 (base metrics only), scored by the `cvss` crate.
    V4(cvss::v4::Vector),
}

/// A CVSS v3.x base vector.
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
    /// A metric name is not defined by CVSS v3.x.
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
    /// A `CVSS:4.0/` vector the `cvss` crate refused (it says which metric and why).
    #[error("invalid CVSS v4.0 vector: {0}")]
    V4(cvss::Error),
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

/// The base metrics of CVSS v4.0, in specification order.
const V4_BASE: &[&str] = &[
    "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
];

impl std::str::FromStr for BaseVector {
    type Err = CvssError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_VECTOR_LEN {
            return Err(CvssError::TooLong(s.len()));
        }
        if s.starts_with("CVSS:4.0/") {
            parse_v4(s).map(|v| Self(Version::V4(v)))
        } else {
            s.parse::<V3Vector>().map(|v| Self(Version::V3(v)))
        }
    }
}

/// Parses a v4.0 vector with the `cvss` crate, which validates every metric, then keeps only
/// the base metrics, so that the crate's score (which otherwise folds threat and
/// environmental metrics in) is the base score.
fn parse_v4(s: &str) -> Result<cvss::v4::Vector, CvssError> {
    // The crate's canonical form: metric names and values in upper case, specification order.
    let full = s
        .parse::<cvss::v4::Vector>()
        .map_err(CvssError::V4)?
        .to_string();
    let mut base = String::from("CVSS:4.0");
    for part in full.split('/').skip(1) {
        if part
            .split_once(':')
            .is_some_and(|(metric, _)| V4_BASE.contains(&metric))
        {
            base.push('/');
            base.push_str(part);
        }
    }
    base.parse().map_err(CvssError::V4)
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
        Ok(V3Vector {
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
    /// Impact sub-score (rounded to one decimal, as calculators and NVD show it); `None` for
    /// v4.0, which defines no sub-scores.
    pub impact: Option<f64>,
    /// Exploitability sub-score (likewise); `None` for v4.0.
    pub exploitability: Option<f64>,
}

impl BaseVector {
    /// Computes the base score: v3.x by the equations of section 7.1, v4.0 by the `cvss` crate.
    pub fn scores(&self) -> Scores {
        match &self.0 {
            Version::V3(v) => v.scores(),
            Version::V4(v) => Scores {
                base: v.score().value(),
                impact: None,
                exploitability: None,
            },
        }
    }
}

impl fmt::Display for BaseVector {
    /// The canonical form: base metrics only, in specification order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Version::V3(v) => v.fmt(f),
            Version::V4(v) => v.fmt(f),
        }
    }
}

impl V3Vector {
    /// Computes the base score by the equations of section 7.1.
    fn scores(&self) -> Scores {
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
            impact: Some(if impact <= 0.0 { 0.0 } else { round1(impact) }),
            exploitability: Some(round1(exploitability)),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl fmt::Display for V3Vector {
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
        v.parse::<BaseVector>().unwrap().scores().base
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
            let expected = Scores {
                base,
                impact: Some(impact),
                exploitability: Some(exploitability),
            };
            assert_eq!(
                vector.parse::<BaseVector>().unwrap().scores(),
                expected,
                "{vector}"
            );
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
            let scores = vector.parse::<BaseVector>().unwrap().scores();
            assert_eq!(scores.base, expected, "{vector}");
            // v4.0 defines no impact or exploitability sub-score.
            assert_eq!(
                (scores.impact, scores.exploitability),
                (None, None),
                "{vector}"
            );
        }
    }

    #[test]
    fn v4_non_base_metrics_are_validated_then_ignored() {
        // CVE-2025-47273: published as 7.7 with E:P (a CVSS-BT score); its base score is 8.7.
        let full = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:H/VA:N/SC:N/SI:N/SA:N/E:P/CR:X/IR:X\
                    /AR:X/MAV:X/MAC:X/MAT:X/MPR:X/MUI:X/MVC:X/MVI:X/MVA:X/MSC:X/MSI:X/MSA:X/S:X\
                    /AU:X/R:X/V:X/RE:X/U:X";
        let v: BaseVector = full.parse().unwrap();
        assert_eq!(v.scores().base, 8.7);
        assert_eq!(
            v.to_string(),
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:H/VA:N/SC:N/SI:N/SA:N"
        );
        // Threat, environmental and supplemental metrics in any order, all of which would
        // lower the crate's full score to 3.7.
        let reordered = "CVSS:4.0/U:Red/SA:N/SI:N/SC:N/VA:H/VI:H/VC:H/UI:N/PR:N/AT:N/AC:L/AV:N\
                         /E:U/CR:L/MAV:P/S:P/AU:Y";
        let v: BaseVector = reordered.parse().unwrap();
        assert_eq!(v.scores().base, 9.3);
        assert_eq!(
            v.to_string(),
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
        );
        // The normalized vector parses back to the same score.
        assert_eq!(score(&v.to_string()), 9.3);
    }

    #[test]
    fn malformed_v4_vectors_are_refused_with_the_reason() {
        let err = |v: &str| v.parse::<BaseVector>().unwrap_err().to_string();
        assert_eq!(
            err("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N"),
            "invalid CVSS v4.0 vector: missing mandatory CVSSv4 SA (Availability Impact to the \
             Subsequent System) metric"
        );
        for bad in [
            "CVSS:4.0/AV:X/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "CVSS:4.0/AV:N/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/ZZ:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:Q",
            "CVSS:4.0/AVN",
        ] {
            assert!(
                matches!(bad.parse::<BaseVector>(), Err(CvssError::V4(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "CVSS:4.1/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N".parse::<BaseVector>(),
            Err(CvssError::Prefix)
        ));
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
