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

/// What an attempt carried: `grpc-previous-rpc-attempts` and the shared tried endpoints.
type Carried = (Option<String>, Option<TriedEndpoints>);

/// A server that answers each attempt from a script and records what it received.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<Vec<Response<Body>>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Each attempt's `grpc-previous-rpc-attempts` and shared tried endpoints.
    attempts: Arc<Mutex<Vec<Carried>>>,
}

impl Script {
    fn new(answers: Vec<Response<Body>>) -> Self {
        Self {
            answers: Arc::new(Mutex::new(answers.into_iter().rev().collect())),
            ..Self::default()
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
                let previous = req
                    .headers()
                    .get(PREVIOUS_ATTEMPTS)
                    .map(|v| v.to_str().unwrap().to_owned());
                let tried = req.extensions().get::<TriedEndpoints>().cloned();
                if let Some(t) = &tried {
                    // What a load balancer does: record where this attempt goes.
                    let n = t.tried().len();
                    t.record(format!("10.0.0.{n}:50051"));
                }
                this.attempts.lock().unwrap().push((previous, tried));
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
            // The budget alone is under test here.
            throttling: None,
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

#[tokio::test(start_paused = true)]
async fn retries_carry_the_number_of_attempts_before_them() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![status(Code::Unavailable), status(Code::Unavailable)]);
    send(&policy, &script, request("/pkg.Svc/Get")).await;
    let previous: Vec<_> = script
        .attempts
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.0.clone())
        .collect();
    assert_eq!(previous, vec![None, Some("1".into()), Some("2".into())]);
}

#[tokio::test(start_paused = true)]
async fn attempts_of_one_call_share_the_endpoints_tried() {
    let policy = RetryPolicy::new("dep", config());
    let script = Script::new(vec![status(Code::Unavailable), status(Code::Unavailable)]);
    send(&policy, &script, request("/pkg.Svc/Get")).await;
    send(&policy, &script, request("/pkg.Svc/Get")).await;
    let attempts = script.attempts.lock().unwrap();
    let tried: Vec<TriedEndpoints> = attempts.iter().map(|a| a.1.clone().unwrap()).collect();
    assert_eq!(tried.len(), 4);
    assert!(tried[0].same_call(&tried[1]) && tried[0].same_call(&tried[2]));
    assert!(
        !tried[0].same_call(&tried[3]),
        "another call, another value"
    );
    assert_eq!(
        tried[0].tried(),
        vec!["10.0.0.0:50051", "10.0.0.1:50051", "10.0.0.2:50051"]
    );
    assert!(tried[0].contains("10.0.0.1:50051"));
    assert_eq!(tried[3].tried().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_throttle_stops_retries_at_half_its_tokens_and_successes_restart_them() {
    let policy = RetryPolicy::new(
        "dep",
        RetryConfig {
            throttling: Some(ThrottlingConfig {
                max_tokens: 10,
                token_ratio: 0.5,
            }),
            ..config()
        },
    );
    let tokens = |p: &RetryPolicy| p.snapshot().throttle_tokens.unwrap();
    let failing = || Script::new((0..10).map(|_| status(Code::Unavailable)).collect());
    // 10 → 6: four failed attempts, three retries allowed (9, 8, 7 > 5).
    let script = failing();
    send(&policy, &script, request("/pkg.Svc/Get")).await;
    assert_eq!(script.attempts(), 4);
    assert!((tokens(&policy) - 6.0).abs() < 1e-9);
    // From 5 down, no retry: one attempt per call.
    for _ in 0..4 {
        let script = failing();
        assert_eq!(
            send(&policy, &script, request("/pkg.Svc/Get")).await,
            Code::Unavailable
        );
        assert_eq!(script.attempts(), 1);
    }
    assert!((tokens(&policy) - 2.0).abs() < 1e-9);
    assert_eq!(policy.snapshot().throttled, 4);
    // Ten successes give back 5 tokens: 7, and a failure leaves 6, above half.
    for _ in 0..10 {
        send(&policy, &Script::new(Vec::new()), request("/pkg.Svc/Get")).await;
    }
    assert!((tokens(&policy) - 7.0).abs() < 1e-9);
    let script = Script::new(vec![status(Code::Unavailable)]);
    assert_eq!(
        send(&policy, &script, request("/pkg.Svc/Get")).await,
        Code::Ok
    );
    assert_eq!(script.attempts(), 2, "retrying again");
    let s = policy.snapshot();
    assert_eq!((s.retries, s.throttled), (4, 4));
}

#[test]
fn retry_configuration_mistakes_of_a6_are_named() {
    let bad = RetryConfig {
        retryable_codes: vec!["INTERNAL".into()],
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("retryable_codes"));
    let bad = RetryConfig {
        retryable_codes: vec!["UNAVAILABLE".into(), "BROKEN".into()],
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("\"BROKEN\""));
    let bad = RetryConfig {
        throttling: Some(ThrottlingConfig {
            max_tokens: 0,
            token_ratio: 0.1,
        }),
        ..config()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .contains("throttling.max_tokens")
    );
    let bad = RetryConfig {
        hedging: HedgingConfig {
            max_attempts: 6,
            ..HedgingConfig::default()
        },
        ..config()
    };
    assert!(bad.validate().unwrap_err().contains("hedging.max_attempts"));
}

mod hedging {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the attempts whose future was dropped before it answered.
    struct DropGuard(Option<Arc<AtomicUsize>>);

    impl Drop for DropGuard {
        fn drop(&mut self) {
            if let Some(dropped) = self.0.take() {
                dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// A server whose attempt `n` answers `plan[n]` after its delay, with `x-attempt: n`.
    #[derive(Clone)]
    struct Replicas {
        plan: Arc<Vec<(Duration, Code)>>,
        sent: Arc<Mutex<Vec<(u32, tokio::time::Instant)>>>,
        dropped: Arc<AtomicUsize>,
    }

    impl Replicas {
        fn new(plan: Vec<(Duration, Code)>) -> Self {
            Self {
                plan: Arc::new(plan),
                sent: Arc::default(),
                dropped: Arc::default(),
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
                    let n: u32 = req
                        .headers()
                        .get(PREVIOUS_ATTEMPTS)
                        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
                    this.sent
                        .lock()
                        .unwrap()
                        .push((n, tokio::time::Instant::now()));
                    let (after, code) = this.plan[n as usize];
                    let mut guard = DropGuard(Some(this.dropped.clone()));
                    tokio::time::sleep(after).await;
                    guard.0 = None;
                    let mut res = status(code);
                    res.headers_mut().insert("x-attempt", n.into());
                    Ok::<_, Infallible>(res)
                }
            })
        }

        fn sent_at(&self) -> Vec<(u32, Duration)> {
            let sent = self.sent.lock().unwrap();
            let t0 = sent[0].1;
            sent.iter().map(|(n, t)| (*n, *t - t0)).collect()
        }
    }

    fn hedged() -> RetryConfig {
        RetryConfig {
            hedging: HedgingConfig {
                enabled: true,
                max_attempts: 3,
                delay: Duration::from_millis(100),
                non_fatal_codes: vec!["UNAVAILABLE".into()],
                methods: vec!["/pkg.Svc/Get".into()],
            },
            ..config()
        }
    }

    async fn hedge(policy: &RetryPolicy, replicas: &Replicas) -> (Code, u32) {
        let svc = HedgeLayer::new(policy.clone()).layer(replicas.service());
        let res = svc.oneshot(request("/pkg.Svc/Get")).await.unwrap();
        let n = res.headers()["x-attempt"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (
            crate::classify::code_in_headers(res.headers()).unwrap_or(Code::Ok),
            n,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_hedge_beats_a_slow_first_attempt_which_is_cancelled() {
        let policy = RetryPolicy::new("dep", hedged());
        let replicas = Replicas::new(vec![
            (Duration::from_secs(1), Code::Ok),
            (Duration::ZERO, Code::Ok),
        ]);
        let started = tokio::time::Instant::now();
        assert_eq!(hedge(&policy, &replicas).await, (Code::Ok, 1));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(
            replicas.sent_at(),
            vec![(0, Duration::ZERO), (1, Duration::from_millis(100))]
        );
        assert_eq!(replicas.dropped.load(Ordering::SeqCst), 1, "the loser");
        let h = policy.snapshot().hedging;
        assert_eq!((h.calls, h.sent, h.won, h.cancelled), (1, 1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fatal_answer_ends_the_call_and_no_more_hedges_go() {
        let policy = RetryPolicy::new("dep", hedged());
        let replicas = Replicas::new(vec![
            (Duration::from_millis(150), Code::Internal),
            (Duration::from_secs(1), Code::Ok),
            (Duration::ZERO, Code::Ok),
        ]);
        assert_eq!(hedge(&policy, &replicas).await, (Code::Internal, 0));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(replicas.sent_at().len(), 2, "no third attempt at 200ms");
        assert_eq!(replicas.dropped.load(Ordering::SeqCst), 1);
        let h = policy.snapshot().hedging;
        assert_eq!((h.sent, h.won, h.cancelled), (1, 0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_fatal_answer_sends_the_next_hedge_at_once() {
        let policy = RetryPolicy::new("dep", hedged());
        let replicas = Replicas::new(vec![
            (Duration::from_millis(10), Code::Unavailable),
            (Duration::from_millis(10), Code::Ok),
        ]);
        assert_eq!(hedge(&policy, &replicas).await, (Code::Ok, 1));
        assert_eq!(
            replicas.sent_at(),
            vec![(0, Duration::ZERO), (1, Duration::from_millis(10))]
        );
        assert_eq!(replicas.dropped.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_draw_on_the_retry_throttle() {
        let policy = RetryPolicy::new("dep", hedged());
        let throttle = policy.throttle().unwrap().clone();
        // Down to half the bucket: no more attempts beyond the first.
        while throttle.allows() {
            throttle.on_failure();
        }
        let replicas = Replicas::new(vec![
            (Duration::from_secs(1), Code::Ok),
            (Duration::ZERO, Code::Ok),
        ]);
        assert_eq!(hedge(&policy, &replicas).await, (Code::Ok, 0));
        assert_eq!(replicas.sent_at().len(), 1);
        assert_eq!(policy.snapshot().hedging.throttled, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_hedge_goes_after_the_deadline() {
        let policy = RetryPolicy::new("dep", hedged());
        let replicas = Replicas::new(vec![
            (Duration::from_secs(1), Code::Ok),
            (Duration::from_secs(1), Code::Ok),
            (Duration::ZERO, Code::Ok),
        ]);
        let mut req = request("/pkg.Svc/Get");
        req.headers_mut()
            .insert("grpc-timeout", "150m".parse().unwrap());
        let svc = HedgeLayer::new(policy.clone()).layer(replicas.service());
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-attempt"], "0");
        assert_eq!(
            replicas.sent_at(),
            vec![(0, Duration::ZERO), (1, Duration::from_millis(100))],
            "none at 200ms, past the 150ms deadline"
        );
        let h = policy.snapshot().hedging;
        assert_eq!((h.sent, h.deadline_stops), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn hedged_methods_are_not_retried() {
        let policy = RetryPolicy::new("dep", hedged());
        let script = Script::new(vec![status(Code::Unavailable)]);
        assert_eq!(
            send(&policy, &script, request("/pkg.Svc/Get")).await,
            Code::Unavailable
        );
        assert_eq!(script.attempts(), 1);
    }
}

mod service_config {
    use super::*;

    const JSON: &str = r#"{
        "methodConfig": [
            {
                "name": [{"service": "phantom.v1.VulnAnalyzer", "method": "ScoreCvss"},
                         {"service": "phantom.v1.Reads"}],
                "timeout": "5s",
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
                }
            },
            {
                "name": [{"service": "phantom.v1.VulnAnalyzer", "method": "GetFinding"}],
                "hedgingPolicy": {
                    "maxAttempts": 3,
                    "hedgingDelay": "0.05s",
                    "nonFatalStatusCodes": ["UNAVAILABLE"]
                }
            }
        ],
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
    }"#;

    #[test]
    fn reads_a_grpc_service_config_and_writes_it_back() {
        let c = RetryConfig::from_service_config(JSON).unwrap();
        assert!(c.enabled);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.backoff.strategy, Strategy::FullJitter);
        assert_eq!(c.backoff.initial, Duration::from_millis(100));
        assert_eq!(c.backoff.max, Duration::from_secs(1));
        assert_eq!(c.retryable_codes, vec!["UNAVAILABLE", "RESOURCE_EXHAUSTED"]);
        assert_eq!(
            c.idempotent_methods,
            vec![
                "/phantom.v1.VulnAnalyzer/ScoreCvss",
                "/phantom.v1.Reads/*",
                "/phantom.v1.VulnAnalyzer/GetFinding"
            ]
        );
        assert!(c.hedging.enabled);
        assert_eq!(
            c.hedging.methods,
            vec!["/phantom.v1.VulnAnalyzer/GetFinding"]
        );
        assert_eq!(c.hedging.delay, Duration::from_millis(50));
        assert_eq!(
            c.throttling,
            Some(ThrottlingConfig {
                max_tokens: 10,
                token_ratio: 0.1
            })
        );
        let policy = RetryPolicy::new("dep", c.clone());
        assert!(policy.is_retried("/phantom.v1.VulnAnalyzer/ScoreCvss"));
        assert!(policy.is_hedged("/phantom.v1.VulnAnalyzer/GetFinding"));
        assert!(!policy.is_retried("/phantom.v1.VulnAnalyzer/GetFinding"));

        let json = c.to_service_config().unwrap();
        assert_eq!(json["retryThrottling"]["maxTokens"], 10);
        assert_eq!(json["retryThrottling"]["tokenRatio"].to_string(), "0.1");
        let retry = &json["methodConfig"][0]["retryPolicy"];
        assert_eq!(retry["initialBackoff"], "0.1s");
        assert_eq!(retry["maxBackoff"], "1s");
        assert_eq!(
            json["methodConfig"][0]["name"][1],
            serde_json::json!({"service": "phantom.v1.Reads"})
        );
        assert_eq!(
            json["methodConfig"][1]["hedgingPolicy"]["hedgingDelay"],
            "0.05s"
        );
        let again = RetryConfig::from_service_config(&json.to_string()).unwrap();
        assert_eq!(again, c, "round trip");
    }

    #[test]
    fn the_default_config_round_trips_but_for_its_backoff_shape() {
        let c = RetryConfig {
            idempotent_methods: vec!["/pkg.Svc/Get".into()],
            ..RetryConfig::default()
        };
        let json = c.to_service_config().unwrap();
        let back = RetryConfig::from_service_config(&json.to_string()).unwrap();
        assert_eq!(
            back,
            RetryConfig {
                backoff: Backoff {
                    strategy: Strategy::FullJitter,
                    ..c.backoff
                },
                ..c
            }
        );
    }

    #[test]
    fn refuses_what_grfc_a6_refuses_and_says_where() {
        let with = |from: &str, to: &str| {
            assert!(JSON.contains(from), "{from}");
            RetryConfig::from_service_config(&JSON.replacen(from, to, 1)).unwrap_err()
        };
        let e = with(
            r#""maxAttempts": 3,
                    "initialBackoff""#,
            r#""maxAttempts": 1,
                    "initialBackoff""#,
        );
        assert!(
            e.contains("methodConfig[0].retryPolicy.maxAttempts must be at least 2"),
            "{e}"
        );
        let e = with(
            r#"["UNAVAILABLE", "RESOURCE"#,
            r#"["UNAVAILABLE", "BOGUS", "RESOURCE"#,
        );
        assert!(e.contains("retryableStatusCodes: \"BOGUS\""), "{e}");
        let e = with(
            r#""initialBackoff": "0.1s""#,
            r#""initialBackoff": "100ms""#,
        );
        assert!(
            e.contains("initialBackoff: \"100ms\" is not a duration"),
            "{e}"
        );
        let e = with(r#""hedgingDelay": "0.05s""#, r#""hedgingDelay": "soon""#);
        assert!(e.contains("hedgingDelay"), "{e}");
        let e = with(
            r#""timeout": "5s","#,
            r#""hedgingPolicy": {"maxAttempts": 2},"#,
        );
        assert!(
            e.contains("methodConfig[0]: retryPolicy and hedgingPolicy are both set"),
            "{e}"
        );
        let e = with(r#""maxTokens": 10"#, r#""maxTokens": 0"#);
        assert!(e.contains("throttling.max_tokens"), "{e}");
        let e = with(r#""tokenRatio": 0.1"#, r#""tokenRatio": 0.1234"#);
        assert!(e.contains("3 decimals"), "{e}");
        let e = with(r#"{"service": "phantom.v1.Reads"}"#, r#"{}"#);
        assert!(e.contains("methodConfig[0].name[1]"), "{e}");
        assert!(
            RetryConfig::from_service_config("{")
                .unwrap_err()
                .starts_with("service config")
        );
    }
}
