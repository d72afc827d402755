//! Identity: who a call comes from, what it may do, and which tenant it acts for.
//!
//! [`AuthLayer`] runs at a server's edge, before tenancy and limits. It finds the caller's
//! [`Principal`] from what the call presents: a client certificate the TLS handshake verified
//! against the services' CA (a *service* identity, see [`Peer`]), or an `authorization:
//! Bearer` credential that an [`Authenticate`] implementation checks (an API key, a JWT, the
//! services' shared token). It then checks the [`Policy`], the one table of method →
//! [`Requirement`], and resolves the tenant from the identity: a user acts for the tenant of
//! its key or token, whatever metadata it sends; only a service identity may name the tenant
//! it acts for (`x-phantom-tenant`, set by PHANTOM's own clients).
//!
//! What a refused call learns is the least that lets an honest caller fix it:
//! UNAUTHENTICATED says only that credentials are missing or not valid (never which part
//! failed, so a guesser learns nothing), PERMISSION_DENIED names the scope that is missing.
//! Every refused call, and every call of a method that writes, is logged on the `audit`
//! target with who, tenant, method, target and outcome (see [`audit`]).

pub mod audit;
mod layer;
mod policy;
mod principal;
mod service;

pub use layer::{AuthLayer, AuthSettings, Refusals};
pub use policy::{Policy, PolicyError, Requirement};
pub use principal::{Identity, Principal, Scope, Scopes, UnknownScope};
pub use service::{AuthFuture, AuthService, bearer_of};

use std::{future::Future, net::SocketAddr, pin::Pin};

/// What the transport knows of the other end of a connection, set by PHANTOM's listeners as
/// the connection's connect-info (every request of the connection carries it in its
/// extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The PHANTOM service its client certificate names, when it presented one that chains to
    /// the services' CA (mTLS). Only the TLS listener sets it, after verifying the chain.
    pub service: Option<String>,
}

/// Why a credential was not accepted. The caller is told only UNAUTHENTICATED (or
/// UNAVAILABLE when the store that would decide is down), never which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The credential is not one this server knows, or is malformed.
    #[error("unknown or malformed credential")]
    Unknown,
    /// The credential was valid once: revoked, or expired.
    #[error("revoked or expired credential")]
    Revoked,
    /// The credential's signature or claims do not hold (JWT).
    #[error("credential does not verify: {0}")]
    Invalid(String),
    /// What would decide is unreachable (the key store's database, the JWKS).
    #[error("cannot check credentials now: {0}")]
    Unavailable(String),
}

/// Turns a bearer credential into a principal. Implemented by PHANTOM's identity crate (API
/// keys, JWTs, the services' token) and by tests.
pub trait Authenticate: Send + Sync + 'static {
    /// The principal `bearer` (what follows `Bearer ` in `authorization`) identifies.
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>>;

    /// Whether checking `bearer` would cost no more than a memory lookup (a cached key, a
    /// JWT whose keys are known). Calls that would reach a store or the network, and calls
    /// without credentials, count against their peer address's limit of unauthenticated
    /// attempts; cached ones never do.
    fn is_cheap(&self, bearer: &str) -> bool;
}

/// Metadata naming the tenant a service identity acts for; ignored from anyone else.
pub use crate::tenant::TENANT_HEADER;

#[cfg(test)]
mod tests;
