//! `[tls]`: where this service's certificate, its key and the services' CA are, and how often
//! they are read again.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use phantom_layers::settings::Invalid;

/// How often the files are read again by default: a rotated certificate is in use within
/// this long, and reading three small files this often costs nothing.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Longest a client may take to complete its TLS handshake by default. A real client needs
/// a few round trips; a silent one holds a handshake slot no longer than this.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS of the service's gRPC and HTTP ports and of its calls to peers (mTLS between
/// services). Off by default: `phantom up` on one machine speaks plaintext over loopback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve TLS and call peers over TLS, with the files below.
    pub enabled: bool,
    /// This service's certificate chain (PEM, leaf first): the server certificate of its
    /// ports and the client certificate it presents to peers. Its URI SAN
    /// `spiffe://<trust-domain>/<service>` names the service to the peers it calls.
    pub cert_file: PathBuf,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA bundle (PEM) that peers' certificates must chain to: client certificates on
    /// this service's ports, server certificates of the peers it calls.
    pub ca_file: PathBuf,
    /// How often the three files are read again; a change (cert-manager's rotation) is used
    /// by the connections made after it, a bad file is ignored with a warning.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Longest a client may take to complete its handshake before its connection is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TlsConfig {
    /// Checks what the types cannot, when TLS is enabled: every file is named and exists,
    /// every duration is more than zero. Keys are relative to `[tls]`. Whether the files
    /// hold what they should is for [`super::Tls::new`] to say.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.enabled {
            return Ok(());
        }
        for (key, path) in [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("ca_file", &self.ca_file),
        ] {
            // Named here; read (and refused, naming the file) when a server starts: the
            // configuration is also checked where the files are not (`phantom config` in CI,
            // a pod before its Secret is mounted).
            if path.as_os_str().is_empty() {
                return Err(Invalid::new(key, "is required when TLS is enabled"));
            }
        }
        if self.reload_interval.is_zero() {
            return Err(Invalid::new("reload_interval", "must be more than 0s"));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Invalid::new("handshake_timeout", "must be more than 0s"));
        }
        Ok(())
    }
}
