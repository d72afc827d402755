//! [`KeyStore`]: creating, listing and revoking keys, over a [`KeyRepository`].

use std::sync::Arc;

use phantom_domain::{Tenant, time::now_micros};
use phantom_layers::auth::Scopes;
use phantom_storage::StoreError;

use super::format::{self, KeyHasher};
use crate::{
    IdentityError, Secret,
    repository::{KeyInfo, KeyRecord, KeyRepository},
};

/// Longest name a key may be given.
const MAX_NAME_LEN: usize = 128;

/// The API keys: what `auth key create|list|revoke` and [`super::ApiKeys`] use. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct KeyStore {
    repository: Arc<dyn KeyRepository>,
    hasher: KeyHasher,
}

impl KeyStore {
    /// Keys kept in `repository`, hashed under `key_secret` (`auth.key_secret`).
    pub fn new(repository: Arc<dyn KeyRepository>, key_secret: &Secret) -> Self {
        Self {
            repository,
            hasher: KeyHasher::new(key_secret.expose().as_bytes()),
        }
    }

    /// Creates a key for `tenant` with `scopes`, refused from `expires_at` (microseconds since
    /// the Unix epoch) if set. Returns what is stored and the key's text: shown once, never
    /// stored, not recoverable.
    pub async fn create(
        &self,
        tenant: Tenant,
        scopes: Scopes,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(KeyInfo, String), IdentityError> {
        if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(IdentityError::Invalid(format!(
                "a key's name is at most {MAX_NAME_LEN} bytes of printable text"
            )));
        }
        let (id, secret, text) = format::generate()?;
        let info = KeyInfo {
            id: id.clone(),
            tenant,
            scopes,
            name: name.to_owned(),
            created_at: now_micros(),
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let hash = self.hasher.hash(&id, &secret);
        self.repository
            .insert_key(&KeyRecord {
                info: info.clone(),
                hash,
            })
            .await?;
        tracing::info!(key_id = %info.id, tenant = %info.tenant, scopes = %info.scopes, "API key created");
        Ok((info, text))
    }

    /// Every key, or one tenant's; never a hash.
    pub async fn list(&self, tenant: Option<&Tenant>) -> Result<Vec<KeyInfo>, StoreError> {
        self.repository.list_keys(tenant).await
    }

    /// Revokes a key: refused by every replica within `auth.cache_ttl`. False if there is
    /// no such key.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let found = self.repository.revoke_key(id, now_micros()).await?;
        if found {
            tracing::info!(key_id = %id, "API key revoked");
        }
        Ok(found)
    }

    /// The key with this id, if any (revoked and expired ones included).
    pub async fn lookup(&self, id: &str) -> Result<Option<KeyInfo>, StoreError> {
        Ok(self.repository.find_key(id).await?.map(|r| r.info))
    }

    /// Records that the key was used at `at` (microseconds since the Unix epoch).
    pub async fn touch_last_used(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.repository.touch_key(id, at).await
    }

    /// The stored record, hash included (for [`super::ApiKeys`]).
    pub(crate) async fn find(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.repository.find_key(id).await
    }

    pub(crate) fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }
}
