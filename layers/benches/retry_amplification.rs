//! Retry amplification (attempts per call) against a dependency that fails half of its
//! attempts with `UNAVAILABLE`, with the gRFC A6 throttle on and off, in the same run; then
//! the cost per call of each. A last pair of lines, at 5% failures, shows the throttle
//! letting retries through while the dependency is mostly healthy.
//!
//! `cargo bench -p phantom-layers --bench retry_amplification`. The figures are printed
//! before criterion's timings. The retry budget is set out of the way (a floor of a million
//! retries per second) so that the throttle alone is compared; one more line shows the
//! shipped defaults, budget included. Backoff is zero and the tokio clock paused, so no time
//! is spent waiting.

use std::{
    convert::Infallible,
    hint::black_box,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use phantom_layers::{
    backoff::{Backoff, Strategy},
    retry::{BudgetConfig, RetryConfig, RetryLayer, RetryPolicy},
};
use tonic::{Code, body::Body};
use tower::{Layer, Service, ServiceExt, service_fn};

const CALLS: u64 = 100_000;
const METHOD: &str = "/phantom.v1.VulnAnalyzer/ScoreCvss";

/// A dependency failing each attempt with probability `p`, counting attempts.
fn flaky(
    attempts: Arc<AtomicU64>,
    seed: u64,
    p: f64,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
    service_fn(move |_req: Request<Full<Bytes>>| {
        attempts.fetch_add(1, Ordering::Relaxed);
        let fail = rng.lock().unwrap().f64() < p;
        let code = if fail { Code::Unavailable } else { Code::Ok };
        futures::future::ready(Ok::<_, Infallible>(
            tonic::Status::new(code, "").into_http(),
        ))
    })
}

fn request() -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://x{METHOD}"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

fn config(throttle: bool, budget_out_of_the_way: bool) -> RetryConfig {
    let defaults = RetryConfig::default();
    RetryConfig {
        max_attempts: 3,
        backoff: Backoff {
            strategy: Strategy::Fixed,
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
        },
        idempotent_methods: vec![METHOD.into()],
        budget: if budget_out_of_the_way {
            BudgetConfig {
                min_per_sec: 1_000_000,
                retry_ratio: 1000.0,
                ..BudgetConfig::default()
            }
        } else {
            defaults.budget
        },
        throttling: if throttle { defaults.throttling } else { None },
        ..defaults
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Attempts per call over [`CALLS`] calls to a dependency failing a share `p` of attempts,
/// and the share of calls that failed in the end.
fn amplification(config: RetryConfig, p: f64) -> (f64, f64, RetryPolicy) {
    let rt = runtime();
    let attempts = Arc::new(AtomicU64::new(0));
    let policy = RetryPolicy::new("bench", config);
    let mut svc = RetryLayer::new(policy.clone()).layer(flaky(attempts.clone(), 7, p));
    let failed = rt.block_on(async {
        let mut failed = 0u64;
        for _ in 0..CALLS {
            let res = svc.ready().await.unwrap().call(request()).await.unwrap();
            if res.headers().get("grpc-status").is_some_and(|v| v != "0") {
                failed += 1;
            }
        }
        failed
    });
    let a = attempts.load(Ordering::Relaxed) as f64 / CALLS as f64;
    (a, failed as f64 / CALLS as f64, policy)
}

fn benches(c: &mut Criterion) {
    println!("retry amplification, {CALLS} calls, attempts fail UNAVAILABLE, max_attempts 3:");
    for (p, label, cfg) in [
        (
            0.5,
            "throttle off, budget out of the way",
            config(false, true),
        ),
        (
            0.5,
            "throttle on (100, 0.1: the default), budget out of the way",
            config(true, true),
        ),
        (
            0.5,
            "throttle on (100, 0.1: the default), default budget",
            config(true, false),
        ),
        (
            0.05,
            "throttle off, budget out of the way",
            config(false, true),
        ),
        (
            0.05,
            "throttle on (100, 0.1: the default), budget out of the way",
            config(true, true),
        ),
    ] {
        let (amp, failed, policy) = amplification(cfg, p);
        let s = policy.snapshot();
        println!(
            "  {:>3}% failing, {label:<46} attempts/call {amp:.3}  calls failed {:.1}%  retries {}  \
             throttled {}  budget refusals {}  tokens at end {:?}",
            p * 100.0,
            failed * 100.0,
            s.retries,
            s.throttled,
            s.budget_exhausted,
            s.throttle_tokens,
        );
    }

    let mut g = c.benchmark_group("retry_half_failing");
    for (name, throttle) in [("throttle_off", false), ("throttle_on", true)] {
        g.bench_function(name, |b| {
            let rt = runtime();
            let attempts = Arc::new(AtomicU64::new(0));
            let mut svc = RetryLayer::new(RetryPolicy::new("bench", config(throttle, true)))
                .layer(flaky(attempts, 11, 0.5));
            b.iter(|| {
                rt.block_on(async {
                    black_box(svc.ready().await.unwrap().call(request()).await.unwrap())
                })
            });
        });
    }
    g.finish();
}

criterion_group!(retry_amplification, benches);
criterion_main!(retry_amplification);
