//! Rate limits shared by replicas through a real Redis (`make test` provides it), and the
//! fail-open / fail-closed choice when Redis is unreachable.

use std::time::Duration;

use phantom_layers::rate_limit::{
    DistributedConfig, OnRedisError, QuotaConfig, RateLimitConfig, RateLimiter,
};

fn config(redis_url: &str, on_error: OnRedisError) -> RateLimitConfig {
    RateLimitConfig {
        default: QuotaConfig {
            per_second: 1.0,
            burst: 2,
        },
        distributed: DistributedConfig {
            enabled: true,
            redis_url: redis_url.to_owned(),
            on_error,
            timeout: Duration::from_millis(500),
        },
        ..RateLimitConfig::default()
    }
}

async fn admit(l: &RateLimiter, caller: &str) -> bool {
    l.check("/p.S/M", caller).is_ok() && l.check_shared("/p.S/M", caller).await.is_ok()
}

#[tokio::test]
async fn replicas_share_one_limit_through_redis() {
    let Some(url) = phantom_kit::testing::redis_url() else {
        return;
    };
    let name = format!("replicas-{}", std::process::id());
    // Two replicas of one server: each alone would admit 2; together they admit 2.
    let a = RateLimiter::with_distributed(&name, &config(&url, OnRedisError::Deny)).unwrap();
    let b = RateLimiter::with_distributed(&name, &config(&url, OnRedisError::Deny)).unwrap();
    let mut admitted = 0;
    for i in 0..4 {
        let replica = if i % 2 == 0 { &a } else { &b };
        if admit(replica, "tenant-1").await {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2);
    let refused = b.check_shared("/p.S/M", "tenant-1").await.unwrap_err();
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1),
        "{refused:?}"
    );
    // Another caller has its own bucket.
    assert!(admit(&a, "tenant-2").await);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("redis://127.0.0.1:{port}");
    // A slow refill, so the waits for the dead Redis do not refill the local bucket.
    let slow = |on_error| RateLimitConfig {
        default: QuotaConfig {
            per_second: 0.01,
            burst: 2,
        },
        ..config(&dead, on_error)
    };
    let open = RateLimiter::with_distributed("fail-open", &slow(OnRedisError::Allow)).unwrap();
    let closed =
        RateLimiter::with_distributed("fail-closed", &config(&dead, OnRedisError::Deny)).unwrap();
    assert!(open.check_shared("/p.S/M", "t").await.is_ok());
    assert!(closed.check_shared("/p.S/M", "t").await.is_err());
    // The local limit still holds when failing open.
    assert!(admit(&open, "t").await);
    assert!(admit(&open, "t").await);
    assert!(!admit(&open, "t").await);
}
