use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use http::{Request, Response};
use tonic::{Code, body::Body};
use tonic_types::StatusExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::{Tenant, methods::KnownMethods};

fn config(per_second: f64, burst: u32, mode: LimitMode) -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        default: QuotaConfig {
            per_second: 1000.0,
            burst: 1000,
        },
        methods: BTreeMap::from([(
            "/pkg.Svc/Create".to_owned(),
            QuotaConfig { per_second, burst },
        )]),
        mode,
        algorithm: Algorithm::Gcra,
        distributed: DistributedConfig::default(),
    }
}

fn ok_service()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

fn call(path: &str, tenant: &str) -> Request<Body> {
    let mut req = Request::builder()
        .uri(format!("http://x{path}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(Tenant::parse(tenant).unwrap());
    req
}

async fn status(
    svc: &RateLimit<
        impl tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + 'static,
    >,
    path: &str,
    tenant: &str,
) -> tonic::Status {
    let res = svc.clone().oneshot(call(path, tenant)).await.unwrap();
    tonic::Status::from_header_map(res.headers()).unwrap_or_else(|| tonic::Status::ok(""))
}

#[tokio::test(start_paused = true)]
async fn over_the_limit_a_call_gets_resource_exhausted_with_the_limiters_own_retry_time() {
    let limiter = RateLimiter::new("server", &config(2.0, 2, LimitMode::Reject));
    let svc = RateLimitLayer::new(limiter.clone()).layer(ok_service());
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::Ok,
        "burst of 2"
    );
    let limited = status(&svc, "/pkg.Svc/Create", "a").await;
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let retry = limited
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert_eq!(
        retry,
        Duration::from_millis(500),
        "2 per second: the next cell in 500 ms"
    );

    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::ResourceExhausted
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::Ok,
        "exactly when RetryInfo said"
    );
    assert_eq!(limiter.snapshot().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn each_caller_and_each_method_has_its_own_bucket() {
    let svc = RateLimitLayer::new(RateLimiter::new(
        "server",
        &config(1.0, 1, LimitMode::Reject),
    ))
    .layer(ok_service());
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::ResourceExhausted
    );
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "b").await.code(),
        Code::Ok,
        "another tenant"
    );
    assert_eq!(
        status(&svc, "/pkg.Svc/Get", "a").await.code(),
        Code::Ok,
        "another method"
    );
}

#[tokio::test(start_paused = true)]
async fn exempt_paths_are_never_limited() {
    let exempt = crate::methods::Exempt::prefixes(["/grpc.health.v1.Health/", "/grpc.reflection."]);
    let svc = RateLimitLayer::new(
        RateLimiter::new(
            "server",
            &RateLimitConfig {
                default: QuotaConfig {
                    per_second: 0.001,
                    burst: 1,
                },
                ..config(1.0, 1, LimitMode::Reject)
            },
        )
        .with_exempt(exempt),
    )
    .layer(ok_service());
    for _ in 0..100 {
        assert_eq!(
            status(&svc, "/grpc.health.v1.Health/Check", "a")
                .await
                .code(),
            Code::Ok
        );
        assert_eq!(
            status(
                &svc,
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                "a"
            )
            .await
            .code(),
            Code::Ok
        );
    }
    // What the caller did not exempt is limited as usual: the layer knows no path by name.
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::ResourceExhausted
    );
}

#[tokio::test(start_paused = true)]
async fn wait_mode_holds_a_call_until_its_turn_within_the_bound() {
    let limiter = RateLimiter::new(
        "server",
        &config(
            10.0,
            1,
            LimitMode::Wait {
                max_wait: Duration::from_millis(150),
            },
        ),
    );
    let svc = RateLimitLayer::new(limiter.clone()).layer(ok_service());
    let start = tokio::time::Instant::now();
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "waited one period"
    );
    assert_eq!(limiter.snapshot().waited, 1);

    // A wait longer than the bound is a rejection, not a queue.
    let slow = RateLimiter::new(
        "server",
        &config(
            1.0,
            1,
            LimitMode::Wait {
                max_wait: Duration::from_millis(150),
            },
        ),
    );
    let svc = RateLimitLayer::new(slow).layer(ok_service());
    status(&svc, "/pkg.Svc/Create", "a").await;
    let start = tokio::time::Instant::now();
    assert_eq!(
        status(&svc, "/pkg.Svc/Create", "a").await.code(),
        Code::ResourceExhausted
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_limiter_lets_everything_through() {
    let svc = RateLimitLayer::new(RateLimiter::new(
        "server",
        &RateLimitConfig {
            enabled: false,
            ..config(0.001, 1, LimitMode::Reject)
        },
    ))
    .layer(ok_service());
    for _ in 0..50 {
        assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    }
}

#[test]
fn the_seeds_per_minute_form_is_expressible() {
    let q = QuotaConfig::per_minute(60);
    assert!((q.per_second - 1.0).abs() < 1e-9);
    assert_eq!(q.burst, 60);
    assert!(
        RateLimitConfig {
            default: QuotaConfig {
                per_second: 0.0,
                burst: 1
            },
            ..RateLimitConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn the_sliding_window_algorithm_limits_through_the_same_layer() {
    let cfg = RateLimitConfig {
        algorithm: Algorithm::SlidingWindow {
            window: Duration::from_secs(1),
        },
        ..config(3.0, 1, LimitMode::Reject)
    };
    let svc = RateLimitLayer::new(RateLimiter::new("server", &cfg)).layer(ok_service());
    for _ in 0..3 {
        assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
    }
    let limited = status(&svc, "/pkg.Svc/Create", "a").await;
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let wait = limited
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    tokio::time::advance(wait).await;
    assert_eq!(status(&svc, "/pkg.Svc/Create", "a").await.code(), Code::Ok);
}

#[tokio::test(start_paused = true)]
async fn twenty_thousand_unknown_methods_share_one_bucket_per_caller() {
    let limiter = RateLimiter::new("server", &config(1.0, 1, LimitMode::Reject))
        .with_methods(KnownMethods::new(["/pkg.Svc/Get"]));
    for i in 0..20_000 {
        let _ = limiter.check(&format!("/attacker.Svc/M{i}"), "a");
    }
    let keys = limiter.snapshot().tracked_keys;
    assert!(keys <= 1, "20,000 unknown methods made {keys} buckets");
    // A known method keeps a bucket of its own beside them.
    limiter.check("/pkg.Svc/Get", "a").unwrap();
    assert_eq!(limiter.snapshot().tracked_keys, 2);
}

#[tokio::test(start_paused = true)]
async fn callers_beyond_the_bound_evict_buckets_instead_of_growing_the_map() {
    let cap = MAX_KEYS_PER_QUOTA;
    let limiter = RateLimiter::new("server", &config(1.0, 1, LimitMode::Reject));
    for i in 0..3 * cap {
        let _ = limiter.check("/pkg.Svc/Create", &format!("tenant-{i}"));
        let _ = limiter.check("/pkg.Svc/Get", &format!("tenant-{i}"));
    }
    let keys = limiter.snapshot().tracked_keys;
    assert!(keys <= 2 * cap, "{} callers made {keys} buckets", 3 * cap);
}
