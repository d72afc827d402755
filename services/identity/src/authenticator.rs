//! [`Authenticator`]: the one [`Authenticate`] a server is given, dispatching on the form of
//! the bearer.

use std::{future::Future, pin::Pin, sync::Arc};

use phantom_layers::auth::{Authenticate, Principal, Refusal};
use phantom_storage::Database;

use crate::{
    ApiKeys, AuthConfig, IdentityError, Jwt, KeyStore, ServiceToken, SqlKeyRepository,
    keys::KEY_PREFIX, service_token::SERVICE_TOKEN_PREFIX,
};

/// API keys, the services' token (if configured) and JWTs (if configured), told apart by
/// the bearer's form: `phk_…`, `phs_…`, or three dot-separated base64url parts. Anything
/// else is [`Refusal::Unknown`], without a lookup. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: ApiKeys,
    service: Option<ServiceToken>,
    jwt: Option<Jwt>,
}

impl Authenticator {
    /// Accepts the API keys of `keys` only.
    pub fn new(keys: ApiKeys) -> Self {
        Self {
            keys,
            service: None,
            jwt: None,
        }
    }

    /// Also accepts the services' token.
    #[must_use]
    pub fn with_service_token(mut self, token: ServiceToken) -> Self {
        self.service = Some(token);
        self
    }

    /// Also accepts the JWTs `jwt` checks.
    #[must_use]
    pub fn with_jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Everything `config` (validated) configures: API keys in `db` (migrated with
    /// [`crate::migrator`]) hashed under `key_secret`, the service token if set, JWTs if
    /// `[auth.jwt]` is (its JWKS read now, then kept fresh in the background).
    pub async fn from_config(config: &AuthConfig, db: Database) -> Result<Self, IdentityError> {
        let store = KeyStore::new(Arc::new(SqlKeyRepository::new(db)), &config.key_secret);
        let mut this = Self::new(ApiKeys::new(store, config.cache_ttl));
        if let Some(secret) = &config.service_token {
            this = this.with_service_token(ServiceToken::new(secret.clone())?);
        }
        if let Some(jwt) = &config.jwt {
            this = this.with_jwt(Jwt::start(jwt.clone()).await?);
        }
        Ok(this)
    }

    /// The API keys (to create, list and revoke them).
    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// The services' token, if accepted (to hand to PHANTOM's own clients).
    pub fn service_token(&self) -> Option<&ServiceToken> {
        self.service.as_ref()
    }

    fn route(&self, bearer: &str) -> Option<&dyn Authenticate> {
        if bearer.starts_with(KEY_PREFIX) {
            Some(&self.keys)
        } else if bearer.starts_with(SERVICE_TOKEN_PREFIX) {
            self.service.as_ref().map(|s| s as &dyn Authenticate)
        } else if looks_like_jwt(bearer) {
            self.jwt.as_ref().map(|j| j as &dyn Authenticate)
        } else {
            None
        }
    }
}

/// Three non-empty base64url parts separated by dots.
fn looks_like_jwt(bearer: &str) -> bool {
    let mut parts = 0;
    for part in bearer.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

impl Authenticate for Authenticator {
    fn authenticate(
        &self,
        bearer: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'static>> {
        match self.route(bearer) {
            Some(a) => a.authenticate(bearer),
            None => Box::pin(std::future::ready(Err(Refusal::Unknown))),
        }
    }

    /// A bearer of no accepted form is refused from memory: cheap.
    fn is_cheap(&self, bearer: &str) -> bool {
        self.route(bearer).is_none_or(|a| a.is_cheap(bearer))
    }
}

#[cfg(test)]
mod tests {
    use phantom_layers::auth::Identity;

    use super::*;
    use crate::{
        Secret,
        keys::tests::{scopes, setup, tenant},
    };

    #[tokio::test]
    async fn each_form_goes_to_its_checker() {
        let (keys, _, _) = setup();
        let (info, key) = keys
            .store()
            .create(tenant(), scopes(), "ci", None)
            .await
            .unwrap();
        let token = ServiceToken::new(Secret::new("t".repeat(32))).unwrap();
        let bearer = token.bearer("notifier");
        let without = Authenticator::new(keys.clone());
        assert_eq!(without.authenticate(&bearer).await, Err(Refusal::Unknown));
        assert!(without.is_cheap(&bearer), "refused from memory");
        let auth = without.with_service_token(token);

        let p = auth.authenticate(&key).await.unwrap();
        assert_eq!(p.identity, Identity::ApiKey { key_id: info.id });
        assert_eq!(
            auth.authenticate(&bearer).await.unwrap(),
            Principal::service("notifier")
        );
        assert!(auth.is_cheap(&bearer));
        for garbage in ["", "Basic abc", "eyJh.eyJz.c2ln", "phx_abc"] {
            assert_eq!(
                auth.authenticate(garbage).await,
                Err(Refusal::Unknown),
                "{garbage:?}"
            );
            assert!(auth.is_cheap(garbage), "{garbage:?}");
        }
    }

    #[test]
    fn jwt_shape_is_three_base64url_parts() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("eyJh.eyJz"));
        assert!(!looks_like_jwt("eyJh..c2ln"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b.c+"));
    }
}
