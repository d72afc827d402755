//! The client side: a connector for tonic's channels that opens TCP and completes the TLS
//! handshake with the configuration current at that moment.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use std::{path::Path, sync::Arc};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Tls, TlsError};

/// Connects to a peer over TLS: TCP to the URI's host and port, then a handshake that
/// verifies the peer against the CA (its certificate must name the URI's host) and presents
/// this service's certificate. Each connection takes the configuration current when it is
/// made, so connections made after a rotation present the new certificate.
///
/// What [`tonic::transport::Endpoint::connect_with_connector_lazy`] is given; tonic's
/// connect timeout covers TCP and the handshake together.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    config: Source,
    /// The name the peer's certificate must show, when it is not the URI's host (a
    /// balancer dials each address a name resolved to, and verifies the name).
    server_name: Option<String>,
}

/// Where a connector takes its client configuration from.
#[derive(Debug, Clone)]
enum Source {
    /// A service's: reloaded with its files.
    Reloading(Tls),
    /// A command's: read once ([`client_config`]).
    Fixed(Arc<ClientConfig>),
}

impl TlsConnector {
    /// A connector with `tls`'s client configuration.
    pub fn new(tls: Tls) -> Self {
        Self {
            config: Source::Reloading(tls),
            server_name: None,
        }
    }

    /// The connector, verifying that the peer's certificate names `host` whatever address
    /// it dials.
    pub fn with_server_name(mut self, host: &str) -> Self {
        self.server_name = Some(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
        self
    }

    /// A connector with `config`, for a short-lived client (a command of the CLI).
    pub fn fixed(config: Arc<ClientConfig>) -> Self {
        Self {
            config: Source::Fixed(config),
            server_name: None,
        }
    }
}

/// The configuration of a short-lived client (the CLI): servers verified against the CA in
/// `ca_file`, and, for mTLS, the certificate and key of `identity`. ALPN `h2`.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let mut roots = RootCertStore::empty();
    for ca in super::reload::certificates(ca_file, &read(ca_file)?)? {
        roots.add(ca).map_err(|source| TlsError::Ca {
            path: ca_file.to_owned(),
            source,
        })?;
    }
    let builder = ClientConfig::builder_with_provider(super::reload::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = super::reload::certificates(cert, &read(cert)?)?;
            let key_der =
                PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|source| TlsError::Pem {
                    path: key.to_owned(),
                    source,
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|source| TlsError::Pair {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    source,
                })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The connection a [`TlsConnector`] opens.
pub type TlsConnection = TokioIo<TlsStream<TcpStream>>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TlsConnection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsConnection>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = match &self.config {
            Source::Reloading(tls) => tls.client_config(),
            Source::Fixed(config) => config.clone(),
        };
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let invalid =
                |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {uri}"));
            // `[::1]` in a URI is `::1` to a resolver and to a certificate's IP SAN.
            let host = uri
                .host()
                .ok_or_else(|| invalid("no host in the URI"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("http") => 80,
                _ => 443,
            });
            let name = ServerName::try_from(server_name.unwrap_or_else(|| host.clone()))
                .map_err(|_| invalid("not a DNS name or IP address"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            super::accept::tune(&tcp);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}
