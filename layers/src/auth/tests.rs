use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::{
    Tenant,
    methods::Exempt,
    rate_limit::{QuotaConfig, RateLimitConfig, RateLimiter},
};

/// Knows one key, `good` (tenant `acme`, `scans:read`); `down` finds its store unreachable.
struct OneKey;

impl Authenticate for OneKey {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        let answer = match bearer {
            "good" => Ok(Principal {
                identity: Identity::ApiKey {
                    key_id: "k1".into(),
                },
                tenant: Tenant::parse("acme"),
                scopes: Scopes::parse_list("scans:read").unwrap(),
            }),
            "down" => Err(Refusal::Unavailable("database".into())),
            _ => Err(Refusal::Unknown),
        };
        Box::pin(std::future::ready(answer))
    }

    fn is_cheap(&self, bearer: &str) -> bool {
        bearer == "good"
    }
}

fn layer(attempts_per_second: f64, burst: u32) -> AuthLayer {
    let unauthenticated = RateLimiter::new(
        "test/unauthenticated",
        &RateLimitConfig {
            enabled: true,
            default: QuotaConfig {
                per_second: attempts_per_second,
                burst,
            },
            ..RateLimitConfig::default()
        },
    );
    AuthLayer::new(AuthSettings {
        policy: Policy::new([
            ("/s.S/Read", "scans:read"),
            ("/s.S/Write", "scans:write"),
            ("/s.S/Internal", "service"),
        ])
        .unwrap(),
        authenticator: Arc::new(OneKey),
        default_tenant: Tenant::parse("default").unwrap(),
        exempt: Exempt::prefixes(["/grpc.health.v1.Health/"]),
        unauthenticated,
        refusals: Refusals::default(),
    })
}

fn echo()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    service_fn(|req: Request<Body>| async move {
        let mut res = Response::new(Body::empty());
        if let Some(tenant) = req.extensions().get::<Tenant>() {
            res.headers_mut()
                .insert("tenant", tenant.as_str().parse().unwrap());
        }
        if let Some(p) = req.extensions().get::<Principal>() {
            res.headers_mut().insert("who", p.id().parse().unwrap());
        }
        Ok::<_, Infallible>(res)
    })
}

fn call(path: &str, token: Option<&str>, peer: Peer) -> Request<Body> {
    let mut req = Request::builder().uri(path).header(TENANT_HEADER, "other");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(peer);
    req
}

fn from(ip: &str) -> Peer {
    Peer {
        remote_addr: Some(format!("{ip}:4000").parse().unwrap()),
        service: None,
    }
}

async fn status(
    svc: impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    req: Request<Body>,
) -> (String, Response<Body>) {
    let res = svc.oneshot(req).await.unwrap();
    let code = res
        .headers()
        .get("grpc-status")
        .map_or("0".to_owned(), |v| v.to_str().unwrap().to_owned());
    (code, res)
}

#[tokio::test]
async fn no_credentials_is_unauthenticated_and_health_is_exempt() {
    let svc = layer(100.0, 100).layer(echo());
    let (code, _) = status(svc.clone(), call("/s.S/Read", None, from("127.0.0.1"))).await;
    assert_eq!(code, "16");
    let (code, _) = status(
        svc.clone(),
        call("/s.S/Read", Some("guess"), from("127.0.0.1")),
    )
    .await;
    assert_eq!(code, "16");
    let (code, _) = status(
        svc,
        call("/grpc.health.v1.Health/Check", None, from("127.0.0.1")),
    )
    .await;
    assert_eq!(code, "0");
}

#[tokio::test]
async fn a_user_acts_for_its_own_tenant_whatever_it_sends() {
    let svc = layer(100.0, 100).layer(echo());
    let (code, res) = status(svc, call("/s.S/Read", Some("good"), from("127.0.0.1"))).await;
    assert_eq!(code, "0");
    assert_eq!(res.headers()["tenant"], "acme");
    assert_eq!(res.headers()["who"], "key:k1");
}

#[tokio::test]
async fn a_missing_scope_is_permission_denied_naming_it() {
    let svc = layer(100.0, 100).layer(echo());
    let (code, res) = status(
        svc.clone(),
        call("/s.S/Write", Some("good"), from("127.0.0.1")),
    )
    .await;
    assert_eq!(code, "7");
    let message = res.headers()["grpc-message"].to_str().unwrap().to_owned();
    assert!(message.contains("scans:write"), "{message}");
    // Internal methods and methods the table does not list are for services only.
    for path in ["/s.S/Internal", "/s.S/Unlisted"] {
        let (code, _) = status(svc.clone(), call(path, Some("good"), from("127.0.0.1"))).await;
        assert_eq!(code, "7", "{path}");
    }
}

#[tokio::test]
async fn a_service_identity_names_its_tenant_and_may_call_internal_methods() {
    let svc = layer(100.0, 100).layer(echo());
    let peer = Peer {
        remote_addr: None,
        service: Some("scan-orchestrator".into()),
    };
    let (code, res) = status(svc, call("/s.S/Internal", None, peer)).await;
    assert_eq!(code, "0");
    assert_eq!(res.headers()["tenant"], "other");
    assert_eq!(res.headers()["who"], "service:scan-orchestrator");
}

#[tokio::test]
async fn guesses_are_limited_per_address_but_a_known_key_is_not() {
    let svc = layer(0.001, 3).layer(echo());
    for _ in 0..3 {
        let (code, _) = status(
            svc.clone(),
            call("/s.S/Read", Some("guess"), from("10.0.0.1")),
        )
        .await;
        assert_eq!(code, "16");
    }
    let (code, _) = status(
        svc.clone(),
        call("/s.S/Read", Some("guess"), from("10.0.0.1")),
    )
    .await;
    assert_eq!(code, "8", "the fourth guess from one address is limited");
    let (code, _) = status(
        svc.clone(),
        call("/s.S/Read", Some("guess"), from("10.0.0.2")),
    )
    .await;
    assert_eq!(code, "16", "another address has its own allowance");
    let (code, _) = status(svc, call("/s.S/Read", Some("good"), from("10.0.0.1"))).await;
    assert_eq!(code, "0", "a cached key is never limited as a guess");
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_not_unauthenticated() {
    let svc = layer(100.0, 100).layer(echo());
    let (code, _) = status(svc, call("/s.S/Read", Some("down"), from("127.0.0.1"))).await;
    assert_eq!(code, "14");
}

#[test]
fn scopes_parse_strictly_or_leniently() {
    let s = Scopes::parse_list("scans:read, findings:read").unwrap();
    assert!(s.contains(Scope::ScansRead) && s.contains(Scope::FindingsRead));
    assert!(!s.contains(Scope::Admin));
    assert_eq!(s.to_string(), "scans:read,findings:read");
    assert!(Scopes::parse_list("scans:red").is_err());
    assert_eq!(
        Scopes::parse_known(["openid profile scans:write"]),
        Scopes::parse_list("scans:write").unwrap()
    );
    assert!(Policy::new([("/a/B", "scans:read"), ("/a/B", "admin")]).is_err());
    assert!(Policy::new([("/a/B", "root")]).is_err());
}

/// What the `audit` target wrote while `f` ran.
async fn audited<F: std::future::Future<Output = ()>>(f: F) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_env_filter("audit=info")
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn refusals_and_writes_are_audited_by_principal_never_by_secret() {
    let svc = layer(100.0, 100).layer(echo());
    let log = audited(async {
        status(
            svc.clone(),
            call("/s.S/Write", Some("good"), from("10.0.0.9")),
        )
        .await;
        // A read that is let in is not audited.
        status(
            svc.clone(),
            call("/s.S/Read", Some("good"), from("10.0.0.9")),
        )
        .await;
        // Anonymous refusals are counted by address, one line per interval.
        for _ in 0..50 {
            status(
                svc.clone(),
                call("/s.S/Read", Some("guess"), from("10.0.0.7")),
            )
            .await;
        }
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        status(svc.clone(), call("/s.S/Read", None, from("10.0.0.7"))).await;
    })
    .await;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("principal=\"key:k1\"")
            && lines[0].contains("/s.S/Write")
            && lines[0].contains("PermissionDenied")
            && lines[0].contains("10.0.0.9"),
        "{log}"
    );
    assert!(
        lines[1].contains("principal=\"anonymous\"")
            && lines[1].contains("10.0.0.7:Unauthenticated=51"),
        "{log}"
    );
    assert!(!log.contains("guess") && !log.contains("good"), "{log}");
}
