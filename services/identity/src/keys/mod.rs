//! API keys: `phk_<id>_<secret>`, stored as a keyed hash, checked from a small cache.
//!
//! A key is a public id (12 hex characters, shown by `auth key list`, the row's primary key)
//! and a secret of 32 random bytes from the operating system's generator, written base64url
//! without padding. The key is shown once, when it is created ([`KeyStore::create`]); the
//! database keeps `HMAC-SHA256(key_secret, id ‖ secret)`.
//!
//! # Why a keyed hash and not a slow KDF
//! A password hash (argon2, scrypt) exists to make guessing a *low-entropy* secret expensive.
//! A key's secret is 256 random bits: nothing is guessable, so a KDF would add no protection,
//! but it would make every call that misses the cache cost tens of milliseconds of CPU, and
//! turn a flood of made-up keys from unauthenticated peers into a CPU attack on the server.
//! An HMAC costs a microsecond. Its server key (`auth.key_secret`, from the environment, never
//! in the database) means that a dump of the database alone cannot even test a guessed key.
//! The id is hashed with the secret so a hash copied onto another row does not verify.
//! Comparison is constant-time (`Mac::verify_slice`).
//!
//! # The cache
//! [`ApiKeys`] keeps the records it fetched for `auth.cache_ttl` (30 s by default), at most
//! [`DEFAULT_CACHE_CAPACITY`] of them: a revocation takes effect within the TTL, an expiry at
//! once (checked on every call against the cached `expires_at`). A cached key is still
//! verified on every call (one HMAC): the cache saves the database round trip, never the
//! check. `last_used_at` is written off the request path, at most once a minute per key.

mod api_keys;
mod format;
mod store;

pub use api_keys::{ApiKeys, Clock, DEFAULT_CACHE_CAPACITY, TOUCH_EVERY};
pub use format::{ID_LEN, KEY_PREFIX};
pub use store::KeyStore;

pub(crate) use format::random_bytes;

#[cfg(test)]
pub(crate) mod tests;
