//! The behaviour every [`KeyRepository`] must have, as one suite run against each backend
//! (`services/identity/tests/repository.rs` runs it on SQLite and on PostgreSQL).
//!
//! Each check uses fresh tenants and ids, so the suite can run against a shared database.

use phantom_domain::Tenant;
use phantom_layers::auth::{Scope, Scopes};

use super::{KeyInfo, KeyRecord, KeyRepository};

fn tenant() -> Tenant {
    Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).expect("a tenant id")
}

fn key(tenant: &Tenant, created_at: i64) -> KeyRecord {
    let id = uuid::Uuid::now_v7().simple().to_string();
    KeyRecord {
        info: KeyInfo {
            id: id[id.len() - 12..].to_owned(),
            tenant: tenant.clone(),
            scopes: [Scope::ScansRead, Scope::FindingsRead]
                .into_iter()
                .collect(),
            name: "ci".to_owned(),
            created_at,
            expires_at: Some(created_at + 3_600_000_000),
            last_used_at: None,
            revoked_at: None,
        },
        hash: vec![0xab; 32],
    }
}

/// Runs every check against `store`.
pub async fn run_all(store: &dyn KeyRepository) {
    keys_round_trip_with_their_hash(store).await;
    listing_filters_by_tenant_in_creation_order(store).await;
    revocation_keeps_its_first_time(store).await;
    last_used_never_moves_backwards(store).await;
}

/// A stored key reads back field for field, its hash and null times included.
pub async fn keys_round_trip_with_their_hash(store: &dyn KeyRepository) {
    let t = tenant();
    let k = key(&t, 1_000);
    store.insert_key(&k).await.unwrap();
    assert_eq!(store.find_key(&k.info.id).await.unwrap(), Some(k.clone()));
    assert_eq!(store.find_key("000000000000").await.unwrap(), None);
    let none = KeyRecord {
        info: KeyInfo {
            expires_at: None,
            scopes: Scopes::NONE,
            ..key(&t, 2_000).info
        },
        ..k.clone()
    };
    store.insert_key(&none).await.unwrap();
    assert_eq!(store.find_key(&none.info.id).await.unwrap(), Some(none));
    assert!(store.insert_key(&k).await.is_err(), "an id is unique");
}

/// Listing one tenant shows only its keys, oldest first; listing all shows every tenant's.
pub async fn listing_filters_by_tenant_in_creation_order(store: &dyn KeyRepository) {
    let (a, b) = (tenant(), tenant());
    let (a2, a1, b1) = (key(&a, 20), key(&a, 10), key(&b, 10));
    for k in [&a2, &a1, &b1] {
        store.insert_key(k).await.unwrap();
    }
    let listed = store.list_keys(Some(&a)).await.unwrap();
    assert_eq!(listed, vec![a1.info.clone(), a2.info.clone()]);
    let all = store.list_keys(None).await.unwrap();
    for k in [&a1, &a2, &b1] {
        assert!(all.contains(&k.info), "{} listed", k.info.id);
    }
}

/// A revoked key stays revoked at its first revocation time; an unknown id says so.
pub async fn revocation_keeps_its_first_time(store: &dyn KeyRepository) {
    let k = key(&tenant(), 10);
    store.insert_key(&k).await.unwrap();
    assert!(store.revoke_key(&k.info.id, 100).await.unwrap());
    assert!(store.revoke_key(&k.info.id, 200).await.unwrap());
    let found = store.find_key(&k.info.id).await.unwrap().unwrap();
    assert_eq!(found.info.revoked_at, Some(100));
    assert!(!store.revoke_key("ffffffffffff", 100).await.unwrap());
}

/// `last_used_at` keeps the latest time it was told, whatever the order.
pub async fn last_used_never_moves_backwards(store: &dyn KeyRepository) {
    let k = key(&tenant(), 10);
    store.insert_key(&k).await.unwrap();
    store.touch_key(&k.info.id, 500).await.unwrap();
    store.touch_key(&k.info.id, 300).await.unwrap();
    let found = store.find_key(&k.info.id).await.unwrap().unwrap();
    assert_eq!(found.info.last_used_at, Some(500));
}
