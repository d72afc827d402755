use tower_layer::Layer;

use super::{Tenant, TenantSource, service::TenantService};

/// Resolves the tenant of each call, see the [module docs](super).
#[derive(Debug, Clone)]
pub struct TenantLayer {
    source: TenantSource,
}

impl TenantLayer {
    /// Every call acts for `tenant` (single-tenant deployments, embedded mode).
    pub fn fixed(tenant: Tenant) -> Self {
        Self {
            source: TenantSource::Fixed(tenant),
        }
    }

    /// Calls act for the tenant their `x-phantom-tenant` metadata names, `default` otherwise.
    /// Only for servers reachable solely by trusted peers.
    pub fn trusted_header(default: Tenant) -> Self {
        Self {
            source: TenantSource::TrustedHeader { default },
        }
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            source: self.source.clone(),
        }
    }
}
