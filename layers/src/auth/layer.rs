use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tower_layer::Layer;

use super::{Authenticate, Policy, service::AuthService};
use crate::{Tenant, methods::Exempt, rate_limit::RateLimiter, registry::Registry, tally::Tally};

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
    /// Refused calls, counted by status.
    pub refusals: Refusals,
}

/// Calls the auth layer refused, by status: `phantom_auth_refused_total{server,code}`.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    unauthenticated: Arc<AtomicU64>,
    permission_denied: Arc<AtomicU64>,
    resource_exhausted: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
    other: Arc<AtomicU64>,
    /// Refusals of callers with no credential that identifies them, by address and status:
    /// audited as one line per interval, not one per call (see [`crate::tally`]).
    pub(super) anonymous: Arc<Tally>,
}

impl Refusals {
    /// Counters registered in `registry` for the server `server`.
    pub fn registered(registry: &Registry, server: &str) -> Self {
        let counter = |code: &str| {
            registry.counter(
                "phantom_auth_refused_total",
                "Calls refused before their handler by authentication or authorization, by status.",
                &[("server", server), ("code", code)],
            )
        };
        Self {
            unauthenticated: counter("UNAUTHENTICATED"),
            permission_denied: counter("PERMISSION_DENIED"),
            resource_exhausted: counter("RESOURCE_EXHAUSTED"),
            unavailable: counter("UNAVAILABLE"),
            other: counter("OTHER"),
            anonymous: Arc::default(),
        }
    }

    pub(super) fn count(&self, code: tonic::Code) {
        let counter = match code {
            tonic::Code::Unauthenticated => &self.unauthenticated,
            tonic::Code::PermissionDenied => &self.permission_denied,
            tonic::Code::ResourceExhausted => &self.resource_exhausted,
            tonic::Code::Unavailable => &self.unavailable,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
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
