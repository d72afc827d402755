use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::{Code, body::Body};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::backoff::{Backoff, Strategy};

/// What the scripted server received: body, `grpc-timeout`, arrival time.
type Seen = (Bytes, Option<String>, tokio::time::Instant);

/// A server that answers each attempt from a script and records what it received.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<Vec<Response<Body>>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn new(answers: Vec<Response<Body>>) -> Self {
        Self {
            answers: Arc::new(Mutex::new(answers.into_iter().rev().collect())),
            seen: Arc::default(),
        }
    }

    fn service(
        &self,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let this = this.clone();
            async move {
                let timeout = req
                    .headers()
                    .get("grpc-timeout")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                this.seen
                    .lock()
                    .unwrap()
                    .push((body, timeout, tokio::time::Instant::now()));
                let answer = this
                    .answers
                    .lock()
                    .unwrap()
                    .pop()
                    .unwrap_or_else(|| status(Code::Ok));
                Ok::<_, Infallible>(answer)
            }
        })
    }

    fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2).map(|w| w[1].2 - w[0].2).collect()
    }
}

fn status(code: Code) -> Response<Body> {
    tonic::Status::new(code, "scripted").into_http()
}

fn with_retry_info(code: Code, after: Duration) -> Response<Body> {
    tonic::Status::with_error_details(
        code,
        "slow down",
        ErrorDetails::with_retry_info(Some(after)),
    )
    .into_http()
}

fn config() -> RetryConfig {
    RetryConfig {
        max_attempts: 4,
        backoff: Backoff {
            strategy: Strategy::Exponential,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
        },
        idempotent_methods: vec!["/pkg.Svc/Get".into(), "/pkg.Reads/*".into()],
        ..RetryConfig::default()
    }
}

fn request(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://x{path}"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

async fn send(policy: &RetryPolicy, script: &Script, req: Request<Full<Bytes>>) -> Code {
    let svc = RetryLayer::new(policy.clone()).layer(script.service());
    let res = svc.oneshot(req).await.unwrap();
    crate::classify::code_in_headers(res.headers()).unwrap_or(Code::Ok)
}

#[tokio::test(start_paused = true)]
async fn retries_retryable_failures_of_idempotent_methods_with_backoff() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![
        status(Code::Unavailable),
        status(Code::DeadlineExceeded),
    ]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Get")).await,
        Code::Ok
    );
    assert_eq!(script.attempts(), 3);
    assert_eq!(
        script.gaps(),
        vec![Duration::from_millis(100), Duration::from_millis(200)]
    );
    assert!(
        script
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|(b, _, _)| b == "payload"),
        "the body is replayed"
    );
    assert_eq!(policy.snapshot().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn never_retries_methods_not_marked_idempotent() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![status(Code::Unavailable)]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Create")).await,
        Code::Unavailable
    );
    assert_eq!(script.attempts(), 1);
    let script = Script::new(vec![status(Code::Unavailable)]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Reads/List")).await,
        Code::Ok,
        "wildcard"
    );
}

#[tokio::test(start_paused = true)]
async fn never_retries_what_the_table_calls_final() {
    let policy = RetryPolicy::new("dep", config());
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::Internal,
        Code::PermissionDenied,
    ] {
        let script = Script::new(vec![status(code)]);
        assert_eq!(send(&policy, &script, request("/pkg.Svc/Get")).await, code);
        assert_eq!(script.attempts(), 1, "{code:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn waits_as_long_as_the_servers_retry_info_says() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![with_retry_info(
        Code::ResourceExhausted,
        Duration::from_millis(2500),
    )]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Get")).await,
        Code::Ok
    );
    assert_eq!(script.gaps(), vec![Duration::from_millis(2500)]);
    assert_eq!(policy.snapshot().server_pushbacks, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_header_sets_the_delay_and_a_negative_one_forbids_retrying() {
    let policy = RetryPolicy::new("dep", config());
    let mut pushed = status(Code::Unavailable);
    pushed
        .headers_mut()
        .insert("grpc-retry-pushback-ms", "700".parse().unwrap());
    let script = Script::new(vec![pushed]);
    send(&policy, &script, request("/pkg.Svc/Get")).await;
    assert_eq!(script.gaps(), vec![Duration::from_millis(700)]);

    let mut refused = status(Code::Unavailable);
    refused
        .headers_mut()
        .insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
    let script = Script::new(vec![refused]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Get")).await,
        Code::Unavailable
    );
    assert_eq!(script.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn never_waits_past_the_calls_deadline_and_gives_each_attempt_only_what_is_left() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![
        status(Code::Unavailable),
        with_retry_info(Code::Unavailable, Duration::from_secs(5)),
    ]);
    let mut req = request("/pkg.Svc/Get");
    req.headers_mut()
        .insert("grpc-timeout", "1S".parse().unwrap());
    let started = tokio::time::Instant::now();
    assert_eq!(send(&policy, &script, req).await, Code::Unavailable);
    assert_eq!(script.attempts(), 2);
    assert!(started.elapsed() < Duration::from_secs(1));
    let timeouts: Vec<_> = script
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| crate::deadline::parse(s.1.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        timeouts,
        vec![Duration::from_secs(1), Duration::from_millis(900)]
    );
    assert_eq!(policy.snapshot().deadline_stops, 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retry_storms() {
    let policy = RetryPolicy::new(
        "dep",
        RetryConfig {
            budget: BudgetConfig {
                ttl: Duration::from_secs(10),
                min_per_sec: 1,
                retry_ratio: 0.0,
            },
            ..config()
        },
    );
    let mut attempts = 0;
    for _ in 0..20 {
        let script = Script::new((0..4).map(|_| status(Code::Unavailable)).collect());
        send(&policy, &script, request("/pkg.Svc/Get")).await;
        attempts += script.attempts();
    }
    let s = policy.snapshot();
    // 20 calls, and retries capped by the floor of the budget, not 20 × 3.
    assert!(s.retries <= 10, "{s:?}");
    assert_eq!(attempts as u64, 20 + s.retries);
    assert!(s.budget_exhausted > 0);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new((0..10).map(|_| status(Code::Unavailable)).collect());
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Get")).await,
        Code::Unavailable
    );
    assert_eq!(script.attempts(), 4);
    assert_eq!(policy.snapshot().gave_up, 1);
}

#[test]
fn configuration_mistakes_are_named() {
    let bad = RetryConfig {
        idempotent_methods: vec!["Get".into()],
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("idempotent_methods"));
    assert!(
        RetryConfig {
            max_attempts: 0,
            ..config()
        }
        .validate()
        .is_err()
    );
}
