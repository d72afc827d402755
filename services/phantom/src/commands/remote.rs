//! How client commands reach a server: its URL, the credential they send, and TLS.

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use http::{HeaderValue, header::AUTHORIZATION};
use phantom_kit::tls::TlsConnector;
use tonic::transport::{Channel, Endpoint};
use tower_http::set_header::{SetRequestHeader, SetRequestHeaderLayer};

use super::errln;

/// The credential and transport options every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Credentials {
    /// API key (`phk_…`) or JWT, sent as `authorization: Bearer …`. Without one, a command
    /// that talks to a loopback address uses the local admin key `phantom up` keeps in its
    /// data directory (`<data_dir>/auth/admin.key`); it is never sent anywhere else.
    #[arg(long, env = "PHANTOM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an `https://` address: the CA certificate (PEM) that signed the server's.
    #[arg(long, env = "PHANTOM_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// For mutual TLS: this client's certificate (PEM), with --client-key.
    #[arg(long, env = "PHANTOM_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// For mutual TLS: this client's private key (PEM), with --client-cert.
    #[arg(long, env = "PHANTOM_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The data directory whose local admin key is used (default: the configuration's).
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
}

/// A channel to a server that sends the command's credential on every call.
pub type RemoteChannel = SetRequestHeader<Channel, Option<HeaderValue>>;

use crate::auth::admin_key_path;

/// Whether `addr` (a URL) names this machine: `localhost` or a loopback address.
fn is_loopback(addr: &str) -> bool {
    let Ok(uri) = addr.parse::<http::Uri>() else {
        return false;
    };
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl Credentials {
    /// The bearer to send to `addr`: the given token, else the local admin key when `addr`
    /// is on this machine and the key exists.
    fn bearer(&self, addr: &str) -> Option<String> {
        if let Some(token) = &self.token {
            return Some(token.trim().to_owned());
        }
        if !is_loopback(addr) {
            return None;
        }
        let path = admin_key_path(self.data_dir.as_deref()?);
        std::fs::read_to_string(path)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
    }

    /// `channel` (connected to `addr`) sending the credential on every call.
    pub fn wrap(&self, addr: &str, channel: Channel) -> Result<RemoteChannel, ExitCode> {
        let header = match self.bearer(addr) {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    errln!("phantom: the token has characters a header cannot carry");
                    ExitCode::from(2)
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(tower_layer::Layer::layer(
            &SetRequestHeaderLayer::overriding(AUTHORIZATION, header),
            channel,
        ))
    }

    /// The endpoint of `addr`, or why it is not one.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, ExitCode> {
        Endpoint::from_shared(addr.to_owned()).map_err(|e| {
            errln!("phantom: {addr:?} is not a URL: {e}");
            ExitCode::from(2)
        })
    }

    /// The TLS connector for `addr`: `None` for `http://`; for `https://`, one verifying the
    /// server with --ca-cert (and presenting --client-cert for mutual TLS).
    pub fn tls(&self, addr: &str) -> Result<Option<TlsConnector>, ExitCode> {
        if !addr.starts_with("https://") {
            return Ok(None);
        }
        let Some(ca) = &self.ca_cert else {
            errln!(
                "phantom: {addr} is https: pass --ca-cert (or PHANTOM_CA_CERT), the CA certificate that signed the server's"
            );
            return Err(ExitCode::from(2));
        };
        let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
        let config = phantom_kit::tls::client_config(ca, identity).map_err(|e| {
            errln!("phantom: {e}");
            ExitCode::from(2)
        })?;
        Ok(Some(TlsConnector::fixed(std::sync::Arc::new(config))))
    }

    /// Connects `endpoint` (of `addr`), over TLS for an `https://` address.
    pub async fn connect(
        &self,
        addr: &str,
        endpoint: &Endpoint,
    ) -> Result<Result<Channel, tonic::transport::Error>, ExitCode> {
        Ok(match self.tls(addr)? {
            None => endpoint.connect().await,
            Some(connector) => endpoint.connect_with_connector(connector).await,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_key_is_only_for_loopback_addresses() {
        assert!(is_loopback("http://127.0.0.1:50051"));
        assert!(is_loopback("http://localhost:50051"));
        assert!(is_loopback("http://[::1]:50051"));
        assert!(!is_loopback("http://10.0.0.1:50051"));
        assert!(!is_loopback("https://phantom.example.com"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        std::fs::write(admin_key_path(dir.path()), "phk_local\n").unwrap();
        let creds = Credentials {
            data_dir: Some(dir.path().to_owned()),
            ..Credentials::default()
        };
        assert_eq!(
            creds.bearer("http://127.0.0.1:50051").as_deref(),
            Some("phk_local")
        );
        assert_eq!(creds.bearer("http://10.0.0.1:50051"), None);
        let given = Credentials {
            token: Some("phk_given".into()),
            ..creds
        };
        assert_eq!(
            given.bearer("http://10.0.0.1:50051").as_deref(),
            Some("phk_given")
        );
    }
}
