//! The behaviour every [`Cache`] backend must have, and the [`CacheManager`] over it: run
//! against the in-process cache (on a paused clock) and against a real Redis
//! (`services/kit/tests/cache.rs`).
//!
//! Expiry is checked by sleeping on `tokio::time`: on a paused clock that is instant, on
//! Redis (whose clock cannot be paused) the wait is real but short, and only ever *longer*
//! than needed, so a slow machine cannot make it fail.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use super::{Cache, CacheManager, Entry};

fn namespace() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Runs every backend check against `cache`.
pub async fn run_all(cache: &dyn Cache) {
    let ns = namespace();
    let key = |k: &str| format!("{ns}:{k}");

    cache.ping().await.unwrap();
    assert_eq!(cache.get(&key("missing")).await.unwrap(), None);

    cache
        .set(&key("a"), b"alpha", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), Some(b"alpha".to_vec()));
    let (_, left) = cache.get_with_ttl(&key("a")).await.unwrap().unwrap();
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );

    cache
        .set(&key("a"), b"beta", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), Some(b"beta".to_vec()));

    // Extending a live entry; an absent one cannot be.
    assert!(
        cache
            .expire(&key("a"), Duration::from_secs(600))
            .await
            .unwrap()
    );
    let (_, left) = cache.get_with_ttl(&key("a")).await.unwrap().unwrap();
    assert!(left > Duration::from_secs(500), "{left:?}");
    assert!(
        !cache
            .expire(&key("absent"), Duration::from_secs(600))
            .await
            .unwrap()
    );

    let binary: Vec<u8> = (0..=255).collect();
    cache
        .set(&key("bin"), &binary, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key("bin")).await.unwrap(), Some(binary));

    cache.delete(&key("a")).await.unwrap();
    assert_eq!(cache.get(&key("a")).await.unwrap(), None);
    cache.delete(&key("never-set")).await.unwrap();
    cache.delete_many(&[]).await.unwrap();

    // Sets: union of members, empty when absent, removed by delete_many.
    let set = key("set");
    assert!(cache.set_members(&set).await.unwrap().is_empty());
    cache
        .set_add(&set, &[key("x"), key("y")], Duration::from_secs(60))
        .await
        .unwrap();
    cache
        .set_add(&set, &[key("y"), key("z")], Duration::from_secs(60))
        .await
        .unwrap();
    let mut members = cache.set_members(&set).await.unwrap();
    members.sort();
    assert_eq!(members, vec![key("x"), key("y"), key("z")]);
    cache.delete_many(&[set.clone(), key("bin")]).await.unwrap();
    assert!(cache.set_members(&set).await.unwrap().is_empty());
    assert_eq!(cache.get(&key("bin")).await.unwrap(), None);

    // A set's life is extended by a longer-lived member, never shortened.
    let sticky = key("sticky");
    cache
        .set_add(&sticky, &[key("p")], Duration::from_millis(300))
        .await
        .unwrap();
    cache
        .set_add(&sticky, &[key("q")], Duration::from_secs(60))
        .await
        .unwrap();
    cache
        .set_add(&sticky, &[key("r")], Duration::from_millis(50))
        .await
        .unwrap();

    cache
        .set(&key("short"), b"x", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cache.get(&key("short")).await.unwrap(), None);
    assert_eq!(cache.set_members(&sticky).await.unwrap().len(), 3);
}

/// Runs every [`CacheManager`] check against `cache`, which must use the default
/// configuration except `min_ttl` = 1s and `max_ttl` = 1h.
pub async fn run_manager(cache: &CacheManager) {
    let ns = namespace();
    let key = |k: &str| format!("{ns}:{k}");
    let entry = || Entry::new().ttl(Duration::from_secs(60));

    // Tags: one call removes every entry carrying the tag, and only those.
    let scan = key("scan-1");
    for k in ["f1", "f2", "f3"] {
        cache
            .set(
                &key(k),
                k.as_bytes(),
                &entry().tag(&scan).tag(key("tenant")),
            )
            .await;
    }
    cache
        .set(&key("other"), b"o", &entry().tag(key("scan-2")))
        .await;
    assert_eq!(cache.invalidate_tag(&scan).await, 3);
    for k in ["f1", "f2", "f3"] {
        assert_eq!(cache.get(&key(k)).await, None, "{k} survived its tag");
    }
    assert_eq!(cache.get(&key("other")).await, Some(b"o".to_vec()));
    assert_eq!(cache.invalidate_tag(&scan).await, 0);

    // Dependencies cascade, transitively, and cycles end.
    cache.set(&key("root"), b"r", &entry()).await;
    cache
        .set(&key("child"), b"c", &entry().depends_on(key("root")))
        .await;
    cache
        .set(&key("grandchild"), b"g", &entry().depends_on(key("child")))
        .await;
    cache
        .set(
            &key("loop"),
            b"l",
            &entry()
                .depends_on(key("grandchild"))
                .depends_on(key("loop")),
        )
        .await;
    cache.set(&key("bystander"), b"b", &entry()).await;
    assert_eq!(cache.invalidate(&key("root")).await, 4);
    for k in ["root", "child", "grandchild", "loop"] {
        assert_eq!(cache.get(&key(k)).await, None, "{k} survived the cascade");
    }
    assert_eq!(cache.get(&key("bystander")).await, Some(b"b".to_vec()));

    // Adaptive TTL: reads lengthen an entry's life, up to the bound.
    cache.set(&key("hot"), b"h", &entry()).await;
    for _ in 0..8 {
        assert!(cache.get(&key("hot")).await.is_some());
    }
    let extensions = cache.snapshot().ttl_extensions;
    assert!(extensions >= 3, "{:?}", cache.snapshot());
    // Written again after 8 reads: 60s × (1 + log2 8) = 240s.
    cache.set(&key("hot"), b"h", &entry()).await;
    let left = remaining(cache, &key("hot")).await;
    assert!(left > Duration::from_secs(170), "{left:?}");
    // Never read: half its TTL next time.
    cache.set(&key("cold"), b"c", &entry()).await;
    cache.set(&key("cold"), b"c", &entry()).await;
    let left = remaining(cache, &key("cold")).await;
    assert!(left <= Duration::from_secs(30), "{left:?}");

    // Single flight: concurrent misses of one key run the loader once.
    let loads = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let loader = {
        let (loads, gate) = (loads.clone(), gate.clone());
        move || {
            let (loads, gate) = (loads.clone(), gate.clone());
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok::<_, std::io::Error>("loaded".to_owned())
            }
        }
    };
    let k = key("stampede");
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (cache, k, loader) = (cache.clone(), k.clone(), loader.clone());
            tokio::spawn(async move { cache.get_or_load(&k, &entry(), loader).await })
        })
        .collect();
    while loads.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // Let every caller reach the flight before the load finishes.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // A failing loader caches nothing and reports its error.
    let failed: Result<String, std::io::Error> = cache
        .get_or_load(&key("fails"), &entry(), || async {
            Err(std::io::Error::other("source down"))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(cache.get(&key("fails")).await, None);

    // Refresh-ahead: a read late in an entry's life reloads it in the background.
    let loads = Arc::new(AtomicU32::new(0));
    let loader = {
        let loads = loads.clone();
        move || {
            let loads = loads.clone();
            async move { Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::SeqCst) + 1) }
        }
    };
    let k = key("refresh");
    let short = Entry::new().ttl(Duration::from_secs(2));
    let first: u32 = cache.get_or_load(&k, &short, loader.clone()).await.unwrap();
    assert_eq!(first, 1);
    // In the last fifth of its life, a read still answers the cached value at once...
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        cache.get_or_load(&k, &short, loader.clone()).await.unwrap(),
        1
    );
    // ...and the reload replaces it in the background, before it expires.
    for _ in 0..500 {
        if cache.get(&k).await.as_deref() == Some(&b"2"[..]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache.get(&k).await.as_deref(), Some(&b"2"[..]));
    assert_eq!(loads.load(Ordering::SeqCst), 2);

    let s = cache.snapshot();
    assert!(s.hits > 0 && s.misses > 0 && s.hit_rate > 0.0, "{s:?}");
    assert!(
        s.loads >= 3 && s.coalesced >= 1 && s.refreshes >= 1,
        "{s:?}"
    );
    assert!(s.invalidations >= 7, "{s:?}");
}

async fn remaining(cache: &CacheManager, key: &str) -> Duration {
    cache
        .inner_store()
        .get_with_ttl(key)
        .await
        .unwrap()
        .expect("entry present")
        .1
}
