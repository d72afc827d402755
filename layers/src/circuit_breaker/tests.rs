use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use tonic::{Code, body::Body};
use tonic_types::StatusExt;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::classify::{Classify, GrpcClassifier, Outcome};

fn verdict(code: Code) -> crate::classify::Verdict {
    GrpcClassifier.classify(Outcome::Status(code))
}

fn count_config(size: u32, minimum_calls: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: WindowConfig::Count { size },
        minimum_calls,
        failure_rate_threshold: 0.5,
        open_duration: Duration::from_secs(10),
        half_open_permits: 2,
        success_threshold: 2,
        ..CircuitBreakerConfig::default()
    }
}

fn call(b: &Breaker, code: Code) {
    b.try_acquire().expect("admitted").record(verdict(code));
}

#[tokio::test(start_paused = true)]
async fn opens_when_the_failure_rate_reaches_the_threshold_after_minimum_calls() {
    let b = Breaker::new("dep", count_config(10, 4));
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    assert_eq!(b.state(), State::Closed, "3 calls < minimum_calls");
    call(&b, Code::Ok);
    assert_eq!(b.state(), State::Open, "2 of 4 failed = 50%");
    let err = b.try_acquire().unwrap_err();
    assert_eq!(err.state, State::Open);
    assert_eq!(err.retry_after, Some(Duration::from_secs(10)));
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_the_threshold_as_the_window_slides() {
    let b = Breaker::new("dep", count_config(4, 4));
    for code in [
        Code::Unavailable,
        Code::Ok,
        Code::Ok,
        Code::Ok,
        Code::Unavailable,
        Code::Ok,
        Code::Ok,
    ] {
        call(&b, code);
    }
    assert_eq!(b.state(), State::Closed);
    let s = b.snapshot();
    assert_eq!(s.window_calls, 4);
    assert!((s.failure_rate - 0.25).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn the_callers_own_mistakes_never_count_as_failures() {
    let b = Breaker::new("dep", count_config(10, 2));
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::PermissionDenied,
        Code::FailedPrecondition,
    ] {
        for _ in 0..5 {
            call(&b, code);
        }
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn opens_on_the_slow_call_rate() {
    let b = Breaker::new(
        "dep",
        CircuitBreakerConfig {
            slow_call_duration: Duration::from_millis(100),
            slow_call_rate_threshold: 0.5,
            ..count_config(4, 2)
        },
    );
    for _ in 0..2 {
        let permit = b.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(150)).await;
        permit.record(verdict(Code::Ok));
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.snapshot().slow_calls, 2);
}

#[tokio::test(start_paused = true)]
async fn the_seeds_simple_form_opens_after_consecutive_failures() {
    let b = Breaker::new(
        "dep",
        CircuitBreakerConfig::consecutive(3, Duration::from_secs(60), 2),
    );
    for _ in 0..10 {
        call(&b, Code::Ok);
    }
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    call(&b, Code::Ok); // the run restarts
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    assert_eq!(b.state(), State::Closed);
    call(&b, Code::DeadlineExceeded);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_a_bounded_number_of_probes_and_rejects_the_rest() {
    let b = Breaker::new("dep", count_config(2, 2));
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    assert_eq!(b.state(), State::Open);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(1))
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(b.state(), State::HalfOpen);

    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.state, State::HalfOpen);
    p1.record(verdict(Code::Ok));
    assert_eq!(b.state(), State::HalfOpen, "one success of two needed");
    p2.record(verdict(Code::Ok));
    assert_eq!(b.state(), State::Closed);
    let s = b.snapshot();
    assert_eq!(
        (s.times_opened, s.times_half_opened, s.times_closed),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let b = Breaker::new("dep", count_config(2, 2));
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = b.try_acquire().unwrap();
    probe.record(verdict(Code::Internal));
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Some(Duration::from_secs(10))
    );
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_gives_its_slot_back() {
    let b = Breaker::new(
        "dep",
        CircuitBreakerConfig {
            half_open_permits: 1,
            ..count_config(2, 2)
        },
    );
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    tokio::time::advance(Duration::from_secs(10)).await;
    drop(b.try_acquire().unwrap());
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_admitted_before_a_transition_do_not_count_after_it() {
    let b = Breaker::new("dep", count_config(2, 2));
    let late = b.try_acquire().unwrap();
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.state(), State::HalfOpen);
    late.record(verdict(Code::Unavailable));
    assert_eq!(
        b.state(),
        State::HalfOpen,
        "a stale failure does not reopen"
    );
}

#[tokio::test(start_paused = true)]
async fn operators_can_force_it_open_disable_it_and_reset_it() {
    let b = Breaker::new("dep", count_config(2, 2));
    b.force_open();
    let err = b.try_acquire().unwrap_err();
    assert_eq!((err.state, err.retry_after), (State::ForcedOpen, None));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        b.state(),
        State::ForcedOpen,
        "only an operator leaves FORCED_OPEN"
    );
    b.disable();
    for _ in 0..10 {
        call(&b, Code::Unavailable);
    }
    assert_eq!(b.state(), State::Disabled);
    b.reset();
    assert_eq!(b.state(), State::Closed);
    let off = Breaker::new(
        "off",
        CircuitBreakerConfig {
            enabled: false,
            ..count_config(2, 2)
        },
    );
    assert_eq!(off.state(), State::Disabled);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_old_failures() {
    let b = Breaker::new(
        "dep",
        CircuitBreakerConfig {
            window: WindowConfig::Time {
                duration: Duration::from_secs(10),
            },
            ..count_config(0, 3)
        },
    );
    call(&b, Code::Unavailable);
    call(&b, Code::Unavailable);
    tokio::time::advance(Duration::from_secs(11)).await;
    call(&b, Code::Ok);
    call(&b, Code::Ok);
    call(&b, Code::Unavailable);
    assert_eq!(b.state(), State::Closed, "1 of 3 in the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_at_once_keep_the_counts_exact() {
    let b = Breaker::new(
        "dep",
        CircuitBreakerConfig {
            window: WindowConfig::Count { size: 1000 },
            // Never judged: the subject is the counting. Which tasks a loaded machine runs
            // first is up to its scheduler, and a window of the failing ones alone must not
            // open the breaker under the test (it did).
            ..count_config(1000, u32::MAX)
        },
    );
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    let code = if i % 4 == 0 {
                        Code::Unavailable
                    } else {
                        Code::Ok
                    };
                    b.try_acquire().unwrap().record(verdict(code));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = b.snapshot();
    assert_eq!((s.calls, s.failures), (6400, 1600));
    assert_eq!(s.window_calls, 1000);
}

// Through the tower layer, with real gRPC responses.

fn grpc_response(code: Code, in_trailers: bool) -> Response<Body> {
    if !in_trailers {
        return tonic::Status::new(code, "x").into_http();
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", (code as i32).to_string().parse().unwrap());
    let frames = vec![
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    Response::new(Body::new(StreamBody::new(futures::stream::iter(frames))))
}

#[tokio::test(start_paused = true)]
async fn the_layer_reads_codes_from_headers_and_trailers_and_rejects_with_retry_info() {
    let b = Breaker::new("analyzer", count_config(4, 4));
    let svc =
        CircuitBreakerLayer::new(b.clone()).layer(service_fn(|req: Request<()>| async move {
            let code = *req.extensions().get::<Code>().unwrap();
            let in_trailers = req.headers().contains_key("trailers");
            Ok::<_, Infallible>(grpc_response(code, in_trailers))
        }));
    let send = |code: Code, trailers: bool| {
        let mut req = Request::new(());
        req.extensions_mut().insert(code);
        if trailers {
            req.headers_mut().insert("trailers", "1".parse().unwrap());
        }
        svc.clone().oneshot(req)
    };
    // Trailers-only errors count at once; normal responses when their body ends.
    send(Code::Unavailable, false).await.unwrap();
    let res = send(Code::Internal, true).await.unwrap();
    assert_eq!(b.snapshot().failures, 1, "not counted before the body ends");
    res.into_body().collect().await.unwrap();
    assert_eq!(b.snapshot().failures, 2);
    send(Code::Ok, true)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    send(Code::Ok, true)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(b.state(), State::Open);

    tokio::time::advance(Duration::from_secs(4)).await;
    let rejected = send(Code::Ok, false).await.unwrap();
    let status = tonic::Status::from_header_map(rejected.headers()).expect("a gRPC status");
    assert_eq!(status.code(), Code::Unavailable);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(
        retry.retry_delay,
        Some(Duration::from_secs(6)),
        "the time left open"
    );
}
