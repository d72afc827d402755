//! The identity crate's repository: API keys as stored, their hash and never their secret.
//!
//! [`KeyRepository`] is what [`crate::keys::KeyStore`] keeps keys in; [`SqlKeyRepository`]
//! speaks it to the shared database (see [`phantom_storage::Database`]). The table
//! (`api_keys`) and its migrations (`services/identity/migrations`) are this crate's.
//!
//! A key is looked up by its id alone (the id is what a caller presents, before anything says
//! which tenant it is); listing filters by tenant when asked.

mod sql;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

use async_trait::async_trait;
use phantom_domain::Tenant;
use phantom_layers::auth::Scopes;
use phantom_storage::StoreError;

pub use sql::SqlKeyRepository;

phantom_storage::migrator! {
    /// The migrations the identity crate applies before it uses the database. Numbered
    /// 202611290400-202611290499 (see [`phantom_storage::Database::migrate`]).
    pub fn migrator
}

/// What anyone may see of an API key: everything but its secret and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The public id (the `<id>` of `phk_<id>_<secret>`).
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: Tenant,
    /// What the key may do.
    pub scopes: Scopes,
    /// What its owner called it.
    pub name: String,
    /// Created at (microseconds since the Unix epoch).
    pub created_at: i64,
    /// Refused from this time on, if set.
    pub expires_at: Option<i64>,
    /// Last accepted at, give or take a minute (updated at most once a minute per key).
    pub last_used_at: Option<i64>,
    /// Revoked at, if it was.
    pub revoked_at: Option<i64>,
}

impl KeyInfo {
    /// Whether the key is refused at `now`: revoked, or expired.
    pub fn is_dead_at(&self, now: i64) -> bool {
        self.revoked_at.is_some() || self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A stored key: its [`KeyInfo`] and the keyed hash of its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// What anyone may see.
    pub info: KeyInfo,
    /// HMAC-SHA256 of the key's id and secret under the server's key secret (see
    /// [`crate::keys`]).
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("info", &self.info)
            .field("hash", &"<redacted>")
            .finish()
    }
}

/// Where API keys are kept.
#[async_trait]
pub trait KeyRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new key. An id already taken is an error (ids are random: it does not happen).
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;

    /// The key with this id, revoked and expired ones included.
    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Every key, or the keys of one tenant, oldest first.
    async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<KeyInfo>, StoreError>;

    /// Marks a key revoked at `at`. False if there is no such key; a key already revoked keeps
    /// its first revocation time (and this returns true).
    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError>;

    /// Records that the key was used at `at` (never moves `last_used_at` backwards).
    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError>;
}
