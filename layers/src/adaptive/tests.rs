//! The adaptive concurrency limit, through its layer and against simulated servers, on a
//! paused clock.

use std::{
    convert::Infallible,
    sync::{
        Arc, Barrier,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tonic::{Code, body::Body};
use tonic_types::StatusExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::{
    classify::{ClassifiedBody, GrpcClassifier},
    methods::Exempt,
    registry::Registry,
};

const PROBES: &str = "/grpc.health.v1.Health/";

fn fixed(limit: u32) -> AdaptiveConcurrencyConfig {
    AdaptiveConcurrencyConfig {
        initial_limit: limit,
        min_limit: limit,
        max_limit: limit,
        ..AdaptiveConcurrencyConfig::default()
    }
}

fn req(path: &str) -> Request<Body> {
    Request::builder()
        .uri(format!("http://x{path}"))
        .body(Body::empty())
        .unwrap()
}

fn code<B>(res: &Response<B>) -> Option<Code> {
    tonic::Status::from_header_map(res.headers()).map(|s| s.code())
}

#[tokio::test(start_paused = true)]
async fn a_call_beyond_the_limit_is_refused_at_once_with_retry_info_and_probes_pass() {
    let limiter = ConcurrencyLimiter::new("server", &fixed(2));
    let (release, gate) = tokio::sync::watch::channel(false);
    let svc = AdaptiveConcurrencyLayer::new(limiter.clone())
        .with_exempt(Exempt::prefixes([PROBES]))
        .layer(service_fn(move |_req: Request<Body>| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }
        }));
    let a = tokio::spawn(svc.clone().oneshot(req("/p.S/M")));
    let b = tokio::spawn(svc.clone().oneshot(req("/p.S/M")));
    tokio::task::yield_now().await;
    assert_eq!(limiter.in_flight(), 2);
    let refused = svc.clone().oneshot(req("/p.S/M")).await.unwrap();
    let status = tonic::Status::from_header_map(refused.headers()).unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()));
    // Probes pass at the limit, and hold no slot.
    let probe = tokio::spawn(svc.clone().oneshot(req("/grpc.health.v1.Health/Check")));
    tokio::task::yield_now().await;
    assert_eq!(limiter.in_flight(), 2);
    release.send(true).unwrap();
    for t in [a, b, probe] {
        assert_eq!(code(&t.await.unwrap().unwrap()), None);
    }
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(limiter.snapshot().rejected, 1);
}

/// What the handler of [`streaming`] sends, until it is dropped.
type Frames = mpsc::Sender<Result<Frame<Bytes>, tonic::Status>>;

/// The response of the layer over a handler answering [`Body`].
type Limited = Response<ClassifiedBody<Body, Recorder<GrpcClassifier>>>;

/// A limit of one slot over a server-streaming handler whose stream ends when its
/// [`Frames`] sender is dropped.
fn streaming() -> (
    ConcurrencyLimiter,
    impl tower::Service<Request<Body>, Response = Limited, Error = Infallible> + Clone,
    Frames,
) {
    let limiter = ConcurrencyLimiter::new("stream", &fixed(1));
    let (tx, rx) = mpsc::channel(4);
    let rx = Arc::new(std::sync::Mutex::new(Some(rx)));
    let svc = AdaptiveConcurrencyLayer::new(limiter.clone()).layer(service_fn(
        move |_req: Request<Body>| {
            let rx = rx.lock().unwrap().take().expect("one call");
            async move {
                let frames = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|frame| (frame, rx))
                });
                Ok::<_, Infallible>(Response::new(Body::new(StreamBody::new(frames))))
            }
        },
    ));
    (limiter, svc, tx)
}

#[tokio::test(start_paused = true)]
async fn a_stream_holds_its_slot_until_its_body_ends() {
    let (limiter, svc, tx) = streaming();
    let res = svc.clone().oneshot(req("/p.S/Watch")).await.unwrap();
    assert_eq!(
        limiter.in_flight(),
        1,
        "the head is sent but the stream goes on"
    );
    let second = svc.clone().oneshot(req("/p.S/Watch")).await.unwrap();
    assert_eq!(code(&second), Some(Code::ResourceExhausted));
    tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert_eq!(limiter.in_flight(), 1, "a frame is not the end");
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert_eq!(limiter.in_flight(), 0, "the trailers end it");
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_by_its_caller_gives_its_slot_back() {
    let (limiter, svc, _tx) = streaming();
    let res = svc.oneshot(req("/p.S/Watch")).await.unwrap();
    assert_eq!(limiter.in_flight(), 1);
    drop(res);
    assert_eq!(limiter.in_flight(), 0);
}

/// A layer over AIMD (limit 10) whose handler answers `answer` after 10 ms, called at the
/// limit (10 calls at once) `rounds` times; the limit after.
async fn answered_with(answer: Code, rounds: usize) -> u32 {
    let limiter = ConcurrencyLimiter::new(
        "dep",
        &AdaptiveConcurrencyConfig {
            algorithm: Algorithm::Aimd,
            initial_limit: 10,
            min_limit: 2,
            ..AdaptiveConcurrencyConfig::default()
        },
    );
    let svc = AdaptiveConcurrencyLayer::new(limiter.clone()).layer(service_fn(
        move |_req: Request<Body>| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, Infallible>(match answer {
                Code::Ok => {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    Response::new(Body::new(
                        http_body_util::Full::new(Bytes::new())
                            .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) }),
                    ))
                }
                code => tonic::Status::new(code, "answer").into_http(),
            })
        },
    ));
    for _ in 0..rounds {
        let calls: Vec<_> = (0..limiter.limit())
            .map(|_| tokio::spawn(svc.clone().oneshot(req("/p.S/M"))))
            .collect();
        for call in calls {
            let res = call.await.unwrap().unwrap();
            let _ = res.into_body().collect().await;
        }
    }
    limiter.limit()
}

#[tokio::test(start_paused = true)]
async fn successes_raise_the_limit_fast_errors_do_not_and_overload_answers_shrink_it() {
    assert!(
        answered_with(Code::Ok, 20).await > 10,
        "successes at the limit raise it"
    );
    // The trap: INTERNAL in 10 ms looks like a fast success; it must teach nothing.
    assert_eq!(answered_with(Code::Internal, 20).await, 10);
    assert_eq!(answered_with(Code::InvalidArgument, 20).await, 10);
    for overload in [
        Code::ResourceExhausted,
        Code::Unavailable,
        Code::DeadlineExceeded,
    ] {
        assert!(answered_with(overload, 3).await < 10, "{overload:?}");
    }
}

#[test]
fn concurrent_acquirers_never_exceed_the_limit() {
    const LIMIT: u32 = 3;
    let limiter = ConcurrencyLimiter::new("race", &fixed(LIMIT));
    let holding = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, holding, most, start) = (
                limiter.clone(),
                holding.clone(),
                most.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let mut admitted = 0;
                for _ in 0..20_000 {
                    if let Ok(slot) = limiter.try_acquire() {
                        admitted += 1;
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now.max(limiter.in_flight()), Ordering::SeqCst);
                        // Hold the slot long enough for the others to race for the rest.
                        std::thread::yield_now();
                        holding.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(admitted > 0);
    assert!(
        most.load(Ordering::SeqCst) <= LIMIT,
        "{} > {LIMIT}",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(limiter.in_flight(), 0);
}

/// The latency of a server of capacity `c` with `n` calls in flight: `BASE` up to `c`,
/// growing in proportion beyond (the calls queue).
const BASE: Duration = Duration::from_millis(10);

fn queued(n: usize, c: usize) -> Duration {
    BASE.mul_f64((n as f64 / c as f64).max(1.0))
}

/// Drives `limiter` at saturation (more callers than its limit, as under overload) for
/// `time` against a server whose capacity is `c` and which answers overload (drops) or
/// latency as `serve` says; the limits seen, one per round trip.
async fn saturate(
    limiter: &ConcurrencyLimiter,
    time: Duration,
    serve: impl Fn(usize) -> (Duration, usize),
) -> Vec<u32> {
    let end = tokio::time::Instant::now() + time;
    let mut limits = Vec::new();
    while tokio::time::Instant::now() < end {
        let mut slots = Vec::new();
        while let Ok(slot) = limiter.try_acquire() {
            slots.push(slot);
        }
        let n = slots.len();
        let (rtt, dropped) = serve(n);
        // The shed calls answer at once, first; the others after `rtt`.
        tokio::time::advance(Duration::from_millis(1)).await;
        for slot in slots.drain(..dropped) {
            slot.record(Duration::from_millis(1), true);
        }
        tokio::time::advance(rtt.saturating_sub(Duration::from_millis(1))).await;
        for slot in slots {
            slot.record(rtt, false);
        }
        limits.push(limiter.limit());
    }
    limits
}

fn band(limits: &[u32], last: usize) -> (u32, u32) {
    let tail = &limits[limits.len().saturating_sub(last)..];
    (*tail.iter().min().unwrap(), *tail.iter().max().unwrap())
}

fn gradient2() -> AdaptiveConcurrencyConfig {
    AdaptiveConcurrencyConfig {
        gradient2: Gradient2Config {
            window: Duration::from_millis(250),
            ..Gradient2Config::default()
        },
        ..AdaptiveConcurrencyConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn gradient2_converges_after_a_step_change_in_capacity() {
    // Gradient2 settles where latency is `rtt_tolerance` × the unqueued one, plus its probe:
    // at 1.5 C + 4 for this server. The band: between C and 2 C + 8.
    for (before, after) in [(50u32, 20u32), (20, 50)] {
        let limiter = ConcurrencyLimiter::new("dep", &gradient2());
        let limits = saturate(&limiter, Duration::from_secs(60), |n| {
            (queued(n, before as usize), 0)
        })
        .await;
        let (lo, hi) = band(&limits, 200);
        assert!(
            lo >= before && hi <= 2 * before + 8,
            "C={before}: {lo}..{hi}"
        );
        let limits = saturate(&limiter, Duration::from_secs(60), |n| {
            (queued(n, after as usize), 0)
        })
        .await;
        let (lo, hi) = band(&limits, 200);
        assert!(
            lo >= after && hi <= 2 * after + 8,
            "C {before}→{after}: {lo}..{hi}"
        );
        // And it stays there: no creep towards the ceiling under sustained load.
        let limits = saturate(&limiter, Duration::from_secs(120), |n| {
            (queued(n, after as usize), 0)
        })
        .await;
        let (lo, hi) = band(&limits, 200);
        assert!(
            lo >= after && hi <= 2 * after + 8,
            "C={after}, later: {lo}..{hi}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn aimd_converges_after_a_step_change_in_capacity() {
    // A server that sheds what it cannot take (RESOURCE_EXHAUSTED beyond C): AIMD's sawtooth
    // runs from 0.9 C to just above C.
    let config = AdaptiveConcurrencyConfig {
        algorithm: Algorithm::Aimd,
        ..AdaptiveConcurrencyConfig::default()
    };
    for (before, after) in [(50usize, 20usize), (20, 50)] {
        let limiter = ConcurrencyLimiter::new("dep", &config);
        let shed = |c: usize| move |n: usize| (BASE, n.saturating_sub(c));
        let limits = saturate(&limiter, Duration::from_secs(60), shed(before)).await;
        let (lo, hi) = band(&limits, 200);
        assert!(
            f64::from(lo) >= 0.8 * before as f64 && f64::from(hi) <= 1.2 * before as f64,
            "C={before}: {lo}..{hi}"
        );
        let limits = saturate(&limiter, Duration::from_secs(60), shed(after)).await;
        let (lo, hi) = band(&limits, 200);
        assert!(
            f64::from(lo) >= 0.8 * after as f64 && f64::from(hi) <= 1.2 * after as f64,
            "C {before}→{after}: {lo}..{hi}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_limit_never_goes_below_its_floor_under_sustained_overload() {
    for algorithm in [Algorithm::Gradient2, Algorithm::Aimd] {
        let limiter = ConcurrencyLimiter::new(
            "dep",
            &AdaptiveConcurrencyConfig {
                algorithm,
                min_limit: 5,
                ..gradient2()
            },
        );
        // Everything is shed, for minutes.
        let limits = saturate(&limiter, Duration::from_secs(120), |n| (BASE, n)).await;
        assert!(limits.iter().all(|l| *l >= 5), "{algorithm:?}");
        assert_eq!(limiter.limit(), 5, "{algorithm:?}: at the floor, not below");
        // The floor still admits calls, so recovery is seen.
        let limits = saturate(&limiter, Duration::from_secs(60), |n| (queued(n, 40), 0)).await;
        assert!(*limits.last().unwrap() > 20, "{algorithm:?}: recovered");
    }
}

#[tokio::test(start_paused = true)]
async fn measuring_the_latency_never_drops_the_limit_to_the_floor() {
    let limiter = ConcurrencyLimiter::new("dep", &gradient2());
    // From the first call on, the limit is the initial one or above: no measuring window.
    let limits = saturate(&limiter, Duration::from_secs(10), |n| (queued(n, 100), 0)).await;
    assert!(
        limits.iter().all(|l| *l >= DEFAULT_INITIAL_LIMIT),
        "{limits:?}"
    );
    let fast = limiter.snapshot().min_rtt_seconds.unwrap();
    assert!((fast - 0.010).abs() < 1e-6);
    // The dependency becomes three times slower, under light load (10 callers). The minimum
    // latency is refreshed within two periods, by ordinary calls; the limit never moves to
    // the floor meanwhile.
    let end = tokio::time::Instant::now() + Duration::from_secs(70);
    while tokio::time::Instant::now() < end {
        let slots: Vec<_> = (0..10).map_while(|_| limiter.try_acquire().ok()).collect();
        assert_eq!(slots.len(), 10, "light load is never refused");
        tokio::time::advance(BASE * 3).await;
        for slot in slots {
            slot.record(BASE * 3, false);
        }
        assert!(limiter.limit() > DEFAULT_MIN_LIMIT);
    }
    let refreshed = limiter.snapshot().min_rtt_seconds.unwrap();
    assert!((refreshed - 0.030).abs() < 1e-6, "{refreshed}");
}

#[test]
fn a_disabled_limit_counts_calls_but_never_refuses_nor_moves() {
    let limiter = ConcurrencyLimiter::new(
        "off",
        &AdaptiveConcurrencyConfig {
            enabled: false,
            ..fixed(1)
        },
    );
    let slots: Vec<_> = (0..50).map(|_| limiter.try_acquire().unwrap()).collect();
    assert_eq!(limiter.in_flight(), 50);
    for slot in slots {
        slot.record(Duration::from_millis(1), true);
    }
    assert_eq!(limiter.limit(), 1);
    assert_eq!(limiter.snapshot().limit, 0, "0: unbounded");
}

/// An algorithm that asks for whatever it was built with.
#[derive(Debug)]
struct Asks(f64);

impl LimitAlgorithm for Asks {
    fn name(&self) -> &'static str {
        "asks"
    }

    fn update(&mut self, _limit: f64, _sample: &Sample) -> f64 {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn the_floor_and_ceiling_hold_whatever_the_algorithm_asks() {
    let config = AdaptiveConcurrencyConfig {
        initial_limit: 10,
        min_limit: 5,
        max_limit: 50,
        ..AdaptiveConcurrencyConfig::default()
    };
    for (asks, gets) in [(0.0, 5), (-3.0, 5), (1e9, 50), (f64::NAN, 10), (7.9, 7)] {
        let limiter = ConcurrencyLimiter::with_algorithm("dep", &config, Asks(asks));
        limiter
            .try_acquire()
            .unwrap()
            .record(Duration::from_millis(10), false);
        assert_eq!(limiter.limit(), gets, "asked {asks}");
    }
}

/// Only compiles if the layer, stacked as a client would stack it (beside the bulkhead,
/// above the breaker), is something a tonic client can call through.
fn tonic_can_call_through<T>(_: &T)
where
    T: tonic::client::GrpcService<Body>,
{
}

#[test]
fn the_layer_stacks_into_a_tonic_client_transport() {
    let stack = tower::ServiceBuilder::new()
        .layer(crate::bulkhead::BulkheadLayer::new(
            crate::bulkhead::Bulkhead::new("dep", crate::bulkhead::BulkheadConfig::default()),
        ))
        .layer(AdaptiveConcurrencyLayer::new(ConcurrencyLimiter::new(
            "dep",
            &AdaptiveConcurrencyConfig::default(),
        )))
        .layer(crate::circuit_breaker::CircuitBreakerLayer::new(
            crate::circuit_breaker::Breaker::new("dep", Default::default()),
        ))
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    tonic_can_call_through(&stack);
}

#[test]
fn a_registered_limit_is_described_with_its_latencies() {
    let registry = Registry::default();
    let limiter = ConcurrencyLimiter::new("notifier/server", &AdaptiveConcurrencyConfig::default());
    registry.adaptive_concurrency("notifier/server", &limiter);
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.adaptive_concurrency.len(), 1);
    assert_eq!(snapshot.adaptive_concurrency[0].algorithm, "gradient2");
    assert_eq!(
        snapshot.adaptive_concurrency[0].limit,
        DEFAULT_INITIAL_LIMIT
    );
    let families = registry.families();
    for name in [
        "phantom_adaptive_concurrency_limit",
        "phantom_adaptive_concurrency_in_flight",
        "phantom_adaptive_concurrency_rejected_total",
    ] {
        assert!(families.0.contains_key(name), "{name}");
    }
}
