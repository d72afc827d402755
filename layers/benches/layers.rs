//! Cost per call of each layer and of the whole stacks, against references measured in the
//! same run: a bare service call, and a bare `governor` check.
//!
//! `cargo bench -p phantom-layers`. Every inner service answers at once, so what is measured
//! is the layers' own overhead (no I/O). Futures are polled once with `now_or_never`.

use std::{convert::Infallible, hint::black_box, num::NonZeroU32, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use http::{Request, Response};
use phantom_layers::{
    Tenant, TenantLayer,
    bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer},
    circuit_breaker::{Breaker, CircuitBreakerConfig, CircuitBreakerLayer},
    classify::{Classify, GrpcClassifier, Outcome},
    rate_limit::{QuotaConfig, RateLimitConfig, RateLimitLayer, RateLimiter},
    retry::{RetryConfig, RetryLayer, RetryPolicy},
};
use tonic::{Code, body::Body};
use tower::{Service, ServiceBuilder, service_fn};

fn ok_service() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Body>| {
        futures::future::ready(Ok::<_, Infallible>(tonic::Status::ok("").into_http()))
    })
}

fn request() -> Request<Body> {
    let mut req = Request::builder()
        .uri("http://x/phantom.v1.VulnAnalyzer/ScoreCvss")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(Tenant::parse("default").unwrap());
    req
}

fn call<S>(svc: &mut S)
where
    S: Service<Request<Body>>,
    S::Response: Send,
{
    let fut = svc.call(request());
    let _ = black_box(fut.now_or_never());
}

fn high_limit() -> RateLimitConfig {
    RateLimitConfig {
        default: QuotaConfig {
            per_second: 1e9,
            burst: u32::MAX / 2,
        },
        ..RateLimitConfig::default()
    }
}

fn off<T>(mut v: T, f: impl FnOnce(&mut T)) -> T {
    f(&mut v);
    v
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference");
    g.bench_function("bare_service_call", |b| {
        let mut svc = ok_service();
        b.iter(|| call(&mut svc));
    });
    g.bench_function("bare_governor_direct_check", |b| {
        let l = governor::RateLimiter::direct(governor::Quota::per_second(
            NonZeroU32::new(1_000_000_000).unwrap(),
        ));
        b.iter(|| black_box(l.check()));
    });
    g.bench_function("bare_governor_keyed_check", |b| {
        let l = governor::RateLimiter::keyed(governor::Quota::per_second(
            NonZeroU32::new(1_000_000_000).unwrap(),
        ));
        b.iter(|| black_box(l.check_key(&black_box(7u64))));
    });
    g.finish();

    let mut g = c.benchmark_group("layer");
    g.bench_function("circuit_breaker_core_closed", |b| {
        let breaker = Breaker::new("bench", CircuitBreakerConfig::default());
        let ok = GrpcClassifier.classify(Outcome::Status(Code::Ok));
        b.iter(|| breaker.try_acquire().unwrap().record(black_box(ok)));
    });
    g.bench_function("circuit_breaker_closed", |b| {
        let mut svc =
            CircuitBreakerLayer::new(Breaker::new("bench", CircuitBreakerConfig::default()))
                .layer_on(ok_service());
        b.iter(|| call(&mut svc));
    });
    g.bench_function("rate_limit_check", |b| {
        let l = RateLimiter::new("bench", &high_limit());
        b.iter(|| black_box(l.check(black_box("/p.S/M"), black_box("default"))));
    });
    g.bench_function("rate_limit_layer", |b| {
        let mut svc =
            RateLimitLayer::new(RateLimiter::new("bench", &high_limit())).layer_on(ok_service());
        b.iter(|| call(&mut svc));
    });
    g.bench_function("bulkhead_layer", |b| {
        let mut svc = BulkheadLayer::new(Bulkhead::new("bench", BulkheadConfig::default()))
            .layer_on(ok_service());
        b.iter(|| call(&mut svc));
    });
    g.bench_function("retry_layer_not_idempotent", |b| {
        let mut svc = RetryLayer::new(RetryPolicy::new("bench", RetryConfig::default()))
            .layer_on(ok_service());
        b.iter(|| call(&mut svc));
    });
    g.finish();

    let mut g = c.benchmark_group("stack");
    let server = |limit: RateLimitConfig, shed: BulkheadConfig| {
        ServiceBuilder::new()
            .layer(TenantLayer::fixed(Tenant::parse("default").unwrap()))
            .layer(BulkheadLayer::new(Bulkhead::new("bench", shed)))
            .layer(RateLimitLayer::new(RateLimiter::new("bench", &limit)))
            .service(ok_service())
    };
    let client = |retry: RetryConfig, bulkhead: BulkheadConfig, breaker: CircuitBreakerConfig| {
        ServiceBuilder::new()
            .layer(RetryLayer::new(RetryPolicy::new("bench", retry)))
            .layer(BulkheadLayer::new(Bulkhead::new("bench", bulkhead)))
            .layer(CircuitBreakerLayer::new(Breaker::new("bench", breaker)))
            .service(ok_service())
    };
    g.bench_function("server_all_on", |b| {
        let mut svc = server(high_limit(), BulkheadConfig::default());
        b.iter(|| call(&mut svc));
    });
    g.bench_function("server_all_off", |b| {
        let mut svc = server(
            off(high_limit(), |c| c.enabled = false),
            off(BulkheadConfig::default(), |c| c.enabled = false),
        );
        b.iter(|| call(&mut svc));
    });
    g.bench_function("client_all_on", |b| {
        let mut svc = client(
            RetryConfig::default(),
            BulkheadConfig::default(),
            CircuitBreakerConfig::default(),
        );
        b.iter(|| call(&mut svc));
    });
    g.bench_function("client_all_off", |b| {
        let mut svc = client(
            off(RetryConfig::default(), |c| c.enabled = false),
            off(BulkheadConfig::default(), |c| c.enabled = false),
            off(CircuitBreakerConfig::default(), |c| c.enabled = false),
        );
        b.iter(|| call(&mut svc));
    });
    g.finish();
    let _ = Duration::ZERO;
}

/// `layer.layer(service)`, named for reading.
trait LayerOn<S>: tower::Layer<S> {
    fn layer_on(&self, inner: S) -> Self::Service {
        self.layer(inner)
    }
}

impl<S, L: tower::Layer<S>> LayerOn<S> for L {}

criterion_group!(layers, benches);
criterion_main!(layers);
