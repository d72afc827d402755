use std::{collections::HashMap, sync::Arc};

use super::{Principal, Scope, UnknownScope};

/// What a method asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A user holding this scope, or a service.
    Scope(Scope),
    /// Only a PHANTOM service (internal methods: `AnalyzeFindings`, `WarmScan`).
    Service,
}

impl Requirement {
    /// The requirement written `text` in the table: a scope name, or `service`.
    pub fn parse(text: &str) -> Result<Self, UnknownScope> {
        match text {
            "service" => Ok(Self::Service),
            scope => Scope::parse(scope).map(Self::Scope),
        }
    }

    /// Whether `principal` meets it.
    pub fn admits(self, principal: &Principal) -> bool {
        match self {
            Self::Scope(scope) => principal.has(scope),
            Self::Service => principal.is_service(),
        }
    }

    /// Whether calls with this requirement change state: those are audited even when they
    /// succeed. Reads are audited only when refused.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Self::Scope(Scope::ScansWrite | Scope::NotifyPublish | Scope::Admin) | Self::Service
        )
    }

    /// What a refusal says is missing.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Scope(scope) => scope.as_str(),
            Self::Service => "a PHANTOM service identity",
        }
    }
}

/// A table row that does not parse, or a method listed twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The requirement is neither a scope nor `service`.
    #[error("{method}: {source}")]
    Unknown {
        /// The method of the row.
        method: String,
        /// What was wrong.
        source: UnknownScope,
    },
    /// The same method twice.
    #[error("{0} is listed twice")]
    Duplicate(String),
}

/// The one table of method path → [`Requirement`]. A method that is not in it is refused to
/// everyone but services: a new RPC is closed until someone says who may call it.
#[derive(Debug, Clone)]
pub struct Policy {
    by_path: Arc<HashMap<String, Requirement>>,
}

impl Policy {
    /// The policy of `table`, rows of (`/package.Service/Method`, `scope` or `service`).
    pub fn new<'a>(
        table: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PolicyError> {
        let mut by_path = HashMap::new();
        for (method, requirement) in table {
            let requirement =
                Requirement::parse(requirement).map_err(|source| PolicyError::Unknown {
                    method: method.to_owned(),
                    source,
                })?;
            if by_path.insert(method.to_owned(), requirement).is_some() {
                return Err(PolicyError::Duplicate(method.to_owned()));
            }
        }
        Ok(Self {
            by_path: Arc::new(by_path),
        })
    }

    /// What calling `path` requires ([`Requirement::Service`] for a path the table does not
    /// list).
    pub fn requirement(&self, path: &str) -> Requirement {
        self.by_path
            .get(path)
            .copied()
            .unwrap_or(Requirement::Service)
    }

    /// Whether the table lists `path`.
    pub fn lists(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }
}
