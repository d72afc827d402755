use std::fmt;

use crate::Tenant;

/// What a user credential may be allowed to do. Service identities are not scoped: they may
/// call everything, the internal methods included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read scans (`GetScan`, `ListScans`, `WatchScan`).
    ScansRead,
    /// Create and cancel scans.
    ScansWrite,
    /// Read findings and scores.
    FindingsRead,
    /// Publish notifications into the tenant's own rooms (never into system rooms).
    NotifyPublish,
    /// Subscribe to the tenant's rooms (gRPC and WebSocket).
    NotifySubscribe,
    /// Operate the deployment: metrics, system health.
    Admin,
    /// Triage findings: mark them acknowledged, false positives, accepted risks or fixed
    /// (last, so the scopes stored before it keep their bits).
    FindingsTriage,
}

impl Scope {
    /// Every scope, in the order they are written.
    pub const ALL: [Scope; 7] = [
        Scope::ScansRead,
        Scope::ScansWrite,
        Scope::FindingsRead,
        Scope::NotifyPublish,
        Scope::NotifySubscribe,
        Scope::Admin,
        Scope::FindingsTriage,
    ];

    /// Its name in keys, tokens and messages (`scans:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ScansRead => "scans:read",
            Scope::ScansWrite => "scans:write",
            Scope::FindingsRead => "findings:read",
            Scope::NotifyPublish => "notify:publish",
            Scope::NotifySubscribe => "notify:subscribe",
            Scope::Admin => "admin",
            Scope::FindingsTriage => "findings:triage",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Result<Self, UnknownScope> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| UnknownScope(name.chars().take(64).collect()))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?} (known: scans:read, scans:write, findings:read, notify:publish, notify:subscribe, admin, findings:triage)"
)]
pub struct UnknownScope(pub String);

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope.
    pub const NONE: Scopes = Scopes(0);

    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set. `admin` does not imply the others: a key says what it
    /// may do.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Scopes written as a list separated by spaces or commas (`"scans:read findings:read"`,
    /// the OAuth `scope` claim's form, or `scans:read,findings:read`). An unknown name is an
    /// error: a typo must not silently grant less (or, for a deny-list, more).
    pub fn parse_list(list: &str) -> Result<Self, UnknownScope> {
        list.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(Scope::parse)
            .collect()
    }

    /// Like [`Scopes::parse_list`], but names it does not know are skipped: what a token from
    /// an outside issuer carries (its `scope` claim also lists scopes of other audiences).
    pub fn parse_known<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names
            .into_iter()
            .flat_map(|n| n.split([' ', ',']))
            .filter_map(|n| Scope::parse(n).ok())
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// How a principal proved who it is. Never holds the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An API key, by its public id.
    ApiKey {
        /// The key's id (the part of the key before its secret, shown by `auth key list`).
        key_id: String,
    },
    /// A JWT from an OIDC issuer.
    Token {
        /// Its `iss`.
        issuer: String,
        /// Its `sub`.
        subject: String,
    },
    /// A PHANTOM service: by its client certificate (mTLS) or the services' shared token.
    Service {
        /// The service's name (`scan-orchestrator`).
        name: String,
    },
}

/// Who a call comes from, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// How it proved it.
    pub identity: Identity,
    /// The tenant a user acts for. `None` for a service identity: a service acts for the tenant
    /// of the call it serves, which it names in `x-phantom-tenant`.
    pub tenant: Option<Tenant>,
    /// What a user may do (service identities may do everything).
    pub scopes: Scopes,
}

impl Principal {
    /// A service identity.
    pub fn service(name: impl Into<String>) -> Self {
        Self {
            identity: Identity::Service { name: name.into() },
            tenant: None,
            scopes: Scopes::all(),
        }
    }

    /// Whether this is one of PHANTOM's services.
    pub fn is_service(&self) -> bool {
        matches!(self.identity, Identity::Service { .. })
    }

    /// Whether this principal holds `scope` (a service holds all).
    pub fn has(&self, scope: Scope) -> bool {
        self.is_service() || self.scopes.contains(scope)
    }

    /// A short, stable, secret-free name for logs, audit lines and limiter keys: `key:<id>`,
    /// `jwt:<issuer>#<subject>`, `service:<name>`.
    pub fn id(&self) -> String {
        match &self.identity {
            Identity::ApiKey { key_id } => format!("key:{key_id}"),
            Identity::Token { issuer, subject } => format!("jwt:{issuer}#{subject}"),
            Identity::Service { name } => format!("service:{name}"),
        }
    }
}
