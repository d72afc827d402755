//! Identity, end to end, on a running system with authentication on: every public method
//! refuses a call without credentials (UNAUTHENTICATED) and one whose key lacks the method's
//! scope (PERMISSION_DENIED, naming it); tenants are walled off (a tenant's key finds nothing
//! of another's scans, findings, rooms, webhooks or WebSocket feeds, whatever tenant header
//! it sends); revoked and expired keys and bad JWTs are refused; the internal methods refuse
//! every user key, so the poisoning and forged-publish calls of issue #14 are refused, while
//! the services themselves (the services' token) still analyze and publish.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, extract::State, routing::post};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::StreamExt as _;
use jsonwebtoken::Algorithm;
use phantom_identity::{
    JwtConfig, KeyStore, SqlKeyRepository,
    testing::{Signer, jwks},
};
use phantom_layers::{
    Tenant,
    auth::{Scope, Scopes},
};
use phantom_notifier::settings::WebhookConfig;
use phantom_proto::pb::{
    self, notifier_client::NotifierClient, scan_orchestrator_client::ScanOrchestratorClient,
    vuln_analyzer_client::VulnAnalyzerClient,
};
use phantom_tests::{PATIENCE, Running, channel, config};
use tonic::{Code, Request};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "phantom";

/// The keys and tokens of the scenario.
struct Credentials {
    /// Tenant `acme`, every scope.
    acme: String,
    /// Tenant `beta`, every scope.
    beta: String,
    /// Tenant `acme`, one scope each.
    only: HashMap<Scope, String>,
    /// Revoked after it was made.
    revoked: String,
    /// Expired an hour ago.
    expired: String,
}

/// The test issuer's signing key (Ed25519), named `k1`.
fn new_issuer() -> Signer {
    Signer::new("k1", Algorithm::EdDSA)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
        "iat": now(), "exp": now() + 3600,
        "tenant": "acme", "scope": "openid scans:read",
    })
}

/// What a webhook receiver got: the JSON bodies.
type Delivered = Arc<Mutex<Vec<serde_json::Value>>>;

async fn receiver(delivered: Delivered) -> SocketAddr {
    async fn receive(State(d): State<Delivered>, body: axum::body::Bytes) -> &'static str {
        d.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        ""
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(delivered);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A system with authentication on (JWTs from `issuer`'s JWKS file), a webhook for tenant
/// `acme` only, and the scenario's keys made in its key store.
async fn secured(
    data: &std::path::Path,
    issuer: &Signer,
    hook: SocketAddr,
) -> (Running, Credentials) {
    let mut config = config(data);
    config.auth.enabled = true;
    // Short, so a revocation shows within the test.
    config.auth.cache_ttl = Duration::from_millis(200);
    // Generous: the table below makes many refused calls from one address on purpose.
    config.auth.unauthenticated.per_second = 1000.0;
    config.auth.unauthenticated.burst = 1000;
    let jwks_file = data.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[issuer])).unwrap();
    config.auth.jwt = Some(JwtConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks_file: Some(jwks_file),
        ..JwtConfig::default()
    });
    config.notifier.webhooks = vec![WebhookConfig {
        name: "acme-only".into(),
        url: format!("http://{hook}/hook").into(),
        rooms: vec!["team/*".into()],
        tenants: vec!["acme".into()],
        min_priority: "low".into(),
        ..WebhookConfig::default()
    }];
    let running = Running::start(config.clone()).await;

    let store = key_store(data, &config).await;
    let make = async |tenant: &str, scopes: Scopes, expires: Option<i64>| {
        store
            .create(Tenant::parse(tenant).unwrap(), scopes, "test", expires)
            .await
            .unwrap()
    };
    let acme = make("acme", Scopes::all(), None).await.1;
    let beta = make("beta", Scopes::all(), None).await.1;
    let mut only = HashMap::new();
    for scope in Scope::ALL {
        only.insert(
            scope,
            make("acme", [scope].into_iter().collect(), None).await.1,
        );
    }
    let (info, revoked) = make("acme", Scopes::all(), None).await;
    let hour_ago = (now() - 3600) * 1_000_000;
    let expired = make("acme", Scopes::all(), Some(hour_ago)).await.1;
    // Used once while valid (so it is cached), then revoked.
    assert_eq!(
        call(running.addrs.scan_orchestrator, LIST_SCANS, Some(&revoked)).await,
        Code::Ok
    );
    assert!(store.revoke(&info.id).await.unwrap());
    (
        running,
        Credentials {
            acme,
            beta,
            only,
            revoked,
            expired,
        },
    )
}

/// The key store the services of `config` read: the same database, the key secret
/// `phantom up` keeps in its data directory `data`.
async fn key_store(data: &std::path::Path, config: &phantom::config::Config) -> KeyStore {
    let secret = std::fs::read_to_string(phantom::auth::key_secret_path(data)).unwrap();
    let db = phantom_storage::Database::open(&config.storage)
        .await
        .unwrap();
    KeyStore::new(
        Arc::new(SqlKeyRepository::new(db)),
        &phantom_identity::Secret::new(secret.trim()),
    )
}

const LIST_SCANS: &str = "/phantom.v1.ScanOrchestrator/ListScans";

/// The address that serves `path`.
fn server_of(running: &Running, path: &str) -> SocketAddr {
    let a = &running.addrs;
    match path.split('/').nth(1).unwrap() {
        "phantom.v1.ScanOrchestrator" | "phantom.v1.Metrics" => a.scan_orchestrator,
        "phantom.v1.VulnAnalyzer" => a.vuln_analyzer,
        "phantom.v1.Notifier" => a.notifier,
        "phantom.v1.HealthAggregator" => a.health_aggregator,
        other => panic!("no server for {other}"),
    }
}

/// Calls `path` on `addr` with an empty message and `bearer`, and returns the status code.
/// Authentication and authorization decide before the message is read, so an empty one
/// serves every method; a stream's first answer is enough.
async fn call(addr: SocketAddr, path: &'static str, bearer: Option<&str>) -> Code {
    call_with(addr, path, bearer, &[]).await
}

async fn call_with(
    addr: SocketAddr,
    path: &'static str,
    bearer: Option<&str>,
    metadata: &[(&'static str, &str)],
) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready().await.unwrap();
    let mut request = Request::new(());
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    }
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    match grpc.server_streaming(request, path, codec).await {
        Ok(mut stream) => match stream.get_mut().message().await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        },
        Err(status) => status.code(),
    }
}

/// `message` from beta's key, naming acme as its tenant (which a user's call cannot do).
fn as_beta<T>(keys: &Credentials, message: T) -> Request<T> {
    let mut request = with(&keys.beta, message);
    request
        .metadata_mut()
        .insert("x-phantom-tenant", "acme".parse().unwrap());
    request
}

/// `request` carrying `bearer`.
fn with<T>(bearer: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_method_refuses_missing_credentials_and_missing_scopes() {
    let data = tempfile::tempdir().unwrap();
    let hook = receiver(Delivered::default()).await;
    let issuer = new_issuer();
    let (running, keys) = secured(data.path(), &issuer, hook).await;

    for (path, requirement) in phantom_proto::AUTHORIZATION {
        let addr = server_of(&running, path);
        assert_eq!(
            call(addr, path, None).await,
            Code::Unauthenticated,
            "{path} without credentials"
        );
        assert_eq!(
            call(addr, path, Some("phk_000000000000_not-a-key")).await,
            Code::Unauthenticated,
            "{path} with a made-up key"
        );
        // A key holding every scope but the one the method needs.
        let wrong = match *requirement {
            "service" => keys.acme.clone(),
            scope => {
                let needed = Scope::parse(scope).unwrap();
                let other = Scope::ALL.into_iter().find(|s| *s != needed).unwrap();
                keys.only[&other].clone()
            }
        };
        assert_eq!(
            call(addr, path, Some(&wrong)).await,
            Code::PermissionDenied,
            "{path} with a key without {requirement}"
        );
        if *requirement != "service" {
            let right = &keys.only[&Scope::parse(requirement).unwrap()];
            let code = call(addr, path, Some(right)).await;
            assert!(
                !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                "{path} with its scope: {code:?}"
            );
        }
    }

    // The message of a refusal names the scope, and says nothing about which key failed.
    let mut scans = ScanOrchestratorClient::new(channel(running.addrs.scan_orchestrator).await);
    let denied = scans
        .create_scan(with(
            &keys.only[&Scope::ScansRead],
            pb::CreateScanRequest::default(),
        ))
        .await
        .unwrap_err();
    assert!(denied.message().contains("scans:write"), "{denied:?}");
    let unknown = scans
        .list_scans(with(
            "phk_000000000000_guess",
            pb::ListScansRequest::default(),
        ))
        .await
        .unwrap_err();
    let expired = scans
        .list_scans(with(&keys.expired, pb::ListScansRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unknown.message(), expired.message());

    // Operators see the refusals: phantom_auth_refused_total{server, code}.
    let refused = |code: &str| {
        running
            .registry(phantom::config::ServiceName::ScanOrchestrator)
            .snapshot()
            .counters
            .iter()
            .filter(|c| c.name == "phantom_auth_refused_total" && c.labels["code"] == code)
            .map(|c| c.value)
            .sum::<u64>()
    };
    assert!(
        refused("UNAUTHENTICATED") >= 12,
        "{}",
        refused("UNAUTHENTICATED")
    );
    assert!(
        refused("PERMISSION_DENIED") >= 6,
        "{}",
        refused("PERMISSION_DENIED")
    );

    // Health and reflection stay open: probes and grpcurl's `list`.
    assert_eq!(
        call(
            running.addrs.scan_orchestrator,
            "/grpc.health.v1.Health/Check",
            None
        )
        .await,
        Code::Ok
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_keys_and_bad_jwts_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let hook = receiver(Delivered::default()).await;
    let issuer = new_issuer();
    let (running, keys) = secured(data.path(), &issuer, hook).await;
    let so = running.addrs.scan_orchestrator;

    // Revoked: refused once the cache has let it go (auth.cache_ttl).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while call(so, LIST_SCANS, Some(&keys.revoked)).await != Code::Unauthenticated {
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocation never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        call(so, LIST_SCANS, Some(&keys.expired)).await,
        Code::Unauthenticated
    );

    // A good JWT: its tenant and scopes.
    let good = issuer.mint(&claims());
    assert_eq!(call(so, LIST_SCANS, Some(&good)).await, Code::Ok);
    assert_eq!(
        call(so, "/phantom.v1.ScanOrchestrator/CancelScan", Some(&good)).await,
        Code::PermissionDenied,
        "the token's scopes hold scans:read only"
    );

    let forger = new_issuer();
    let mut wrong_audience = claims();
    wrong_audience["aud"] = "someone-else".into();
    let mut expired = claims();
    expired["exp"] = (now() - 3600).into();
    let mut wrong_issuer = claims();
    wrong_issuer["iss"] = "https://evil.test".into();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string()),
    );
    for (what, token) in [
        ("a signature by another key", forger.mint(&claims())),
        ("a wrong audience", issuer.mint(&wrong_audience)),
        ("a wrong issuer", issuer.mint(&wrong_issuer)),
        ("an expiry an hour ago", issuer.mint(&expired)),
        ("alg: none", unsigned),
    ] {
        assert_eq!(
            call(so, LIST_SCANS, Some(&token)).await,
            Code::Unauthenticated,
            "a JWT with {what}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_walled_off_and_user_keys_cannot_poison_scores_or_forge_events() {
    let data = tempfile::tempdir().unwrap();
    let delivered = Delivered::default();
    let hook = receiver(delivered.clone()).await;
    let issuer = new_issuer();
    let (running, keys) = secured(data.path(), &issuer, hook).await;
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let _ = target.accept().await;
        }
    });

    // acme scans; the services do their part with their own token (the scan ends analyzed).
    let mut scans = ScanOrchestratorClient::new(channel(running.addrs.scan_orchestrator).await);
    let scan = scans
        .create_scan(with(
            &keys.acme,
            pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: port.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = scans
            .get_scan(with(
                &keys.acme,
                pb::GetScanRequest {
                    id: scan.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if now.state == pb::ScanState::Succeeded as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scan never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let findings = scans
        .list_findings(with(
            &keys.acme,
            pb::ListFindingsRequest {
                scan_id: scan.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert!(!findings.is_empty(), "the open port is a finding");

    // beta finds nothing of acme's, whatever tenant header it sends.
    let id = pb::GetScanRequest {
        id: scan.id.clone(),
    };
    assert_eq!(
        scans.get_scan(as_beta(&keys, id)).await.unwrap_err().code(),
        Code::NotFound
    );
    let cancel = pb::CancelScanRequest {
        id: scan.id.clone(),
    };
    assert_eq!(
        scans
            .cancel_scan(as_beta(&keys, cancel))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let list = pb::ListFindingsRequest {
        scan_id: scan.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        scans
            .list_findings(as_beta(&keys, list))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let listed = scans
        .list_scans(as_beta(&keys, pb::ListScansRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.scans.iter().all(|s| s.id != scan.id));

    // The internal methods refuse every user key: no score can be fixed from outside.
    let mut analyzer = VulnAnalyzerClient::new(channel(running.addrs.vuln_analyzer).await);
    let mut poisoned = findings[0].clone();
    poisoned.cvss_vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N".into();
    let refused = analyzer
        .analyze_findings(with(
            &keys.acme,
            pb::AnalyzeFindingsRequest {
                findings: vec![poisoned],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = analyzer
        .warm_scan(with(
            &keys.acme,
            pb::WarmScanRequest {
                scan_id: scan.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A scan's room takes events from the services only; a tenant's own rooms take its users'.
    let mut notifier = NotifierClient::new(channel(running.addrs.notifier).await);
    let note = |room: &str, payload: &str| pb::Notification {
        room: room.into(),
        r#type: "note".into(),
        payload: payload.into(),
        priority: pb::Priority::High as i32,
        ..Default::default()
    };
    let forged = notifier
        .publish(with(
            &keys.acme,
            note(&format!("scan/{}", scan.id), "forged"),
        ))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::PermissionDenied);
    assert!(forged.message().contains("service"), "{forged:?}");

    // Rooms: the same name is two rooms for two tenants.
    notifier
        .publish(with(&keys.acme, note("team/ops", "acme-1")))
        .await
        .unwrap();
    let mut beta_feed = notifier
        .subscribe(with(
            &keys.beta,
            pb::SubscribeRequest {
                rooms: vec!["team/ops".into()],
                after_sequence: [("team/ops".to_owned(), 0)].into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    notifier
        .publish(with(&keys.beta, note("team/ops", "beta-1")))
        .await
        .unwrap();
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            let message = beta_feed.message().await.unwrap().unwrap();
            if let Some(pb::subscribe_response::Event::Notification(n)) = message.event {
                return n;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        first.payload, "beta-1",
        "beta's feed starts with beta's own"
    );

    // The WebSocket gateway: no credential, a key without notify:subscribe, then beta's.
    let ws = running.addrs.ws;
    let url = format!("ws://{ws}/ws?rooms=team/ops&after=team/ops:0");
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => 101,
    };
    assert_eq!(status(tokio_tungstenite::connect_async(&url).await), 401);
    let upgrade = |bearer: &str| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("phantom.v1, bearer.{bearer}").parse().unwrap(),
        );
        request
    };
    assert_eq!(
        status(tokio_tungstenite::connect_async(upgrade(&keys.only[&Scope::ScansRead])).await),
        403
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(upgrade(&keys.beta))
        .await
        .unwrap();
    let seen = tokio::time::timeout(PATIENCE, async {
        loop {
            let frame = socket.next().await.unwrap().unwrap();
            let text = frame.to_text().unwrap_or_default().to_owned();
            if text.contains("acme-") || text.contains("beta-") {
                return text;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        seen.contains("beta-1"),
        "beta's socket replays beta's room, not acme's: {seen}"
    );
    let _ = socket.close(None).await;

    // Webhooks: the acme-only destination gets acme's notes, never beta's.
    notifier
        .publish(with(&keys.acme, note("team/ops", "acme-2")))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = delivered.lock().unwrap().clone();
        if got.iter().any(|n| n["payload"] == "acme-2") {
            assert!(
                got.iter().all(|n| n["tenant"] == "acme"),
                "only acme's notifications: {got:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acme-2 never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_scan_quotas_whichever_key_it_uses() {
    use tonic_types::StatusExt as _;
    let data = tempfile::tempdir().unwrap();
    // One scan at a time and two addresses a day per tenant, and a scan that lasts: its one
    // port accepts and never speaks, and the banner is waited for.
    let mut config = config(data.path());
    config.auth.enabled = true;
    config.scan.quota.max_active_scans = 1;
    config.scan.quota.max_hosts_per_day = 2;
    config.scan.banner_timeout = Duration::from_secs(3);
    let running = Running::start(config.clone()).await;
    let store = key_store(data.path(), &config).await;
    let mut keys = Vec::new();
    for tenant in ["acme", "acme", "beta"] {
        let (_, key) = store
            .create(Tenant::parse(tenant).unwrap(), Scopes::all(), "quota", None)
            .await
            .unwrap();
        keys.push(key);
    }
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        }
    });
    let mut scans = ScanOrchestratorClient::new(channel(running.addrs.scan_orchestrator).await);
    let create = |key: &str| {
        with(
            key,
            pb::CreateScanRequest {
                targets: vec!["127.0.0.1".into()],
                ports: port.to_string(),
                ..Default::default()
            },
        )
    };
    scans.create_scan(create(&keys[0])).await.unwrap();
    // acme's second key is acme: its one running scan is taken.
    let busy = scans.create_scan(create(&keys[1])).await.unwrap_err();
    assert_eq!(busy.code(), Code::ResourceExhausted, "{busy:?}");
    assert!(busy.message().contains("max_active_scans"), "{busy:?}");
    assert!(busy.get_details_retry_info().is_some());
    // beta is another tenant, with quotas of its own.
    scans.create_scan(create(&keys[2])).await.unwrap();

    // Once acme's scan has ended, its second address of the day passes and a third does not.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match scans.create_scan(create(&keys[1])).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::ResourceExhausted => {}
            Err(s) => panic!("{s:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acme's first scan never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let day = loop {
        let refused = scans.create_scan(create(&keys[0])).await.unwrap_err();
        if refused.message().contains("max_hosts_per_day") {
            break refused;
        }
        assert!(tokio::time::Instant::now() < deadline, "{refused:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(day.code(), Code::ResourceExhausted);
    let retry = day.get_details_retry_info().unwrap().retry_delay.unwrap();
    assert!(
        retry > Duration::from_secs(23 * 3600),
        "the day's first scan frees its address in a day: {retry:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_one_address_run_out_and_hostile_credentials_are_refused_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let mut config = config(data.path());
    config.auth.enabled = true;
    config.auth.unauthenticated.per_second = 0.001;
    config.auth.unauthenticated.burst = 5;
    let running = Running::start(config).await;
    let so = running.addrs.scan_orchestrator;
    // Malformed or hostile credentials: refused for what they are, at no lookup's cost.
    let long = "A".repeat(8 * 1024);
    for authorization in [
        "Basic YWRtaW46YWRtaW4=".to_owned(),
        "Bearer phk_".to_owned(),
        "Bearer phk_zzzzzzzzzzzz_!!!!".to_owned(),
        "Bearer a.b.c".to_owned(),
        "Bearer phs_scan-orchestrator_guess".to_owned(),
        format!("Bearer {long}"),
    ] {
        let code = call_with(so, LIST_SCANS, None, &[("authorization", &authorization)]).await;
        assert!(
            matches!(code, Code::Unauthenticated | Code::ResourceExhausted),
            "{authorization:.40}: {code:?}"
        );
    }
    // Well-formed guesses each cost a lookup: one address runs out of them.
    let mut codes = Vec::new();
    for i in 0..8 {
        let guess = format!("phk_{i:012x}_{}", "A".repeat(43));
        codes.push(call(so, LIST_SCANS, Some(&guess)).await);
    }
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Unauthenticated | Code::ResourceExhausted)),
        "{codes:?}"
    );
    assert_eq!(
        codes.last(),
        Some(&Code::ResourceExhausted),
        "guesses past the burst are limited: {codes:?}"
    );
    // The probes never are.
    assert_eq!(
        call(so, "/grpc.health.v1.Health/Check", None).await,
        Code::Ok
    );
    running.stop().await;
}
