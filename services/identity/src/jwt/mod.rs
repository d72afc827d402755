//! JWTs from an OIDC issuer, checked against its published keys (JWKS).
//!
//! A token is accepted when its signature verifies under a key of the issuer's JWKS, with an
//! algorithm of `auth.jwt.algorithms` that the key allows, and its `iss`, `aud`, `exp` and
//! `nbf` hold (with `leeway` for clock skew). The principal is `jwt:<iss>#<sub>`, acting for
//! the tenant its tenant claim names (a token without one is refused: a user always acts for
//! a tenant), with the scopes of its scope claim that PHANTOM knows.
//!
//! What is refused, and why:
//! - `alg: none`, and any algorithm not in the list: the attacker must not choose how the
//!   token is checked.
//! - HMAC algorithms (`HS256`), always: the JWKS is public, and a verifier that accepts HMAC
//!   with a public key as the secret lets anyone sign ("key confusion").
//! - A key whose JWK names another algorithm than the token's header.
//!
//! # The keys
//! The JWKS is read at start and again every `refresh_interval`, by a task that ends when
//! the [`Jwt`] is dropped. A URL is fetched with a timeout, behind a circuit breaker; a
//! failed read keeps the last good set. A token naming a `kid` not in the set (the issuer
//! rotated its keys) makes one read on the spot, at most every [`ON_DEMAND_EVERY`]: a flood
//! of made-up `kid`s cannot turn into a flood of fetches.
//!
//! # Verified tokens
//! A client sends the same token with every call until it expires, and a signature check
//! costs tens of microseconds (RS256, EdDSA), a hundred times an API key's cached lookup.
//! Tokens that verified are remembered (by their SHA-256, never the token itself) for at most
//! `auth.jwt.verified_ttl` and never past their `exp`, in a map of at most
//! [`VERIFIED_CAPACITY`] tokens: a key removed from the JWKS stops a remembered token within
//! that time. Refused tokens are not remembered.

mod jwks;

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use jsonwebtoken::{Header, Validation, errors::ErrorKind};
use phantom_domain::Tenant;
use phantom_layers::auth::{Authenticate, Identity, Principal, Refusal, Scopes};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use self::jwks::{Key, KeySet, Loader};
use crate::{IdentityError, JwtConfig, settings::is_hmac};

/// Least time between two reads of the JWKS caused by unknown `kid`s.
pub const ON_DEMAND_EVERY: Duration = Duration::from_secs(30);

/// Verified tokens remembered at most.
pub const VERIFIED_CAPACITY: usize = 10_000;

/// A token that verified: who it is, and until when that holds.
struct Verified {
    principal: Principal,
    until: Instant,
}

/// JWTs of one issuer as an [`Authenticate`]; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwtConfig,
    keys: RwLock<Arc<KeySet>>,
    loader: Loader,
    /// When the last read for an unknown `kid` started; held during that read, so callers
    /// arriving meanwhile wait for its keys rather than start another.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
    /// Tokens that verified, by their SHA-256.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Verified>>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("issuer", &self.inner.config.issuer)
            .field("keys", &self.inner.current().len())
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Reads the JWKS of `config` (validated) and starts refreshing it every
    /// `refresh_interval`. An unreadable file is an error; an unreachable URL is not (the
    /// issuer may come up after PHANTOM): tokens are refused as UNAVAILABLE until it answers.
    pub async fn start(config: JwtConfig) -> Result<Self, IdentityError> {
        let source = config
            .source()
            .ok_or_else(|| IdentityError::Jwks("exactly one of jwks_file and jwks_url".into()))?;
        let file = matches!(source, crate::settings::JwksSource::File(_));
        let loader = Loader::new(source)?;
        let keys = match loader.load().await {
            Ok(keys) => keys,
            Err(e) if !file => {
                tracing::warn!(issuer = %config.issuer, error = %e, "JWKS not readable yet; JWTs are refused until it is");
                KeySet::default()
            }
            Err(e) => return Err(e),
        };
        let interval = config.refresh_interval;
        let inner = Arc::new(Inner {
            config,
            keys: RwLock::new(Arc::new(keys)),
            loader,
            on_demand: tokio::sync::Mutex::new(None),
            verified: std::sync::Mutex::default(),
        });
        tokio::spawn(refresh_every(Arc::downgrade(&inner), interval));
        Ok(Self { inner })
    }

    async fn check(self, token: String) -> Result<Principal, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.inner.remembered(&digest) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(&token).map_err(|_| Refusal::Unknown)?;
        let kid = header.kid.as_deref();
        let key = match self.inner.current().find(kid) {
            Some(key) => key,
            None => {
                self.inner.read_for_unknown_kid().await?;
                self.inner.current().find(kid).ok_or(Refusal::Unknown)?
            }
        };
        let (principal, exp) = self.inner.verify(&token, &header, &key)?;
        self.inner.remember(digest, &principal, exp);
        Ok(principal)
    }
}

impl Inner {
    /// The principal of a token that verified, while it may still be trusted.
    fn remembered(&self, digest: &[u8; 32]) -> Option<Principal> {
        let verified = self.verified.lock().expect("verified tokens lock");
        verified
            .get(digest)
            .filter(|v| v.until > Instant::now())
            .map(|v| v.principal.clone())
    }

    /// Remembers a token that verified, until `exp` (seconds since the Unix epoch) and at most
    /// `verified_ttl`.
    fn remember(&self, digest: [u8; 32], principal: &Principal, exp: u64) {
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let left = Duration::from_secs(exp.saturating_sub(now_unix)).min(self.config.verified_ttl);
        if left.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut verified = self.verified.lock().expect("verified tokens lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, v| v.until > now);
            if verified.len() >= VERIFIED_CAPACITY
                && let Some(victim) = verified.keys().next().copied()
            {
                verified.remove(&victim);
            }
        }
        verified.insert(
            digest,
            Verified {
                principal: principal.clone(),
                until: now + left,
            },
        );
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().expect("JWKS lock").clone()
    }

    async fn refresh(&self) -> Result<(), IdentityError> {
        let keys = self.loader.load().await?;
        tracing::debug!(issuer = %self.config.issuer, keys = keys.len(), "JWKS read");
        *self.keys.write().expect("JWKS lock") = Arc::new(keys);
        Ok(())
    }

    /// One read of the JWKS, unless one started less than [`ON_DEMAND_EVERY`] ago.
    async fn read_for_unknown_kid(&self) -> Result<(), Refusal> {
        let mut last = self.on_demand.lock().await;
        if last.is_some_and(|t| t.elapsed() < ON_DEMAND_EVERY) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.refresh().await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "JWKS read for an unknown kid failed");
                if self.current().len() == 0 {
                    Err(Refusal::Unavailable(
                        "the issuer's keys are unreachable".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The principal of `token` and its `exp`, if it verifies under `key`.
    fn verify(&self, token: &str, header: &Header, key: &Key) -> Result<(Principal, u64), Refusal> {
        let c = &self.config;
        let alg = header.alg;
        if is_hmac(alg) || !c.algorithms.contains(&alg) {
            return Err(Refusal::Invalid(format!("algorithm {alg:?} not accepted")));
        }
        if key.alg.is_some_and(|a| a != alg) {
            return Err(Refusal::Invalid(format!(
                "algorithm {alg:?} is not the key's"
            )));
        }
        let mut v = Validation::new(alg);
        v.leeway = c.leeway.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&c.issuer]);
        v.set_audience(&c.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| refusal_of(e.kind()))?
            .claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::Invalid("sub is not a string".into()))?;
        let tenant = claims
            .get(&c.tenant_claim)
            .and_then(Value::as_str)
            .and_then(Tenant::parse)
            .ok_or_else(|| {
                Refusal::Invalid(format!("claim {:?} is not a tenant id", c.tenant_claim))
            })?;
        let scopes = match claims.get(&c.scopes_claim) {
            Some(Value::String(s)) => Scopes::parse_known([s.as_str()]),
            Some(Value::Array(names)) => {
                Scopes::parse_known(names.iter().filter_map(Value::as_str))
            }
            _ => Scopes::NONE,
        };
        // Required above, so present; a number, or decoding would have failed.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let principal = Principal {
            identity: Identity::Token {
                issuer: c.issuer.clone(),
                subject: subject.to_owned(),
            },
            tenant: Some(tenant),
            scopes,
        };
        Ok((principal, exp))
    }
}

/// What a failed `decode` tells the caller (only UNAUTHENTICATED; the kind is for logs).
fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Revoked,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => Refusal::Unknown,
        ErrorKind::InvalidSignature => Refusal::Invalid("signature".into()),
        ErrorKind::InvalidIssuer => Refusal::Invalid("issuer".into()),
        ErrorKind::InvalidAudience => Refusal::Invalid("audience".into()),
        ErrorKind::ImmatureSignature => Refusal::Invalid("not valid yet (nbf)".into()),
        ErrorKind::MissingRequiredClaim(c) => Refusal::Invalid(format!("missing claim {c}")),
        ErrorKind::InvalidAlgorithm => Refusal::Invalid("algorithm".into()),
        other => Refusal::Invalid(format!("{other:?}")),
    }
}

/// Reads the JWKS every `interval`, as long as the [`Jwt`] lives.
async fn refresh_every(inner: Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.refresh().await {
            tracing::warn!(issuer = %inner.config.issuer, error = %e, "JWKS refresh failed; the last good keys stay in use");
        }
    }
}

impl Authenticate for Jwt {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        Box::pin(self.clone().check(bearer.to_owned()))
    }

    /// When the token's key is in the current set (its header decoded, nothing verified):
    /// checking it reaches no network.
    fn is_cheap(&self, bearer: &str) -> bool {
        jsonwebtoken::decode_header(bearer)
            .is_ok_and(|h| self.inner.current().find(h.kid.as_deref()).is_some())
    }
}

#[cfg(test)]
mod tests;
