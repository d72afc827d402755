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
use tokio::time::Instant;

use self::jwks::{Key, KeySet, Loader};
use crate::{IdentityError, JwtConfig, settings::is_hmac};

/// Least time between two reads of the JWKS caused by unknown `kid`s.
pub const ON_DEMAND_EVERY: Duration = Duration::from_secs(30);

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
        });
        tokio::spawn(refresh_every(Arc::downgrade(&inner), interval));
        Ok(Self { inner })
    }

    async fn check(self, token: String) -> Result<Principal, Refusal> {
        let header = jsonwebtoken::decode_header(&token).map_err(|_| Refusal::Unknown)?;
        let kid = header.kid.as_deref();
        let key = match self.inner.current().find(kid) {
            Some(key) => key,
            None => {
                self.inner.read_for_unknown_kid().await?;
                self.inner.current().find(kid).ok_or(Refusal::Unknown)?
            }
        };
        self.inner.verify(&token, &header, &key)
    }
}

impl Inner {
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

    fn verify(&self, token: &str, header: &Header, key: &Key) -> Result<Principal, Refusal> {
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
        Ok(Principal {
            identity: Identity::Token {
                issuer: c.issuer.clone(),
                subject: subject.to_owned(),
            },
            tenant: Some(tenant),
            scopes,
        })
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

    /// When the token's key is in the current set (its header decoded, nothing verified).
    fn is_cheap(&self, bearer: &str) -> bool {
        jsonwebtoken::decode_header(bearer)
            .is_ok_and(|h| self.inner.current().find(h.kid.as_deref()).is_some())
    }
}

#[cfg(test)]
mod tests;
