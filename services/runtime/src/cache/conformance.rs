//! The behaviour every [`Cache`] must have, run against the in-process cache (on a paused
//! clock) and against Redis (`services/runtime/tests/cache.rs`).

use std::time::Duration;

use super::Cache;

/// Runs every check against `cache`. Expiry is checked by advancing `tokio::time`: on Redis,
/// whose clock cannot be paused, the wait is real but short.
pub async fn run_all(cache: &dyn Cache) {
    let ns = uuid::Uuid::now_v7().simple().to_string();
    let key = |k: &str| format!("{ns}:{k}");

    cache.ping().await.unwrap();
    assert_eq!(cache.get(&key("missing")).await.unwrap(), None);

    cache
        .set(&key("a"), b"alpha", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), Some(b"alpha".to_vec()));

    cache
        .set(&key("a"), b"beta", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), Some(b"beta".to_vec()));

    let binary: Vec<u8> = (0..=255).collect();
    cache
        .set(&key("bin"), &binary, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("bin")).await.unwrap(), Some(binary));

    cache.delete(&key("a")).await.unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), None);
    cache.delete(&key("never-set")).await.unwrap();

    cache
        .set(&key("short"), b"x", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cache.get(&key("short")).await.unwrap(), None);
}
