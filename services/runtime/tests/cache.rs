//! The cache conformance suite against Redis (`PHANTOM_TEST_REDIS_URL`, set by `make test`).

use phantom_runtime::cache::{RedisCache, conformance};

#[tokio::test]
async fn redis_cache_conforms() {
    let Some(url) = phantom_runtime::testing::redis_url() else {
        return;
    };
    let cache = RedisCache::connect(&url).await.unwrap();
    conformance::run_all(&cache).await;
}
