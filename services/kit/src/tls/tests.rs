//! Certificates minted at test time (rcgen), loopback only.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt as _;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{
    testing::{Ca, Leaf},
    *,
};

/// Generous: what the machine may take under load, never what a pass needs.
const DEADLINE: Duration = Duration::from_secs(60);

/// The files of one service, in a directory of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(ca: &Ca, leaf: &Leaf) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(files.path("ca.pem"), ca.pem()).unwrap();
        files.install(leaf);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `leaf` over the certificate and key, one file after the other, as a careless
    /// rotation would: the reloader may see the new certificate with the old key first.
    fn install(&self, leaf: &Leaf) {
        std::fs::write(self.path("cert.pem"), &leaf.cert).unwrap();
        std::fs::write(self.path("key.pem"), &leaf.key).unwrap();
    }

    fn config(&self) -> TlsConfig {
        TlsConfig {
            enabled: true,
            cert_file: self.path("cert.pem"),
            key_file: self.path("key.pem"),
            ca_file: self.path("ca.pem"),
            reload_interval: Duration::from_millis(50),
            handshake_timeout: Duration::from_secs(300),
        }
    }
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Arc::new(roots)
}

/// A client that trusts `ca` and presents no certificate: a user.
fn user_config(ca: &Ca) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth(),
    )
}

/// A client that trusts `ca` and presents `leaf` (whoever issued it).
fn client_config(ca: &Ca, leaf: &Leaf) -> Arc<ClientConfig> {
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(vec![leaf.der.clone()], key)
        .unwrap(),
    )
}

use rustls_pki_types::pem::PemObject as _;

/// Opens a TLS connection to `addr` with `config` (the server must be `localhost`).
async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server at `addr` presents now.
async fn served_certificate(addr: SocketAddr, ca: &Ca) -> CertificateDer<'static> {
    let tls = handshake(addr, user_config(ca)).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn next_conn(incoming: &mut Incoming) -> Conn {
    tokio::time::timeout(DEADLINE, incoming.next())
        .await
        .expect("a connection within the deadline")
        .expect("the listener is open")
        .expect("incoming yields no errors")
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test]
async fn a_service_certificate_names_the_service_and_a_user_names_none() {
    let ca = Ca::new();
    let server = Files::new(
        &ca,
        &ca.leaf(Some("spiffe://phantom.test/vuln-analyzer"), 1),
    );
    let tls = Tls::new(&server.config()).unwrap();
    let (listener, addr) = listen().await;
    let mut incoming = incoming(listener, Some(tls));

    let service = ca.leaf(
        Some("spiffe://phantom.test/ns/phantom/sa/scan-orchestrator"),
        2,
    );
    let _client = handshake(addr, client_config(&ca, &service)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    assert!(conn.is_tls());
    assert_eq!(conn.peer().service.as_deref(), Some("scan-orchestrator"));
    assert_eq!(
        conn.peer().remote_addr.map(|a| a.ip()),
        Some([127, 0, 0, 1].into())
    );

    let _user = handshake(addr, user_config(&ca)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    assert_eq!(conn.peer().service, None);
    assert!(conn.peer().remote_addr.is_some());

    // Verified, but naming no service: a certificate without the spiffe SAN.
    let _anonymous = handshake(addr, client_config(&ca, &ca.leaf(None, 3)))
        .await
        .unwrap();
    assert_eq!(next_conn(&mut incoming).await.peer().service, None);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_at_handshake() {
    let ca = Ca::new();
    let server = Files::new(&ca, &ca.leaf(Some("spiffe://phantom.test/notifier"), 1));
    let (listener, addr) = listen().await;
    let mut incoming = incoming(listener, Some(Tls::new(&server.config()).unwrap()));

    let other = Ca::new();
    let impostor = other.leaf(Some("spiffe://phantom.test/scan-orchestrator"), 1);
    // TLS 1.3: the client's side completes before the server has judged its certificate;
    // the refusal arrives as an alert on the first read.
    let refused = match handshake(addr, client_config(&ca, &impostor)).await {
        Err(_) => true,
        Ok(mut tls) => {
            let mut byte = [0u8; 1];
            matches!(tls.read(&mut byte).await, Err(_) | Ok(0))
        }
    };
    assert!(refused, "the server accepted a certificate from another CA");

    // The next connection the server yields is the honest one, not the impostor's.
    let honest = ca.leaf(Some("spiffe://phantom.test/scan-orchestrator"), 2);
    let _client = handshake(addr, client_config(&ca, &honest)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    assert_eq!(conn.client_certificate(), Some(&honest.der));
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_the_others() {
    let ca = Ca::new();
    let server = Files::new(&ca, &ca.leaf(Some("spiffe://phantom.test/notifier"), 1));
    // The silent client's handshake outlives the test: only concurrency can let the other in.
    let (listener, addr) = listen().await;
    let mut incoming = incoming(listener, Some(Tls::new(&server.config()).unwrap()));

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let _half = TcpStream::connect(addr).await.unwrap();
    silent.write_all(b"\x16\x03\x01").await.unwrap(); // a record header, then nothing
    let _client = handshake(addr, user_config(&ca)).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    assert!(conn.is_tls());
}

#[tokio::test]
async fn plaintext_connections_carry_their_peer_too() {
    let (listener, addr) = listen().await;
    let mut incoming = incoming(listener, None);
    let _client = TcpStream::connect(addr).await.unwrap();
    let conn = next_conn(&mut incoming).await;
    assert!(!conn.is_tls());
    assert_eq!(conn.peer().service, None);
    assert!(conn.peer().remote_addr.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_failing_a_call() {
    let ca = Ca::new();
    let first = ca.leaf(Some("spiffe://phantom.test/vuln-analyzer"), 1);
    let server = Files::new(&ca, &first);
    let server_tls = Tls::new(&server.config()).unwrap();
    let caller = Files::new(
        &ca,
        &ca.leaf(Some("spiffe://phantom.test/scan-orchestrator"), 9),
    );
    let client_tls = Tls::new(&caller.config()).unwrap();

    let (listener, addr) = listen().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                incoming(listener, Some(server_tls)),
                stop.clone().cancelled_owned(),
            ),
    );
    let url = format!("https://localhost:{}", addr.port());
    let channel = crate::client::lazy(&url, Some(&client_tls), |u| {
        crate::client::endpoint(u, Duration::from_secs(10))
    })
    .unwrap();

    // Calls in a loop, on one channel, across the rotation.
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let calling = Arc::new(AtomicBool::new(true));
    let caller_task = tokio::spawn({
        let (ok, failed, calling) = (ok.clone(), failed.clone(), calling.clone());
        let mut client = HealthClient::new(channel);
        async move {
            while calling.load(Ordering::Relaxed) {
                match client.check(HealthCheckRequest::default()).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        eprintln!("call failed: {status:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    });
    let calls_before = wait_for(|| ok.load(Ordering::Relaxed) > 0).await;
    assert_eq!(served_certificate(addr, &ca).await, first.der);

    let second = ca.leaf(Some("spiffe://phantom.test/vuln-analyzer"), 2);
    server.install(&second);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while served_certificate(addr, &ca).await != second.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = ok.load(Ordering::Relaxed);
    wait_for(|| ok.load(Ordering::Relaxed) > after + 10).await;
    // A new channel, opened after the rotation, is served with the new certificate.
    let fresh = crate::client::lazy(&url, Some(&client_tls), |u| {
        crate::client::endpoint(u, Duration::from_secs(10))
    })
    .unwrap();
    HealthClient::new(fresh)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();

    calling.store(false, Ordering::Relaxed);
    caller_task.await.unwrap();
    stop.cancel();
    assert!(calls_before);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed across the rotation"
    );
}

#[tokio::test]
async fn a_bad_file_keeps_the_certificate_in_use() {
    let ca = Ca::new();
    let first = ca.leaf(Some("spiffe://phantom.test/notifier"), 1);
    let server = Files::new(&ca, &first);
    let (listener, addr) = listen().await;
    let tls = Tls::new(&server.config()).unwrap();
    let incoming = incoming(listener, Some(tls));
    let _serving = tokio::spawn(incoming.for_each(|_| async {}));

    std::fs::write(server.path("cert.pem"), "not a certificate").unwrap();
    // Several reload intervals pass; the first certificate is still served.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(served_certificate(addr, &ca).await, first.der);
    }
    // A good file after the bad one is taken.
    let second = ca.leaf(Some("spiffe://phantom.test/notifier"), 2);
    server.install(&second);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while served_certificate(addr, &ca).await != second.der {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn files_that_do_not_load_fail_start_up_naming_the_file() {
    let ca = Ca::new();
    let server = Files::new(&ca, &ca.leaf(None, 1));
    std::fs::write(server.path("key.pem"), "garbage").unwrap();
    let err = Tls::new(&server.config()).unwrap_err();
    assert!(
        matches!(err, TlsError::Pem { ref path, .. } if path.ends_with("key.pem")),
        "{err}"
    );

    // A key that is not the certificate's.
    std::fs::write(server.path("key.pem"), ca.leaf(None, 2).key).unwrap();
    let err = Tls::new(&server.config()).unwrap_err();
    assert!(matches!(err, TlsError::Pair { .. }), "{err}");

    let mut missing = server.config();
    missing.ca_file = Path::new("/nonexistent/ca.pem").to_owned();
    assert!(matches!(
        Tls::new(&missing).unwrap_err(),
        TlsError::Read { .. }
    ));
    // The configuration names the file; only start-up reads it.
    assert!(missing.validate().is_ok());
    missing.ca_file = std::path::PathBuf::new();
    assert_eq!(missing.validate().unwrap_err().key, "ca_file");
    assert!(TlsConfig::default().validate().is_ok());
}

#[test]
fn only_a_spiffe_id_ending_in_a_service_name_names_a_service() {
    assert_eq!(
        spiffe_service("spiffe://phantom.test/notifier"),
        Some("notifier")
    );
    assert_eq!(
        spiffe_service("spiffe://td/ns/phantom/sa/scan-orchestrator"),
        Some("scan-orchestrator")
    );
    assert_eq!(spiffe_service("spiffe:///notifier"), None);
    assert_eq!(spiffe_service("spiffe://td"), None);
    assert_eq!(spiffe_service("spiffe://td/"), None);
    assert_eq!(spiffe_service("spiffe://td/Notifier"), None);
    assert_eq!(spiffe_service("spiffe://td/a?b"), None);
    assert_eq!(spiffe_service("https://td/notifier"), None);
    assert_eq!(
        spiffe_service(&format!("spiffe://td/{}", "a".repeat(64))),
        None
    );
}

/// Polls `done` until it holds, within the deadline.
async fn wait_for(done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within the deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn every_grpc_call_carries_the_peer_of_its_connection() {
    let ca = Ca::new();
    let server = Files::new(&ca, &ca.leaf(Some("spiffe://phantom.test/notifier"), 1));
    let caller = Files::new(
        &ca,
        &ca.leaf(Some("spiffe://phantom.test/scan-orchestrator"), 2),
    );
    let client_tls = Tls::new(&caller.config()).unwrap();
    let (listener, addr) = listen().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        tower::util::MapRequestLayer::new(move |req: http::Request<tonic::body::Body>| {
            let peer = req
                .extensions()
                .get::<phantom_layers::auth::Peer>()
                .cloned();
            seen.lock().unwrap().push(peer);
            req
        })
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(record)
            .add_service(health)
            .serve_with_incoming_shutdown(
                incoming(listener, Some(Tls::new(&server.config()).unwrap())),
                stop.clone().cancelled_owned(),
            ),
    );
    let url = format!("https://127.0.0.1:{}", addr.port());
    let channel = crate::client::lazy(&url, Some(&client_tls), |u| {
        crate::client::endpoint(u, Duration::from_secs(10))
    })
    .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    stop.cancel();
    let seen = seen.lock().unwrap().clone();
    let peer = seen[0].clone().expect("the call carries a Peer");
    assert_eq!(peer.service.as_deref(), Some("scan-orchestrator"));
    assert!(peer.remote_addr.is_some());
}

#[tokio::test]
async fn the_http_port_serves_tls_with_the_peer_and_the_client_address() {
    use axum::{Extension, extract::ConnectInfo, routing::get};
    let ca = Ca::new();
    let server = Files::new(&ca, &ca.leaf(Some("spiffe://phantom.test/notifier"), 1));
    let tls = Tls::new(&server.config()).unwrap();
    let (listener, addr) = listen().await;
    let app = axum::Router::new().route(
        "/",
        get(
            |ConnectInfo(from): ConnectInfo<SocketAddr>,
             Extension(peer): Extension<phantom_layers::auth::Peer>| async move {
                format!("{} {}", from.ip(), peer.service.unwrap_or_default())
            },
        ),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            crate::http::serve(
                "test",
                listener,
                app,
                &crate::http::HttpLimits::default(),
                Some(&tls),
                &Default::default(),
                stop,
            )
            .await
        }
    });
    let mut config = (*client_config(
        &ca,
        &ca.leaf(Some("spiffe://phantom.test/scan-orchestrator"), 2),
    ))
    .clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut tls = handshake(addr, Arc::new(config)).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, tls.read_to_string(&mut response))
        .await
        .unwrap()
        .ok();
    stop.cancel();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("127.0.0.1 scan-orchestrator"),
        "{response}"
    );
}
