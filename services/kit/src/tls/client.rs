//! The client side: a connector for tonic's channels that opens TCP and completes the TLS
//! handshake with the configuration current at that moment.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Tls;

/// Connects to a peer over TLS: TCP to the URI's host and port, then a handshake that
/// verifies the peer against the CA (its certificate must name the URI's host) and presents
/// this service's certificate. Each connection takes the configuration current when it is
/// made, so connections made after a rotation present the new certificate.
///
/// What [`tonic::transport::Endpoint::connect_with_connector_lazy`] is given; tonic's
/// connect timeout covers TCP and the handshake together.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    tls: Tls,
}

impl TlsConnector {
    /// A connector with `tls`'s client configuration.
    pub fn new(tls: Tls) -> Self {
        Self { tls }
    }
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
        let config = self.tls.client_config();
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
            let name = ServerName::try_from(host.clone())
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
