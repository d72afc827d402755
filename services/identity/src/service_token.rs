//! The services' shared token: how PHANTOM's own clients prove they are PHANTOM when mTLS is
//! not in use.
//!
//! A client sends `authorization: Bearer phs_<service>_<secret>`, where `<secret>` is
//! `auth.service_token` and `<service>` its own name (`[a-z0-9-]{1,63}`). Anyone holding the
//! secret may claim any service name: the token says "one of PHANTOM's processes", which is
//! what the policy grants services, and the name serves the audit trail. Plaintext
//! `phantom up` on loopback makes a fresh one per process ([`ServiceToken::generate`]); a
//! deployment with mTLS needs none.
//!
//! The secret is compared in constant time: both sides are MACed under a key random to this
//! process and compared with `Mac::verify_slice`, which also hides the secret's length.

use std::{future::Future, pin::Pin};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use phantom_layers::auth::{Authenticate, Principal, Refusal};
use sha2::Sha256;

use crate::{IdentityError, Secret, keys::random_bytes};

/// What every service token starts with.
pub const SERVICE_TOKEN_PREFIX: &str = "phs_";
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;

/// The services' shared token. Cheap to clone; `Debug` shows no secret.
#[derive(Clone)]
pub struct ServiceToken {
    secret: Secret,
    /// HMAC under a per-process random key, so comparisons run in constant time.
    mac: Hmac<Sha256>,
    /// The configured secret's MAC.
    expected: Vec<u8>,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceToken(<redacted>)")
    }
}

impl ServiceToken {
    /// The token whose secret is `secret` (`auth.service_token`).
    pub fn new(secret: Secret) -> Result<Self, IdentityError> {
        let key = random_bytes::<32>()?;
        let mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any size");
        let mut m = mac.clone();
        m.update(secret.expose().as_bytes());
        let expected = m.finalize().into_bytes().to_vec();
        Ok(Self {
            secret,
            mac,
            expected,
        })
    }

    /// A token with a fresh random secret (32 bytes from the operating system, base64url), for
    /// a process whose services and clients all live in it.
    pub fn generate() -> Result<Self, IdentityError> {
        Self::new(Secret::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
    }

    /// The secret, to hand to the clients.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// What the client of `service` sends after `Bearer `: `phs_<service>_<secret>`.
    pub fn bearer(&self, service: &str) -> String {
        format!("{SERVICE_TOKEN_PREFIX}{service}_{}", self.secret.expose())
    }

    /// The service `bearer` names, if it carries this token's secret.
    pub fn verify(&self, bearer: &str) -> Result<Principal, Refusal> {
        let rest = bearer
            .strip_prefix(SERVICE_TOKEN_PREFIX)
            .ok_or(Refusal::Unknown)?;
        // A service name has no `_`: the secret is everything after the first one.
        let (name, secret) = rest.split_once('_').ok_or(Refusal::Unknown)?;
        if !is_service_name(name) {
            return Err(Refusal::Unknown);
        }
        let mut m = self.mac.clone();
        m.update(secret.as_bytes());
        m.verify_slice(&self.expected)
            .map_err(|_| Refusal::Unknown)?;
        Ok(Principal::service(name))
    }
}

/// `[a-z0-9-]{1,63}`.
fn is_service_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Authenticate for ServiceToken {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        Box::pin(std::future::ready(self.verify(bearer)))
    }

    /// Always: one MAC, nothing to look up.
    fn is_cheap(&self, _bearer: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_own_bearer_names_the_service() {
        let t = ServiceToken::generate().unwrap();
        let p = t.verify(&t.bearer("scan-orchestrator")).unwrap();
        assert_eq!(p, Principal::service("scan-orchestrator"));
        assert!(p.is_service());
    }

    #[test]
    fn a_wrong_secret_or_malformed_name_is_unknown() {
        let t = ServiceToken::new(Secret::new("a".repeat(40))).unwrap();
        let other = ServiceToken::new(Secret::new("b".repeat(40))).unwrap();
        assert_eq!(t.verify(&other.bearer("notifier")), Err(Refusal::Unknown));
        assert_eq!(
            t.verify(&format!("phs_notifier_{}", "a".repeat(39))),
            Err(Refusal::Unknown)
        );
        for name in ["", "Notifier", "a_b", &"x".repeat(64)] {
            assert_eq!(
                t.verify(&format!("phs_{name}_{}", "a".repeat(40))),
                Err(Refusal::Unknown),
                "{name:?}"
            );
        }
        assert_eq!(t.verify("phk_notifier_x"), Err(Refusal::Unknown));
        assert!(
            t.verify(&format!("phs_notifier_{}", "a".repeat(40)))
                .is_ok()
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let t = ServiceToken::new(Secret::new("topsecret".repeat(4))).unwrap();
        assert!(!format!("{t:?}").contains("topsecret"));
    }
}
