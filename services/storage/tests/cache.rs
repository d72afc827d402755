//! The cache conformance suites against a real Redis (`PHANTOM_TEST_REDIS_URL`, set by
//! `make test`): the backend alone, through compression, and the manager over it.

use std::{sync::Arc, time::Duration};

use phantom_storage::cache::{
    CacheConfig, CacheManager, CompressedCache, Compression, RedisCache, conformance,
};

#[tokio::test]
async fn redis_cache_conforms() {
    let Some(url) = phantom_storage::testing::redis_url() else {
        return;
    };
    let cache = RedisCache::connect(&url, Duration::from_secs(2))
        .await
        .unwrap();
    conformance::run_all(&cache).await;
    // The same suite through compression, as services use it.
    let compressed = CompressedCache::new(Arc::new(cache), Compression::Zstd, 16);
    conformance::run_all(&compressed).await;
}

#[tokio::test]
async fn cache_manager_on_redis_conforms() {
    let Some(url) = phantom_storage::testing::redis_url() else {
        return;
    };
    let config = CacheConfig {
        redis_url: url.clone(),
        min_ttl: Duration::from_secs(1),
        // Generous: a loaded CI machine must not trip the breaker on a live Redis.
        timeout: Duration::from_secs(2),
        ..CacheConfig::default()
    };
    let backend = RedisCache::connect(&url, config.timeout).await.unwrap();
    let store = CompressedCache::new(Arc::new(backend), Compression::Zstd, 16);
    let manager = CacheManager::new("conformance-redis", store, &config);
    conformance::run_manager(&manager).await;
    assert_eq!(manager.snapshot().errors, 0);
}
