//! The severity band of a finding or an analysis.

use phantom_proto::pb;
use serde::{Deserialize, Serialize};

/// Severity band, ordered from least to most severe.
///
/// Serialized as the number of its `phantom.v1.Severity` value (`4` for [`Severity::High`]),
/// which is what stored records (`findings.analysis`, `analyses.severity`) have always held.
/// Converted from and to [`pb::Severity`] at the gRPC edge.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i32", into = "i32")]
pub enum Severity {
    /// Not set. PHANTOM never stores it; it exists so that every stored value reads back.
    #[default]
    Unspecified = 0,
    /// A fact about the target (an open port, a banner), no weakness by itself.
    Info = 1,
    /// CVSS 0.1-3.9.
    Low = 2,
    /// CVSS 4.0-6.9.
    Medium = 3,
    /// CVSS 7.0-8.9.
    High = 4,
    /// CVSS 9.0-10.0.
    Critical = 5,
}

impl Severity {
    /// The number of its `phantom.v1.Severity` value: how it is stored.
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

impl From<Severity> for i32 {
    fn from(s: Severity) -> Self {
        s as i32
    }
}

/// A number that is no `phantom.v1.Severity` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSeverity(pub i32);

impl std::fmt::Display for UnknownSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown severity {}", self.0)
    }
}

impl std::error::Error for UnknownSeverity {}

impl TryFrom<i32> for Severity {
    type Error = UnknownSeverity;

    fn try_from(n: i32) -> Result<Self, Self::Error> {
        pb::Severity::try_from(n)
            .map(Self::from)
            .map_err(|_| UnknownSeverity(n))
    }
}

impl From<pb::Severity> for Severity {
    fn from(s: pb::Severity) -> Self {
        match s {
            pb::Severity::Unspecified => Self::Unspecified,
            pb::Severity::Info => Self::Info,
            pb::Severity::Low => Self::Low,
            pb::Severity::Medium => Self::Medium,
            pb::Severity::High => Self::High,
            pb::Severity::Critical => Self::Critical,
        }
    }
}

impl From<Severity> for pb::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Unspecified => Self::Unspecified,
            Severity::Info => Self::Info,
            Severity::Low => Self::Low,
            Severity::Medium => Self::Medium,
            Severity::High => Self::High,
            Severity::Critical => Self::Critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        for n in 0..=5 {
            let s = Severity::try_from(n).unwrap();
            assert_eq!(pb::Severity::from(s) as i32, n);
            assert_eq!(Severity::from(pb::Severity::from(s)), s);
            assert_eq!(s.as_i32(), n);
        }
        assert_eq!(Severity::try_from(6), Err(UnknownSeverity(6)));
        assert!(Severity::Critical > Severity::High);
    }

    #[test]
    fn serialized_as_the_wire_number() {
        assert_eq!(serde_json::to_string(&Severity::High).unwrap(), "4");
        assert_eq!(
            serde_json::from_str::<Severity>("5").unwrap(),
            Severity::Critical
        );
        assert!(serde_json::from_str::<Severity>("9").is_err());
        assert!(serde_json::from_str::<Severity>("\"HIGH\"").is_err());
    }
}
