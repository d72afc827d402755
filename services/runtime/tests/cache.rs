//! The cache conformance suite against Redis (`PHANTOM_TEST_REDIS_URL`, set by `make test`).

use phantom_runtime::cache::{RedisCache, conformance};

#[tokio::test]
async fn redis_cache_conforms() {
    let Some(url) = phantom_runtime::testing::redis_url() else {
        return;
    };
    let cache = RedisCache::connect(&url).await.unwrap();
    conformance::run_all(&cache).await;
    // The same suite through compression, as services use it.
    let compressed = phantom_runtime::cache::CompressedCache::new(
        std::sync::Arc::new(cache),
        phantom_runtime::cache::Compression::Zstd,
        16,
    );
    conformance::run_all(&compressed).await;
}
