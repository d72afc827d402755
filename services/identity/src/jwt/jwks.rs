//! The issuer's keys: a JWKS read from a file or fetched from a URL, behind a breaker.

use std::{path::PathBuf, sync::Arc, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, JwkSet, PublicKeyUse},
};
use phantom_layers::{
    circuit_breaker::{Breaker, CircuitBreakerConfig},
    classify::Verdict,
};

use crate::{IdentityError, settings::JwksSource};

/// Longest wait for the JWKS URL to answer.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS read: a set of a few dozen keys is a few tens of KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Fetches failing in a row before the breaker opens.
const BREAKER_FAILURES: u32 = 3;
/// How long the breaker stays open before a probe.
const BREAKER_OPEN: Duration = Duration::from_secs(30);

/// One verification key of the set.
#[derive(Clone)]
pub(crate) struct Key {
    /// Its `kid`.
    pub(crate) kid: Option<String>,
    /// The algorithm the JWK is restricted to (`alg`), if it says.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// The usable keys of a JWKS.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<Key>>,
}

impl KeySet {
    /// The signature keys of a JWKS document; others (encryption keys, shared secrets, key
    /// types not supported) are skipped. A set with no usable key is an error.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, IdentityError> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|e| IdentityError::Jwks(format!("not a JWKS: {e}")))?;
        let keys: Vec<_> = set
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(
                    jwk.common.public_key_use,
                    Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
                ) && !matches!(
                    jwk.algorithm,
                    AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
                )
            })
            .filter_map(|jwk| {
                let alg = match jwk.common.key_algorithm {
                    Some(a) => Some(Algorithm::try_from(a).ok()?),
                    None => None,
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Arc::new(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                }))
            })
            .collect();
        if keys.is_empty() {
            return Err(IdentityError::Jwks("no usable signature key".into()));
        }
        Ok(Self { keys })
    }

    /// The key named `kid`; with no `kid`, the only key if there is one.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            None if self.keys.len() == 1 => self.keys.first().cloned(),
            None => None,
        }
    }

    /// Keys in the set.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Where the JWKS is read from.
pub(crate) enum Loader {
    /// A file, read again at each refresh.
    File(PathBuf),
    /// A URL, fetched with a timeout, behind a breaker.
    Url {
        url: String,
        client: reqwest::Client,
        breaker: Breaker,
    },
}

impl Loader {
    pub(crate) fn new(source: JwksSource) -> Result<Self, IdentityError> {
        Ok(match source {
            JwksSource::File(path) => Self::File(path),
            JwksSource::Url(url) => Self::Url {
                client: reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| IdentityError::Jwks(format!("HTTP client: {e}")))?,
                breaker: Breaker::new(
                    "jwks",
                    CircuitBreakerConfig::consecutive(BREAKER_FAILURES, BREAKER_OPEN, 1),
                ),
                url,
            },
        })
    }

    /// Reads the set.
    pub(crate) async fn load(&self) -> Result<KeySet, IdentityError> {
        match self {
            Self::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| IdentityError::Jwks(format!("{}: {e}", path.display())))?;
                KeySet::parse(&bytes)
            }
            Self::Url {
                url,
                client,
                breaker,
            } => {
                let permit = breaker
                    .try_acquire()
                    .map_err(|e| IdentityError::Jwks(e.to_string()))?;
                let fetched = fetch(client, url).await;
                permit.record(Verdict {
                    failure: fetched.is_err(),
                    retryable: true,
                });
                KeySet::parse(&fetched?)
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, IdentityError> {
    let err = |e: String| IdentityError::Jwks(format!("{url}: {e}"));
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !response.status().is_success() {
        return Err(err(format!("answered {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| err(e.to_string()))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(err(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
