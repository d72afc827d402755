//! Why an identity operation failed (refusals of credentials are
//! [`phantom_layers::auth::Refusal`]s, not errors).

use phantom_storage::StoreError;

/// Why creating a key, starting the JWT verifier or building the authenticator failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A value given was not acceptable (a key's name).
    #[error("{0}")]
    Invalid(String),
    /// The JWKS could not be read or holds no usable key.
    #[error("JWKS: {0}")]
    Jwks(String),
}
