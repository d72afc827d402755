//! The key's text (`phk_<id>_<secret>`) and its keyed hash.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::IdentityError;

/// What every API key starts with.
pub const KEY_PREFIX: &str = "phk_";
/// Characters of a key's id (lowercase hex).
pub const ID_LEN: usize = 12;
/// Bytes of a key's secret.
const SECRET_BYTES: usize = 32;
/// Characters of a key's secret, base64url without padding.
const SECRET_LEN: usize = 43;

/// A key as presented: its id and its decoded secret.
pub(crate) struct Presented<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret: [u8; SECRET_BYTES],
}

/// `bearer` as a key, if it has a key's shape.
pub(crate) fn parse(bearer: &str) -> Option<Presented<'_>> {
    let rest = bearer.strip_prefix(KEY_PREFIX)?;
    // The secret's alphabet has `_`: the id is cut by length, not at a separator.
    let (id, rest) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?);
    let secret = rest.strip_prefix('_')?;
    if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) || secret.len() != SECRET_LEN {
        return None;
    }
    let mut out = [0u8; SECRET_BYTES];
    let n = URL_SAFE_NO_PAD
        .decode_slice(secret, &mut out)
        .ok()
        .filter(|n| *n == SECRET_BYTES)?;
    debug_assert_eq!(n, SECRET_BYTES);
    Some(Presented { id, secret: out })
}

/// `n` bytes from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(out)
}

/// A new key: its id, its secret, and its text (shown once).
pub(crate) fn generate() -> Result<(String, [u8; SECRET_BYTES], String), IdentityError> {
    let id = hex::encode(random_bytes::<{ ID_LEN / 2 }>()?);
    let secret = random_bytes::<SECRET_BYTES>()?;
    let text = format!("{KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    Ok((id, secret, text))
}

/// HMAC-SHA256 under the server's key secret, ready to be cloned for each key.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

impl KeyHasher {
    /// A hasher under `key_secret`.
    pub(crate) fn new(key_secret: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key_secret).expect("HMAC takes a key of any size"),
        }
    }

    fn mac(&self, id: &str, secret: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(secret);
        mac
    }

    /// The stored hash of a key.
    pub(crate) fn hash(&self, id: &str, secret: &[u8]) -> Vec<u8> {
        self.mac(id, secret).finalize().into_bytes().to_vec()
    }

    /// Whether `secret` is the key `hash` was made from, in constant time.
    pub(crate) fn verify(&self, id: &str, secret: &[u8], hash: &[u8]) -> bool {
        self.mac(id, secret).verify_slice(hash).is_ok()
    }
}
