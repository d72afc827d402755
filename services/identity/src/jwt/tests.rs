//! JWTs minted at test time under keys generated at test time (nothing checked in), checked
//! against a JWKS file or one served on loopback.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phantom_layers::auth::{Authenticate, Identity, Refusal, Scope};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::testing::{Signer, jwks};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "phantom";

fn signer(kid: &str, alg: Algorithm) -> Signer {
    Signer::new(kid, alg)
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Good claims: this issuer and audience, valid for an hour, tenant `acme`.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 3600,
        "tenant": "acme",
        "scope": "openid scans:read findings:read profile",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn mint(signer: &Signer, claims: &Value) -> String {
    signer.mint(claims)
}

fn config(jwks: JwksSourceFor) -> JwtConfig {
    let mut c = JwtConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into(), "other".into()],
        ..JwtConfig::default()
    };
    match jwks {
        JwksSourceFor::File(p) => c.jwks_file = Some(p),
        JwksSourceFor::Url(u) => c.jwks_url = Some(u),
    }
    c.validate().unwrap();
    c
}

enum JwksSourceFor {
    File(std::path::PathBuf),
    Url(String),
}

/// A verifier over a JWKS file holding `signers`' keys (the directory must outlive it).
async fn verifier(dir: &tempfile::TempDir, signers: &[&Signer]) -> Jwt {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(signers)).unwrap();
    Jwt::start(config(JwksSourceFor::File(path))).await.unwrap()
}

#[tokio::test]
async fn a_good_token_of_each_algorithm_gives_its_subject_tenant_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec, ed) = (
        signer("rsa-1", Algorithm::RS256),
        signer("ec-1", Algorithm::ES256),
        signer("ed-1", Algorithm::EdDSA),
    );
    let jwt = verifier(&dir, &[&rsa, &ec, &ed]).await;
    for s in [&rsa, &ec, &ed] {
        let token = mint(s, &claims());
        assert!(jwt.is_cheap(&token), "{:?}: its key is known", s.alg);
        let p = jwt.authenticate(&token).await.unwrap();
        assert_eq!(
            p.identity,
            Identity::Token {
                issuer: ISSUER.into(),
                subject: "alice".into()
            }
        );
        assert_eq!(p.tenant, Tenant::parse("acme"));
        assert_eq!(
            p.scopes.iter().collect::<Vec<_>>(),
            vec![Scope::ScansRead, Scope::FindingsRead],
            "unknown scope names are skipped"
        );
    }
    // The scope claim may be an array, and any accepted audience will do.
    let token = mint(
        &rsa,
        &with(
            with(claims(), "scope", json!(["scans:write", "email"])),
            "aud",
            json!(["someone-else", "other"]),
        ),
    );
    let p = jwt.authenticate(&token).await.unwrap();
    assert_eq!(p.scopes.iter().collect::<Vec<_>>(), vec![Scope::ScansWrite]);
}

#[tokio::test]
async fn tokens_whose_signature_or_claims_do_not_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer("rsa-1", Algorithm::RS256);
    let jwt = verifier(&dir, &[&rsa]).await;
    let refused = |claims: Value| {
        let jwt = jwt.clone();
        let token = mint(&rsa, &claims);
        async move { jwt.authenticate(&token).await.unwrap_err() }
    };
    let cases = [
        (
            "wrong audience",
            with(claims(), "aud", json!("not-phantom")),
        ),
        (
            "wrong issuer",
            with(claims(), "iss", json!("https://evil.test")),
        ),
        ("expired", with(claims(), "exp", json!(now() - 120))),
        (
            "nbf in the future",
            with(claims(), "nbf", json!(now() + 120)),
        ),
        ("no tenant", {
            let mut c = claims();
            c.as_object_mut().unwrap().remove("tenant");
            c
        }),
        (
            "tenant not a tenant id",
            with(claims(), "tenant", json!("Not A Tenant")),
        ),
        ("no sub", {
            let mut c = claims();
            c.as_object_mut().unwrap().remove("sub");
            c
        }),
    ];
    for (what, c) in cases {
        let r = refused(c).await;
        assert!(
            matches!(r, Refusal::Invalid(_) | Refusal::Revoked),
            "{what}: {r:?}"
        );
    }
    assert_eq!(
        refused(with(claims(), "exp", json!(now() - 120))).await,
        Refusal::Revoked
    );
    // Within the leeway (30 s) an expired or not-yet-valid token still passes.
    jwt.authenticate(&mint(&rsa, &with(claims(), "exp", json!(now() - 10))))
        .await
        .unwrap();
    jwt.authenticate(&mint(&rsa, &with(claims(), "nbf", json!(now() + 10))))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer("rsa-1", Algorithm::RS256);
    let jwt = verifier(&dir, &[&rsa]).await;
    // Signed by another key under the known kid.
    let impostor = Signer {
        kid: "rsa-1".into(),
        ..signer("x", Algorithm::RS256)
    };
    let forged = mint(&impostor, &claims());
    assert!(matches!(
        jwt.authenticate(&forged).await,
        Err(Refusal::Invalid(_))
    ));
    // The claims changed after signing.
    let token = mint(&rsa, &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(claims(), "tenant", json!("victim"))).unwrap());
    assert!(matches!(
        jwt.authenticate(&parts.join(".")).await,
        Err(Refusal::Invalid(_))
    ));
}

#[tokio::test]
async fn alg_none_and_hmac_key_confusion_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = signer("rsa-1", Algorithm::RS256);
    let jwt = verifier(&dir, &[&rsa]).await;
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims())
    );
    assert!(jwt.authenticate(&none).await.is_err(), "alg: none");

    // HS256 with the public key as the shared secret: what a verifier that takes the
    // algorithm from the header would accept.
    let jwk_json = serde_json::to_value(&rsa.jwk).unwrap();
    for secret in [
        jwk_json["n"].as_str().unwrap().as_bytes().to_vec(),
        serde_json::to_vec(&jwk_json).unwrap(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert!(
            matches!(jwt.authenticate(&token).await, Err(Refusal::Invalid(m)) if m.contains("not accepted")),
            "HS256 key confusion"
        );
    }

    // An algorithm not in the list (ES256 off), even with a key for it.
    let ec = signer("ec-1", Algorithm::ES256);
    let path = dir.path().join("both.json");
    std::fs::write(&path, jwks(&[&rsa, &ec])).unwrap();
    let rsa_only = Jwt::start(JwtConfig {
        algorithms: vec![Algorithm::RS256],
        ..config(JwksSourceFor::File(path))
    })
    .await
    .unwrap();
    assert!(matches!(
        rsa_only.authenticate(&mint(&ec, &claims())).await,
        Err(Refusal::Invalid(_))
    ));
    // A token whose header names another algorithm than its key's JWK.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(&header, &claims(), &ec.key).unwrap();
    assert!(matches!(
        jwt.authenticate(&token).await,
        Err(Refusal::Invalid(m)) if m.contains("not the key's")
    ));
}

#[tokio::test]
async fn an_unknown_kid_or_garbage_is_unknown_and_not_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, other) = (
        signer("rsa-1", Algorithm::RS256),
        signer("rsa-2", Algorithm::RS256),
    );
    let jwt = verifier(&dir, &[&rsa]).await;
    let token = mint(&other, &claims());
    assert!(!jwt.is_cheap(&token));
    assert_eq!(jwt.authenticate(&token).await, Err(Refusal::Unknown));
    assert_eq!(jwt.authenticate("a.b.c").await, Err(Refusal::Unknown));
    assert!(!jwt.is_cheap("a.b.c"));
}

#[tokio::test]
async fn without_a_kid_the_only_key_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let ec = signer("ec-1", Algorithm::ES256);
    let jwt = verifier(&dir, &[&ec]).await;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(), &ec.key).unwrap();
    jwt.authenticate(&token).await.unwrap();
}

/// A JWKS served over HTTP on 127.0.0.1, its document replaceable, its fetches counted.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve(body: String) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(body));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (b, f) = (b.clone(), f.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                f.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    JwksServer { url, body, fetches }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it_at_most_every_30s() {
    let (old, new) = (
        signer("2026-01", Algorithm::RS256),
        signer("2026-02", Algorithm::EdDSA),
    );
    let server = serve(jwks(&[&old])).await;
    let jwt = Jwt::start(config(JwksSourceFor::Url(server.url.clone())))
        .await
        .unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    jwt.authenticate(&mint(&old, &claims())).await.unwrap();

    // The issuer rotates: the first token under the new key makes one fetch, and passes.
    *server.body.lock().unwrap() = jwks(&[&new]);
    let token = mint(&new, &claims());
    assert!(!jwt.is_cheap(&token));
    jwt.authenticate(&token).await.unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    assert!(jwt.is_cheap(&token));

    // Made-up kids right after: no further fetch.
    for i in 0..5 {
        let fake = Signer {
            kid: format!("made-up-{i}"),
            ..signer("x", Algorithm::EdDSA)
        };
        assert_eq!(
            jwt.authenticate(&mint(&fake, &claims())).await,
            Err(Refusal::Unknown)
        );
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_unavailable_not_a_start_failure() {
    // A port nothing listens on (bound, then closed).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let jwt = Jwt::start(config(JwksSourceFor::Url(url))).await.unwrap();
    let rsa = signer("rsa-1", Algorithm::RS256);
    assert!(matches!(
        jwt.authenticate(&mint(&rsa, &claims())).await,
        Err(Refusal::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_missing_jwks_file_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let err = Jwt::start(config(JwksSourceFor::File(dir.path().join("none.json"))))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Jwks(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_jwks_file_is_read_again_every_refresh_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        signer("k1", Algorithm::ES256),
        signer("k2", Algorithm::ES256),
    );
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old])).unwrap();
    let jwt = Jwt::start(config(JwksSourceFor::File(path.clone())))
        .await
        .unwrap();
    let token = mint(&new, &claims());
    assert!(!jwt.is_cheap(&token));
    std::fs::write(&path, jwks(&[&new])).unwrap();
    tokio::time::sleep(DEFAULT_REFRESH + Duration::from_secs(1)).await;
    // The file read is real I/O: give it real time to land.
    for _ in 0..200 {
        if jwt.is_cheap(&token) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(jwt.is_cheap(&token), "the new key was picked up");
    assert!(!jwt.is_cheap(&mint(&old, &claims())), "the old key is gone");
}

const DEFAULT_REFRESH: Duration = crate::settings::DEFAULT_JWKS_REFRESH;
