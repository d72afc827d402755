//! Why TLS files could not be used.

use std::path::PathBuf;

/// Why the TLS files could not be turned into configurations: at start-up, the service does
/// not start; on a reload, the previous configuration stays in use. Each names the file(s)
/// at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be (or holds no key).
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate file or CA bundle holds no certificate.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A CA bundle's certificate is not a usable trust anchor.
    #[error("{} holds a certificate that is not a usable CA: {source}", path.display())]
    Ca {
        /// The CA bundle.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The CA bundle cannot verify client certificates.
    #[error("{} cannot verify client certificates: {source}", path.display())]
    Verifier {
        /// The CA bundle.
        path: PathBuf,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
    /// The certificate and the key are not a pair (a rotation that replaced one of them
    /// only, so far), or the key is of a kind the provider does not support.
    #[error("{} and {} are not a usable certificate and key: {source}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The crypto provider refused the protocol versions (not reachable with aws-lc-rs).
    #[error("TLS provider: {0}")]
    Provider(rustls::Error),
}
