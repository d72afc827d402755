//! Who a call acts for.

use serde::{Deserialize, Serialize};

/// A tenant identifier: 1-63 characters of `[a-z0-9-]`, starting with a letter or digit
/// (the shape of a Kubernetes namespace, so tenants map onto namespaces when they need to).
///
/// Made once, at the edge ([`Tenant::parse`]); serialized as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

impl Tenant {
    /// Validates `value` as a tenant id.
    pub fn parse(value: &str) -> Option<Self> {
        Self::is_valid(value).then(|| Self(value.to_owned()))
    }

    fn is_valid(value: &str) -> bool {
        !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
    }

    /// The tenant id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Tenant {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tenant {
    type Error = InvalidTenant;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if Self::is_valid(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidTenant)
        }
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> Self {
        t.0
    }
}

/// A text that is not a tenant id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTenant;

impl std::fmt::Display for InvalidTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tenant must be 1-63 characters of [a-z0-9-], not starting with '-'")
    }
}

impl std::error::Error for InvalidTenant {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(Tenant::parse("default").is_some());
        assert!(Tenant::parse("a-1").is_some());
        assert!(Tenant::parse("").is_none());
        assert!(Tenant::parse("-a").is_none());
        assert!(Tenant::parse("A").is_none());
        assert!(Tenant::parse(&"a".repeat(64)).is_none());
    }

    #[test]
    fn serde_is_the_text() {
        let t = Tenant::parse("acme").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme\"");
        assert_eq!(serde_json::from_str::<Tenant>("\"acme\"").unwrap(), t);
        assert!(serde_json::from_str::<Tenant>("\"../etc\"").is_err());
    }
}
