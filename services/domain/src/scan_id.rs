//! The identifier of a scan.

use serde::{Deserialize, Serialize};

/// A scan id: a UUID (a UUIDv7 for the scans the orchestrator creates, [`ScanId::generate`]).
///
/// [`ScanId::parse`] accepts any text `uuid` parses as a UUID and keeps it as given (ids are
/// compared as stored text, as before); serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScanId(String);

impl ScanId {
    /// A new id: a UUIDv7, hyphenated, lowercase.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Validates `value` as a scan id (a UUID).
    pub fn parse(value: &str) -> Option<Self> {
        uuid::Uuid::parse_str(value)
            .is_ok()
            .then(|| Self(value.to_owned()))
    }

    /// An id read back from the store, where only valid ids are written: not validated
    /// again.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ScanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ScanId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ScanId> for String {
    fn from(id: ScanId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_bad_ones_do_not() {
        let id = ScanId::generate();
        assert_eq!(ScanId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.as_str().len(), 36);
        assert!(ScanId::parse("nope").is_none());
        assert!(ScanId::parse("").is_none());
    }
}
