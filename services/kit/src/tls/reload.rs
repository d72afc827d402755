//! The [`Tls`] handle: the configurations built from the files, and the task that builds them
//! again when the files change.

use std::{
    path::Path,
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, crypto::CryptoProvider, server::WebPkiClientVerifier,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{TlsConfig, TlsError};

/// The application protocol a listener speaks, offered in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`: the gRPC listeners.
    H2,
    /// `http/1.1`: the HTTP ports (`/health`, the WebSocket gateway).
    Http1,
}

/// This service's TLS: the server configurations of its listeners and the client
/// configuration of its calls to peers, as built from the files last read. Cloning is
/// cheap (one `Arc`); every clone sees a reload.
///
/// A task started by [`Tls::new`] reads the files every `reload_interval` and swaps the
/// configurations when their bytes changed and still make a valid set; it ends once every
/// clone is dropped.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.inner.config.cert_file)
            .field("ca_file", &self.inner.config.ca_file)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: TlsConfig,
    current: RwLock<Arc<Loaded>>,
}

/// The bytes of the three files, as read together.
#[derive(Clone, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

/// Configurations built from one reading of the files.
struct Loaded {
    files: Files,
    h2: Arc<ServerConfig>,
    http1: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Tls {
    /// Reads the files named in `config` (whether or not `config.enabled` says so) and builds
    /// the configurations; then keeps reading them every `config.reload_interval`. Must be
    /// called within a tokio runtime (it spawns the reload task).
    pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        let files = Files::read_blocking(config)?;
        let loaded = Loaded::build(config, files)?;
        log_loaded(config, &loaded, "TLS certificate loaded");
        let inner = Arc::new(Inner {
            config: config.clone(),
            current: RwLock::new(Arc::new(loaded)),
        });
        tokio::spawn(watch(Arc::downgrade(&inner), config.reload_interval));
        Ok(Self { inner })
    }

    /// [`Tls::new`] if `config.enabled`; `None` (plaintext) otherwise.
    pub fn if_enabled(config: &TlsConfig) -> Result<Option<Self>, TlsError> {
        config.enabled.then(|| Self::new(config)).transpose()
    }

    /// The current server configuration of a listener speaking `alpn`: client certificates
    /// are asked for and verified against the CA, but not required.
    pub fn server_config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let loaded = self.current();
        match alpn {
            Alpn::H2 => loaded.h2.clone(),
            Alpn::Http1 => loaded.http1.clone(),
        }
    }

    /// The current client configuration: peers verified against the CA, this service's
    /// certificate presented, `h2` offered.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Longest a client may take to complete its handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.config.handshake_timeout
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock still holds a complete `Arc` (the writer only swaps it).
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Reads the files every `every` while a [`Tls`] handle lives; swaps the configurations when
/// the bytes changed and build. Bytes, not file events: Kubernetes updates a mounted Secret
/// by swapping a symlink (`..data`), which inotify on the file itself does not see, and the
/// comparison costs three small reads.
async fn watch(inner: Weak<Inner>, every: Duration) {
    // What was last refused, so that a bad file is warned about once, not every tick.
    let mut refused: Option<Files> = None;
    let mut unreadable: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let config = &inner.config;
        let files = match Files::read(config).await {
            Ok(files) => {
                unreadable = None;
                files
            }
            Err(err) => {
                let error = err.to_string();
                if unreadable.as_ref() != Some(&error) {
                    tracing::warn!(%error, "TLS files unreadable: keeping the certificate in use");
                    unreadable = Some(error);
                }
                continue;
            }
        };
        let unchanged = {
            let current = inner
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            current.files == files
        };
        if unchanged || refused.as_ref() == Some(&files) {
            continue;
        }
        match Loaded::build(config, files.clone()) {
            Ok(loaded) => {
                log_loaded(config, &loaded, "TLS certificate reloaded");
                *inner
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
                refused = None;
            }
            Err(err) => {
                // The files stay as they are until someone fixes them; the same bytes are
                // not tried (nor warned about) again.
                tracing::warn!(error = %err, "TLS files changed but do not load: keeping the certificate in use");
                refused = Some(files);
            }
        }
    }
}

fn log_loaded(config: &TlsConfig, loaded: &Loaded, message: &'static str) {
    let leaf = CertificateDer::pem_slice_iter(&loaded.files.cert)
        .next()
        .and_then(Result::ok);
    let parsed = leaf
        .as_ref()
        .and_then(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok());
    let (serial, not_after) = parsed
        .map(|(_, c)| (c.raw_serial_as_string(), c.validity().not_after.to_string()))
        .unwrap_or_default();
    tracing::info!(
        cert_file = %config.cert_file.display(),
        serial,
        not_after,
        "{message}"
    );
}

impl Files {
    /// Reads the three files at start-up (before any runtime work is worth it).
    fn read_blocking(config: &TlsConfig) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Self {
            cert: read(&config.cert_file)?,
            key: read(&config.key_file)?,
            ca: read(&config.ca_file)?,
        })
    }

    async fn read(config: &TlsConfig) -> Result<Self, TlsError> {
        async fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
            tokio::fs::read(path)
                .await
                .map_err(|source| TlsError::Read {
                    path: path.to_owned(),
                    source,
                })
        }
        Ok(Self {
            cert: read(&config.cert_file).await?,
            key: read(&config.key_file).await?,
            ca: read(&config.ca_file).await?,
        })
    }
}

/// The process's crypto: aws-lc-rs, whatever another crate installed as rustls' default.
pub(super) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificates of a PEM file's bytes; at least one.
pub(super) fn certificates(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl Loaded {
    /// Builds every configuration from `files` (the bytes compared, parsed: never a second
    /// read that could see a newer file).
    fn build(config: &TlsConfig, files: Files) -> Result<Self, TlsError> {
        let provider = provider();
        let chain = certificates(&config.cert_file, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|source| TlsError::Pem {
            path: config.key_file.clone(),
            source,
        })?;
        let mut roots = RootCertStore::empty();
        for ca in certificates(&config.ca_file, &files.ca)? {
            roots.add(ca).map_err(|source| TlsError::Ca {
                path: config.ca_file.clone(),
                source,
            })?;
        }
        let roots = Arc::new(roots);
        let pair = |source| TlsError::Pair {
            cert: config.cert_file.clone(),
            key: config.key_file.clone(),
            source,
        };
        // Users come with bearer tokens and no certificate; services present theirs. A
        // certificate that is presented must chain to the CA, or the handshake fails.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|source| TlsError::Verifier {
                path: config.ca_file.clone(),
                source,
            })?;
        let server = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut server = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Provider)?
                .with_client_cert_verifier(verifier.clone())
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(pair)?;
            server.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(server))
        };
        let h2 = server(b"h2")?;
        let http1 = server(b"http/1.1")?;
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Provider)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(pair)?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            files,
            h2,
            http1,
            client: Arc::new(client),
        })
    }
}
