use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use phantom_domain::{Tenant, time::now_micros};
use phantom_layers::auth::{Authenticate, Identity, Refusal, Scope, Scopes};
use phantom_storage::StoreError;

use super::{format, *};
use crate::{
    Secret,
    repository::{KeyInfo, KeyRecord, KeyRepository},
};

/// A key repository in memory that counts lookups and writes, and can be made to fail.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    keys: Mutex<HashMap<String, KeyRecord>>,
    finds: AtomicUsize,
    touches: AtomicUsize,
    down: AtomicBool,
}

#[async_trait]
impl KeyRepository for Memory {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.keys
            .lock()
            .unwrap()
            .insert(key.info.id.clone(), key.clone());
        Ok(())
    }

    async fn find_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        Ok(self.keys.lock().unwrap().get(id).cloned())
    }

    async fn list_keys(&self, tenant: Option<&Tenant>) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .values()
            .filter(|k| tenant.is_none_or(|t| &k.info.tenant == t))
            .map(|k| k.info.clone())
            .collect())
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .get_mut(id)
            .map(|k| k.info.revoked_at = Some(at))
            .is_some())
    }

    async fn touch_key(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        if let Some(k) = self.keys.lock().unwrap().get_mut(id) {
            k.info.last_used_at = Some(at);
        }
        Ok(())
    }
}

const TTL: Duration = Duration::from_secs(30);

pub(crate) fn tenant() -> Tenant {
    Tenant::parse("acme").unwrap()
}

pub(crate) fn scopes() -> Scopes {
    [Scope::ScansRead, Scope::FindingsRead]
        .into_iter()
        .collect()
}

/// Keys over a fresh memory repository, with a wall clock the test moves.
pub(crate) fn setup() -> (ApiKeys, Arc<Memory>, Arc<AtomicI64>) {
    let memory = Arc::new(Memory::default());
    let store = KeyStore::new(memory.clone(), &Secret::new("s".repeat(32)));
    let now = Arc::new(AtomicI64::new(now_micros()));
    let clock = now.clone();
    let keys = ApiKeys::new(store, TTL).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    (keys, memory, now)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_key_reads_back_as_its_id_and_secret() {
    let (id, secret, text) = format::generate().unwrap();
    assert_eq!(id.len(), ID_LEN);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(text.starts_with(&format!("phk_{id}_")));
    assert_eq!(text.len(), 4 + 12 + 1 + 43);
    let parsed = format::parse(&text).unwrap();
    assert_eq!(parsed.id, id);
    assert_eq!(parsed.secret, secret);
    let (other, _, _) = format::generate().unwrap();
    assert_ne!(id, other, "ids are random");
}

#[test]
fn malformed_keys_do_not_parse() {
    let (_, _, text) = format::generate().unwrap();
    let cases = [
        String::new(),
        "phk_".to_owned(),
        text.replacen("phk_", "phx_", 1),
        text[..text.len() - 1].to_owned(),
        format!("{text}A"),
        text.to_uppercase(),
        text.replacen('_', "-", 2),
        format!("phk_{}_{}", "g".repeat(12), "A".repeat(43)),
        format!("phk_{}_{}", "a".repeat(12), "!".repeat(43)),
    ];
    for case in cases {
        assert!(format::parse(&case).is_none(), "{case:?}");
    }
}

#[test]
fn the_hash_binds_secret_and_id_under_the_server_key() {
    let h = format::KeyHasher::new(b"server-key");
    let hash = h.hash("aaaaaaaaaaaa", b"secret");
    assert!(h.verify("aaaaaaaaaaaa", b"secret", &hash));
    assert!(!h.verify("aaaaaaaaaaaa", b"secreT", &hash));
    assert!(!h.verify("bbbbbbbbbbbb", b"secret", &hash));
    assert!(!format::KeyHasher::new(b"other-key").verify("aaaaaaaaaaaa", b"secret", &hash));
}

#[tokio::test(start_paused = true)]
async fn a_created_key_authenticates_as_its_tenant_and_scopes() {
    let (keys, memory, _) = setup();
    let (info, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    assert!(
        !format!("{info:?}").contains(&text[17..]),
        "the secret is not kept"
    );
    let stored = memory.keys.lock().unwrap()[&info.id].clone();
    assert!(!hex::encode(&stored.hash).contains(&text[17..]));

    let p = keys.authenticate(&text).await.unwrap();
    assert_eq!(
        p.identity,
        Identity::ApiKey {
            key_id: info.id.clone()
        }
    );
    assert_eq!(p.tenant, Some(tenant()));
    assert_eq!(p.scopes, scopes());
    assert_eq!(
        keys.store().list(Some(&tenant())).await.unwrap(),
        vec![info]
    );
}

#[tokio::test(start_paused = true)]
async fn a_tampered_secret_or_unknown_id_is_unknown() {
    let (keys, _, _) = setup();
    let (_, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    keys.authenticate(&text).await.unwrap();
    // One character of the secret changed: the id is cached, the secret still has to verify.
    let mut tampered = text.clone().into_bytes();
    tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(format::parse(&tampered).is_some());
    assert_eq!(keys.authenticate(&tampered).await, Err(Refusal::Unknown));
    let mut other_secret = text[..17].to_owned();
    other_secret.push_str(&"A".repeat(43));
    assert_eq!(
        keys.authenticate(&other_secret).await,
        Err(Refusal::Unknown)
    );
    let (_, _, unknown) = format::generate().unwrap();
    assert_eq!(keys.authenticate(&unknown).await, Err(Refusal::Unknown));
    assert_eq!(
        keys.authenticate("phk_nonsense").await,
        Err(Refusal::Unknown)
    );
}

#[tokio::test(start_paused = true)]
async fn a_revocation_takes_effect_within_the_cache_ttl() {
    let (keys, memory, _) = setup();
    let (info, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    keys.authenticate(&text).await.unwrap();
    assert!(keys.store().revoke(&info.id).await.unwrap());
    // Still trusted from memory, without a lookup...
    tokio::time::advance(TTL - Duration::from_secs(1)).await;
    keys.authenticate(&text).await.unwrap();
    assert_eq!(memory.finds.load(Ordering::SeqCst), 1);
    // ...until the TTL has passed.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(keys.authenticate(&text).await, Err(Refusal::Revoked));
    assert_eq!(memory.finds.load(Ordering::SeqCst), 2);
    assert!(!keys.store().revoke("ffffffffffff").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn an_expired_key_is_refused_at_once_even_when_cached() {
    let (keys, _, now) = setup();
    let expires = now.load(Ordering::SeqCst) + 60_000_000;
    let (_, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", Some(expires))
        .await
        .unwrap();
    keys.authenticate(&text).await.unwrap();
    assert!(keys.is_cheap(&text));
    now.store(expires, Ordering::SeqCst);
    assert_eq!(keys.authenticate(&text).await, Err(Refusal::Revoked));
    assert!(
        !keys.is_cheap(&text),
        "an expired key is not answered from memory"
    );
}

#[tokio::test(start_paused = true)]
async fn only_cached_keys_are_cheap() {
    let (keys, _, _) = setup();
    let (_, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    assert!(!keys.is_cheap(&text));
    assert!(!keys.is_cheap("phk_garbage"));
    keys.authenticate(&text).await.unwrap();
    assert!(keys.is_cheap(&text));
    tokio::time::advance(TTL).await;
    assert!(!keys.is_cheap(&text), "stale entries need a lookup");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_is_unavailable() {
    let (keys, memory, _) = setup();
    let (_, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    memory.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        keys.authenticate(&text).await,
        Err(Refusal::Unavailable(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn last_used_is_written_at_most_once_a_minute() {
    let (keys, memory, _) = setup();
    let (info, text) = keys
        .store()
        .create(tenant(), scopes(), "ci", None)
        .await
        .unwrap();
    for _ in 0..5 {
        keys.authenticate(&text).await.unwrap();
        settle().await;
    }
    assert_eq!(memory.touches.load(Ordering::SeqCst), 1);
    assert!(
        keys.store()
            .lookup(&info.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    );
    // Past the TTL the record is fetched again; the minute is kept across it.
    tokio::time::advance(TTL).await;
    keys.authenticate(&text).await.unwrap();
    settle().await;
    assert_eq!(memory.touches.load(Ordering::SeqCst), 1);
    tokio::time::advance(TOUCH_EVERY).await;
    keys.authenticate(&text).await.unwrap();
    settle().await;
    assert_eq!(memory.touches.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_cache_holds_at_most_its_capacity() {
    let memory = Arc::new(Memory::default());
    let store = KeyStore::new(memory.clone(), &Secret::new("s".repeat(32)));
    let keys = ApiKeys::with_capacity(store, TTL, 2);
    let mut texts = Vec::new();
    for _ in 0..3 {
        let (_, text) = keys
            .store()
            .create(tenant(), scopes(), "ci", None)
            .await
            .unwrap();
        keys.authenticate(&text).await.unwrap();
        texts.push(text);
    }
    let cheap = texts.iter().filter(|t| keys.is_cheap(t)).count();
    assert_eq!(cheap, 2);
    // Every key still works, evicted or not.
    for t in &texts {
        keys.authenticate(t).await.unwrap();
    }
}

#[tokio::test]
async fn a_name_with_control_characters_is_refused() {
    let (keys, _, _) = setup();
    assert!(matches!(
        keys.store()
            .create(tenant(), scopes(), "bad\nname", None)
            .await,
        Err(crate::IdentityError::Invalid(_))
    ));
}
