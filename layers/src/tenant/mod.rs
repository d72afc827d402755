//! Tenancy: which tenant a call acts for.
//!
//! The tenant is resolved once, at the server's edge, from the caller's identity; handlers read
//! it from the request extensions and every query carries it, so one tenant never reads
//! another's data. Until authentication lands, the identity is either the deployment's single
//! tenant ([`TenantLayer::fixed`], the embedded default) or the `x-phantom-tenant` metadata set
//! by a trusted peer ([`TenantLayer::trusted_header`], for PHANTOM's own service-to-service
//! hops behind a mesh that strips the header at ingress).

mod layer;
mod service;

pub use layer::TenantLayer;
pub use service::{TenantResponseFuture, TenantService};

/// Metadata key carrying the tenant between PHANTOM services.
pub const TENANT_HEADER: &str = "x-phantom-tenant";

/// A tenant identifier; the domain type, re-exported here for the layer's users.
pub use phantom_domain::Tenant;

/// How a server decides the tenant of a call.
#[derive(Debug, Clone)]
pub enum TenantSource {
    /// Every call acts for this tenant.
    Fixed(Tenant),
    /// Calls act for the tenant in `x-phantom-tenant`, or `default` without one.
    TrustedHeader {
        /// Tenant of calls that carry no header.
        default: Tenant,
    },
}

/// The tenant `headers` name in `x-phantom-tenant`, `default` without one; a malformed one
/// is INVALID_ARGUMENT. Only for callers trusted to name the tenant they act for.
pub(crate) fn named_in(
    headers: &http::HeaderMap,
    default: &Tenant,
) -> Result<Tenant, crate::Error> {
    match headers.get(TENANT_HEADER) {
        None => Ok(default.clone()),
        Some(v) => v.to_str().ok().and_then(Tenant::parse).ok_or_else(|| {
            crate::Error::invalid(TENANT_HEADER, "tenant must be 1-63 characters of [a-z0-9-]")
        }),
    }
}

/// The call context of a call acting for `tenant`: its request id (from `extensions`, or the
/// call being served, or a new one) and the deadline of the call being served.
pub(crate) fn call_context(
    tenant: Tenant,
    extensions: &http::Extensions,
) -> crate::request_id::CallContext {
    use crate::request_id::{self, RequestId};
    let outer = request_id::current();
    let request_id = extensions
        .get::<RequestId>()
        .cloned()
        .or_else(|| outer.as_ref().map(|c| c.request_id.clone()))
        .unwrap_or_else(RequestId::generate);
    request_id::CallContext {
        request_id,
        tenant: Some(tenant),
        deadline: outer.and_then(|c| c.deadline),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{Request, Response};
    use tonic::body::Body;
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    fn echo_tenant() -> impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|req: Request<Body>| async move {
            let tenant = req.extensions().get::<Tenant>().unwrap().to_string();
            let mut res = Response::new(Body::empty());
            res.headers_mut().insert("tenant", tenant.parse().unwrap());
            Ok::<_, Infallible>(res)
        })
    }

    /// The stack's edge as a server builds it: the request-id layer, then the tenant layer.
    #[tokio::test]
    async fn the_callers_deadline_reaches_the_handler_under_the_tenant_layer() {
        let handler = service_fn(|_req: Request<Body>| async move {
            let ctx = crate::request_id::current().expect("a call context");
            let left = ctx
                .deadline
                .map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            let mut res = Response::new(Body::empty());
            res.headers_mut().insert(
                "left-ms",
                format!("{}", left.map_or(-1, |l| l.as_millis() as i64))
                    .parse()
                    .unwrap(),
            );
            res.headers_mut()
                .insert("tenant", ctx.tenant.unwrap().to_string().parse().unwrap());
            Ok::<_, Infallible>(res)
        });
        let svc = crate::request_id::RequestIdLayer::new("test")
            .layer(TenantLayer::fixed(Tenant::parse("default").unwrap()).layer(handler));
        let req = Request::builder()
            .header("grpc-timeout", "5S")
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let left: i64 = res.headers()["left-ms"].to_str().unwrap().parse().unwrap();
        assert!(
            left > 0 && left <= 5000,
            "the deadline was lost: {left} ms left"
        );
        assert_eq!(res.headers()["tenant"], "default");
    }

    #[tokio::test]
    async fn fixed_tenant_ignores_the_header() {
        let svc = TenantLayer::fixed(Tenant::parse("default").unwrap()).layer(echo_tenant());
        let req = Request::builder()
            .header(TENANT_HEADER, "other")
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["tenant"], "default");
    }

    #[tokio::test]
    async fn trusted_header_is_used_and_a_malformed_one_is_refused() {
        let layer = TenantLayer::trusted_header(Tenant::parse("default").unwrap());
        let svc = layer.layer(echo_tenant());
        let req = Request::builder()
            .header(TENANT_HEADER, "acme")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().headers()["tenant"],
            "acme"
        );

        let req = Request::builder().body(Body::empty()).unwrap();
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().headers()["tenant"],
            "default"
        );

        let req = Request::builder()
            .header(TENANT_HEADER, "../etc")
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["grpc-status"], "3");
    }
}
