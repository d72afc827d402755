//! The identity settings: the `[auth]` section (API keys, the services' token, JWTs, the
//! limit on unauthenticated attempts). Parsed once, when the configuration is loaded;
//! [`AuthConfig::validate`] checks what the types cannot.
//!
//! The secrets here ([`AuthConfig::key_secret`], [`AuthConfig::service_token`]) belong in the
//! environment or a secret store, not in a file checked in anywhere: they are [`Secret`]s,
//! shown as `<redacted>` by `Debug` and by serialization.

use std::{path::PathBuf, time::Duration};

use jsonwebtoken::Algorithm;
use phantom_layers::{rate_limit::QuotaConfig, settings::Invalid};
use serde::{Deserialize, Serialize};

use crate::Secret;

/// How long a verified API key is trusted from memory: its revocation takes effect within it.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Unauthenticated attempts per peer address, sustained.
pub const DEFAULT_UNAUTHENTICATED_PER_SECOND: f64 = 10.0;
/// Unauthenticated attempts per peer address, at once.
pub const DEFAULT_UNAUTHENTICATED_BURST: u32 = 20;
/// The shortest [`AuthConfig::key_secret`] accepted: 32 bytes, as many as the HMAC's output.
pub const MIN_KEY_SECRET_BYTES: usize = 32;
/// How often the JWKS is read again.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(5 * 60);
/// How long a verified JWT is trusted without checking its signature again.
pub const DEFAULT_VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);

/// Authentication: who may call, with what credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Off: every call is let through as before authentication existed (for a trusted,
    /// loopback-only deployment).
    pub enabled: bool,
    /// The server key API keys are hashed under (HMAC-SHA256), at least 32 bytes. A database
    /// dump without it cannot even test a guessed key; changing it invalidates every key.
    /// Set it from the environment or a secret store.
    pub key_secret: Secret,
    /// The secret PHANTOM's own clients present as `phs_<service>_<secret>` when mTLS is not in
    /// use. Unset: no service token is accepted.
    pub service_token: Option<Secret>,
    /// How long a verified API key is trusted from memory; a revocation takes effect within
    /// it (an expiry is checked on every call).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Whether gRPC reflection needs credentials like any other method (off: it is open, as
    /// health is).
    pub reflection_requires_auth: bool,
    /// Attempts per peer address that cost more than a memory lookup (no credential, or one
    /// not cached); beyond it they are refused with RESOURCE_EXHAUSTED.
    pub unauthenticated: QuotaConfig,
    /// JWTs from an OIDC issuer, if accepted.
    pub jwt: Option<JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_secret: Secret::default(),
            service_token: None,
            cache_ttl: DEFAULT_CACHE_TTL,
            reflection_requires_auth: false,
            unauthenticated: QuotaConfig {
                per_second: DEFAULT_UNAUTHENTICATED_PER_SECOND,
                burst: DEFAULT_UNAUTHENTICATED_BURST,
            },
            jwt: None,
        }
    }
}

impl AuthConfig {
    /// Checks what the types cannot; keys are relative to `[auth]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        // Empty: not configured here. `phantom up` then keeps one in its data directory;
        // `phantom serve` refuses to start without one.
        if self.enabled
            && !self.key_secret.is_empty()
            && self.key_secret.expose().len() < MIN_KEY_SECRET_BYTES
        {
            return Err(Invalid::new(
                "key_secret",
                format!(
                    "must be at least {MIN_KEY_SECRET_BYTES} bytes when auth is enabled \
                     (set it from the environment)"
                ),
            ));
        }
        if let Some(token) = &self.service_token
            && token.expose().len() < crate::service_token::MIN_SECRET_BYTES
        {
            return Err(Invalid::new(
                "service_token",
                format!(
                    "must be at least {} bytes",
                    crate::service_token::MIN_SECRET_BYTES
                ),
            ));
        }
        if self.cache_ttl.is_zero() {
            return Err(Invalid::new("cache_ttl", "must be more than 0"));
        }
        let q = &self.unauthenticated;
        if !q.per_second.is_finite() || q.per_second <= 0.0 || q.burst == 0 {
            return Err(Invalid::new(
                "unauthenticated",
                "per_second and burst must be more than 0",
            ));
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate().map_err(|e| e.within("jwt"))?;
        }
        Ok(())
    }
}

/// Where the issuer's signing keys (a JWKS) are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, read again every refresh interval.
    File(PathBuf),
    /// An HTTPS (or, on loopback, HTTP) URL, fetched every refresh interval.
    Url(String),
}

/// JWTs from one OIDC issuer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The issuer (`iss`) every token must name.
    pub issuer: String,
    /// Audiences (`aud`) accepted: a token must name at least one.
    pub audiences: Vec<String>,
    /// A JWKS file holding the issuer's public keys. Exactly one of `jwks_file` and `jwks_url`.
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS URL (`jwks_uri` of its discovery document).
    pub jwks_url: Option<String>,
    /// How often the JWKS is read again (a token naming a key not yet known also triggers a
    /// read, at most every 30 s).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// How long a token that verified is trusted without checking its signature again (never
    /// past its `exp`); `0s` checks every call. A key removed from the JWKS stops such a
    /// token within this time.
    #[serde(with = "humantime_serde")]
    pub verified_ttl: Duration,
    /// The claim naming the tenant the token acts for; a token without a valid one is refused.
    pub tenant_claim: String,
    /// The claim listing the token's scopes: a space-separated string (OAuth's `scope`) or an
    /// array. Names PHANTOM does not know are skipped.
    pub scopes_claim: String,
    /// Signature algorithms accepted (`RS256`, `ES256`, `EdDSA`, ...). HMAC ones (`HS256`)
    /// are refused: with a public JWKS they would let anyone sign.
    pub algorithms: Vec<Algorithm>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audiences: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            refresh_interval: DEFAULT_JWKS_REFRESH,
            leeway: DEFAULT_JWT_LEEWAY,
            verified_ttl: DEFAULT_VERIFIED_TTL,
            tenant_claim: "tenant".to_owned(),
            scopes_claim: "scope".to_owned(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        }
    }
}

impl JwtConfig {
    /// Where the keys come from (after [`JwtConfig::validate`]: exactly one is set).
    pub fn source(&self) -> Option<JwksSource> {
        match (&self.jwks_file, &self.jwks_url) {
            (Some(f), None) => Some(JwksSource::File(f.clone())),
            (None, Some(u)) => Some(JwksSource::Url(u.clone())),
            _ => None,
        }
    }

    /// Checks what the types cannot; keys are relative to `[auth.jwt]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.issuer.is_empty() {
            return Err(Invalid::new("issuer", "is required"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(Invalid::new("audiences", "must name at least one audience"));
        }
        match self.source() {
            None => {
                return Err(Invalid::new(
                    "jwks_file",
                    "exactly one of jwks_file and jwks_url must be set",
                ));
            }
            Some(JwksSource::Url(url)) => {
                let uri = url.parse::<reqwest::Url>().ok();
                if !uri.is_some_and(|u| u.scheme() == "https" || u.scheme() == "http") {
                    return Err(Invalid::new(
                        "jwks_url",
                        "must be an https:// (or http://) URL",
                    ));
                }
            }
            Some(JwksSource::File(_)) => {}
        }
        if self.refresh_interval < Duration::from_secs(1) {
            return Err(Invalid::new("refresh_interval", "must be at least 1s"));
        }
        if self.tenant_claim.is_empty() || self.scopes_claim.is_empty() {
            return Err(Invalid::new(
                "tenant_claim",
                "tenant_claim and scopes_claim must not be empty",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(Invalid::new(
                "algorithms",
                "must name at least one algorithm",
            ));
        }
        if let Some(hmac) = self.algorithms.iter().find(|a| is_hmac(**a)) {
            return Err(Invalid::new(
                "algorithms",
                format!("{hmac:?} is an HMAC algorithm: refused (anyone with the JWKS could sign)"),
            ));
        }
        Ok(())
    }
}

/// Whether `alg` is a shared-secret algorithm (never accepted).
pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> AuthConfig {
        AuthConfig {
            key_secret: Secret::new("k".repeat(32)),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_key_secret_is_long_or_left_to_the_binary() {
        let err = AuthConfig {
            key_secret: Secret::new("short"),
            ..AuthConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "key_secret");
        AuthConfig::default().validate().unwrap();
        enabled().validate().unwrap();
        AuthConfig {
            enabled: false,
            ..AuthConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let c = AuthConfig {
            service_token: Some(Secret::new("s3rvice-token-s3rvice-token-1234")),
            ..enabled()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("kkkk"), "{shown}");
        assert!(!shown.contains("s3rvice"), "{shown}");
    }

    #[test]
    fn jwt_needs_exactly_one_jwks_source_and_no_hmac() {
        let good = JwtConfig {
            issuer: "https://issuer.example".into(),
            audiences: vec!["phantom".into()],
            jwks_url: Some("https://issuer.example/jwks".into()),
            ..JwtConfig::default()
        };
        good.validate().unwrap();
        let both = JwtConfig {
            jwks_file: Some("/etc/jwks.json".into()),
            ..good.clone()
        };
        assert_eq!(both.validate().unwrap_err().key, "jwks_file");
        let hmac = JwtConfig {
            algorithms: vec![Algorithm::RS256, Algorithm::HS256],
            ..good.clone()
        };
        assert_eq!(hmac.validate().unwrap_err().key, "algorithms");
        let c = AuthConfig {
            jwt: Some(JwtConfig {
                issuer: String::new(),
                ..good
            }),
            ..enabled()
        };
        assert_eq!(c.validate().unwrap_err().key, "jwt.issuer");
    }

    #[test]
    fn parses_from_toml_with_defaults() {
        let c: AuthConfig = serde_json::from_value(serde_json::json!({
            "key_secret": "x".repeat(40),
            "jwt": {"issuer": "i", "audiences": ["a"], "jwks_file": "/j.json"}
        }))
        .unwrap();
        assert_eq!(c.cache_ttl, DEFAULT_CACHE_TTL);
        let jwt = c.jwt.as_ref().unwrap();
        assert_eq!(jwt.tenant_claim, "tenant");
        assert_eq!(jwt.algorithms.len(), 3);
        c.validate().unwrap();
    }
}
