//! PHANTOM's credentials: what turns the bearer a call presents into a
//! [`Principal`](phantom_layers::auth::Principal).
//!
//! `phantom_layers::auth` decides who may call what, from a principal; this crate finds the
//! principal. [`Authenticator`] is the one [`Authenticate`](phantom_layers::auth::Authenticate)
//! a server is given, and dispatches on the credential's form:
//!
//! | bearer                  | checked by                 | principal                      |
//! |-------------------------|----------------------------|--------------------------------|
//! | `phk_<id>_<secret>`     | [`ApiKeys`] (the database) | `key:<id>`, its tenant, scopes |
//! | `phs_<service>_<secret>`| [`ServiceToken`]           | `service:<name>`               |
//! | `<h>.<p>.<s>` (a JWT)   | [`Jwt`] (the issuer's JWKS)| `jwt:<iss>#<sub>`, claims      |
//!
//! # Layout
//! - [`settings`]: [`AuthConfig`] (`[auth]`) and [`JwtConfig`] (`[auth.jwt]`).
//! - [`keys`]: API keys: their format, their keyed hash, [`KeyStore`] and [`ApiKeys`].
//! - [`repository`]: where keys are stored, the SQL for SQLite and PostgreSQL, the
//!   migrations, the conformance suite (feature `testing`).
//! - [`service_token`]: the services' shared token.
//! - [`jwt`]: JWTs from an OIDC issuer, its JWKS kept fresh in the background.
//! - [`authenticator`]: [`Authenticator`], the dispatch.
//! - [`error`]: why an operation failed ([`IdentityError`]).

pub mod authenticator;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod repository;
mod secret;
pub mod service_token;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use authenticator::Authenticator;
pub use error::IdentityError;
pub use jwt::Jwt;
pub use keys::{ApiKeys, KeyStore};
pub use repository::{KeyInfo, SqlKeyRepository, migrator};
pub use secret::Secret;
pub use service_token::ServiceToken;
pub use settings::{AuthConfig, JwtConfig};
