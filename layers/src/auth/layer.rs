use std::sync::Arc;

use tower_layer::Layer;

use super::{Authenticate, Policy, service::AuthService};
use crate::{Tenant, methods::Exempt, rate_limit::RateLimiter};

/// What a server's [`AuthLayer`] decides with.
#[derive(Clone)]
pub struct AuthSettings {
    /// Who may call which method.
    pub policy: Policy,
    /// Checks bearer credentials.
    pub authenticator: Arc<dyn Authenticate>,
    /// The tenant of a service identity's call that names none.
    pub default_tenant: Tenant,
    /// Paths never authenticated: health (kubelet sends no credentials) and, if the
    /// deployment says so, reflection.
    pub exempt: Exempt,
    /// Attempts without a credential it can check from memory, per peer address: what keeps a
    /// guesser from turning each guess into a store lookup.
    pub unauthenticated: RateLimiter,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("policy", &self.policy)
            .field("default_tenant", &self.default_tenant)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

/// Authenticates and authorizes every call, and resolves its tenant; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    settings: Arc<AuthSettings>,
}

impl AuthLayer {
    /// A layer deciding with `settings`.
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            settings: self.settings.clone(),
        }
    }
}
