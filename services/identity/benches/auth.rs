//! Cost per call of authentication: the real [`AuthLayer`], with the [`Authenticator`] a
//! server holds, over a service that answers an empty response at once, against the same
//! service without the layer, measured in the same run.
//!
//! `cargo bench -p phantom-identity --bench auth`. Every call is `GetScan` (it needs
//! `scans:read`, in the policy of `phantom_proto::AUTHORIZATION`), and is checked to be
//! admitted before it is measured: a refusal is cheaper and would flatter the figures.
//!
//! - `a_no_auth`: the bare service, the reference.
//! - `b_api_key_cached`: a key verified before: a cache hit and one HMAC per call.
//! - `c_api_key_uncached`: an authenticator whose key cache TTL is zero, so every call reads
//!   the key's row from SQLite (a file in a temporary directory, as `phantom up` keeps it)
//!   and, not being answerable from memory, also counts against the unauthenticated-attempt
//!   limiter (its quota set out of reach here).
//! - `d_jwt_rs256_*`, `e_jwt_eddsa_*`: the issuer's key known (its JWKS read at start);
//!   `_cached`: the token verified before and remembered (`auth.jwt.verified_ttl`), one
//!   SHA-256 and a map lookup per call; `_uncached`: `verified_ttl = 0s`, the signature and
//!   claims verified on every call (what a token costs the first time it is seen).
//! - `f_service_token`: the services' shared token (one MAC).
//!
//! Calls that complete on their first poll are polled once with `now_or_never` (as the
//! layers' bench does), asserted to complete. The uncached key waits for SQLite, so it runs
//! under a current-thread runtime's `block_on`, and has its own reference measured the same
//! way: `a_no_auth_block_on`. Keys and tokens are minted when the bench starts.

use std::{
    convert::Infallible,
    hint::black_box,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{BatchSize, Bencher, Criterion, criterion_group, criterion_main};
use futures::FutureExt as _;
use http::{Request, Response, header::AUTHORIZATION};
use jsonwebtoken::Algorithm;
use phantom_identity::{
    ApiKeys, Authenticator, Jwt, JwtConfig, KeyStore, Secret, ServiceToken, SqlKeyRepository,
    testing::Signer,
};
use phantom_layers::{
    Tenant,
    auth::{AuthLayer, AuthSettings, Policy, Scope, Scopes},
    methods::Exempt,
    rate_limit::{QuotaConfig, RateLimitConfig, RateLimiter},
};
use phantom_storage::{Database, StorageConfig};
use tonic::body::Body;
use tower::{Layer as _, Service, service_fn};

/// The method every call names.
const METHOD: &str = "/phantom.v1.ScanOrchestrator/GetScan";
const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "phantom";

/// Answers an empty response at once.
fn ok_service() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Body>| {
        futures::future::ready(Ok::<_, Infallible>(Response::new(Body::empty())))
    })
}

fn request(bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::builder().uri(format!("http://phantom{METHOD}"));
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

/// The layer a server builds, with `authenticator`; the limit on unauthenticated attempts out
/// of reach, so the uncached case is never refused by it.
fn layer(authenticator: Authenticator) -> AuthLayer {
    AuthLayer::new(AuthSettings {
        policy: Policy::new(phantom_proto::AUTHORIZATION.iter().copied()).unwrap(),
        authenticator: Arc::new(authenticator),
        default_tenant: Tenant::parse("default").unwrap(),
        exempt: Exempt::prefixes(["/grpc.health.v1.Health/"]),
        unauthenticated: RateLimiter::new(
            "bench/unauthenticated",
            &RateLimitConfig {
                default: QuotaConfig {
                    per_second: 1e9,
                    burst: u32::MAX / 2,
                },
                ..RateLimitConfig::default()
            },
        ),
        refusals: Default::default(),
    })
}

/// A refusal carries `grpc-status`; the inner service's answer does not.
fn assert_admitted(response: &Response<Body>) {
    assert!(
        response.headers().get("grpc-status").is_none(),
        "refused: {:?}",
        response.headers()
    );
}

/// What the bench calls with, minted at start.
struct Fixture {
    /// Holds the SQLite file and the JWKS file.
    _dir: tempfile::TempDir,
    /// Keys cached 30 s (the default `auth.cache_ttl`), the services' token, JWTs.
    cached: Authenticator,
    /// Keys never cached.
    uncached: Authenticator,
    api_key: String,
    rs256: String,
    eddsa: String,
    service: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&StorageConfig {
        data_dir: dir.path().to_owned(),
        ..StorageConfig::default()
    })
    .await
    .unwrap();
    db.migrate(phantom_identity::migrator()).await.unwrap();
    let store = KeyStore::new(
        Arc::new(SqlKeyRepository::new(db)),
        &Secret::new("k".repeat(32)),
    );
    let scopes: Scopes = [Scope::ScansRead].into_iter().collect();
    let (_, api_key) = store
        .create(Tenant::parse("acme").unwrap(), scopes, "bench", None)
        .await
        .unwrap();

    let rsa = Signer::new("rsa", Algorithm::RS256);
    let ed = Signer::new("ed", Algorithm::EdDSA);
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, phantom_identity::testing::jwks(&[&rsa, &ed])).unwrap();
    let jwt_config = JwtConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks_file: Some(jwks),
        ..JwtConfig::default()
    };
    let jwt = Jwt::start(jwt_config.clone()).await.unwrap();
    // Every call checks the signature: what a token costs the first time it is seen.
    let jwt_unremembered = Jwt::start(JwtConfig {
        verified_ttl: Duration::ZERO,
        ..jwt_config
    })
    .await
    .unwrap();

    let token = ServiceToken::generate().unwrap();
    let service = token.bearer("scan-orchestrator");
    let cached = Authenticator::new(ApiKeys::new(store.clone(), Duration::from_secs(30)))
        .with_service_token(token)
        .with_jwt(jwt);
    let uncached =
        Authenticator::new(ApiKeys::new(store, Duration::ZERO)).with_jwt(jwt_unremembered);
    Fixture {
        _dir: dir,
        cached,
        uncached,
        api_key,
        rs256: mint(&rsa),
        eddsa: mint(&ed),
        service,
    }
}

/// A token of the issuer, valid for an hour, for tenant `acme` with `scans:read`.
fn mint(signer: &Signer) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench",
        "iat": now,
        "exp": now + 3600,
        "tenant": "acme",
        "scope": "openid scans:read",
    });
    signer.mint(&claims)
}

/// Measures calls of `svc` that complete on their first poll, after one (run to completion on
/// `rt`: it may read the store) that must be admitted and fills the caches.
fn polled_once<S>(
    b: &mut Bencher<'_>,
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    bearer: Option<&str>,
) where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    assert_admitted(&rt.block_on(svc.call(request(bearer))).unwrap());
    b.iter_batched(
        || request(bearer),
        |req| {
            black_box(
                svc.call(req)
                    .now_or_never()
                    .expect("completes on its first poll"),
            )
        },
        BatchSize::SmallInput,
    );
}

/// Measures calls of `svc` run to completion on `rt`.
fn blocked_on<S>(
    b: &mut Bencher<'_>,
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    bearer: Option<&str>,
) where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    assert_admitted(&rt.block_on(svc.call(request(bearer))).unwrap());
    b.iter_batched(
        || request(bearer),
        |req| black_box(rt.block_on(svc.call(req))),
        BatchSize::SmallInput,
    );
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let mut g = c.benchmark_group("auth_per_call");
    {
        // A key's first use spawns its `last_used_at` write: the runtime must be current.
        let _runtime = rt.enter();
        g.bench_function("a_no_auth", |b| {
            polled_once(b, &rt, &mut ok_service(), None);
        });
        let authed = layer(f.cached.clone()).layer(ok_service());
        let unremembered = layer(f.uncached.clone()).layer(ok_service());
        let cases = [
            ("b_api_key_cached", &authed, &f.api_key),
            ("d_jwt_rs256_cached", &authed, &f.rs256),
            ("d_jwt_rs256_uncached", &unremembered, &f.rs256),
            ("e_jwt_eddsa_cached", &authed, &f.eddsa),
            ("e_jwt_eddsa_uncached", &unremembered, &f.eddsa),
            ("f_service_token", &authed, &f.service),
        ];
        for (name, svc, bearer) in cases {
            g.bench_function(name, |b| {
                polled_once(b, &rt, &mut svc.clone(), Some(bearer.as_str()));
            });
        }
    }
    g.bench_function("a_no_auth_block_on", |b| {
        blocked_on(b, &rt, &mut ok_service(), None);
    });
    let uncached = layer(f.uncached.clone()).layer(ok_service());
    g.bench_function("c_api_key_uncached", |b| {
        blocked_on(b, &rt, &mut uncached.clone(), Some(f.api_key.as_str()));
    });
    g.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
