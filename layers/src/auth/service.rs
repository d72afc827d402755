use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response, header::AUTHORIZATION};
use tonic::transport::server::TcpConnectInfo;
use tower::ServiceExt as _;
use tower_service::Service;

use super::{
    Peer, Principal, Refusal, Requirement,
    audit::{self, AuditTarget},
    layer::AuthSettings,
};
use crate::{Error, Tenant, rate_limit::CallerKey, tenant};

/// The service built by [`super::AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    pub(super) inner: S,
    pub(super) settings: Arc<AuthSettings>,
}

/// Response future of [`AuthService`].
pub type AuthFuture<RB, E> = Pin<Box<dyn Future<Output = Result<Response<RB>, E>> + Send>>;

/// Limiter key and message part for calls with no usable credential.
const UNAUTHENTICATED: &str = "unauthenticated";

/// What every caller without a usable credential is told, whatever was wrong with it.
const NOT_AUTHENTICATED: &str =
    "missing or invalid credentials: send `authorization: Bearer <API key or token>`";

/// Where the call comes from: the connect-info PHANTOM's listeners set, or tonic's own.
fn peer_of<B>(req: &Request<B>) -> Peer {
    if let Some(peer) = req.extensions().get::<Peer>() {
        return peer.clone();
    }
    Peer {
        remote_addr: req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr),
        service: None,
    }
}

/// The bearer credential `headers` carry in `authorization`, if any (`Bearer` in any case, as RFC 6750 allows).
pub fn bearer_of(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The tenant a call of `principal` acts for: a user's own; the one a service names.
fn tenant_for<B>(
    principal: &Principal,
    req: &Request<B>,
    default: &Tenant,
) -> Result<Tenant, Error> {
    match &principal.tenant {
        Some(tenant) => Ok(tenant.clone()),
        None => tenant::named_in(req.headers(), default),
    }
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = AuthFuture<RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_owned();
        if self.settings.exempt.contains(&path) {
            return Box::pin(inner.oneshot(req));
        }
        let settings = self.settings.clone();
        let peer = peer_of(&req);
        // Who it is: known from the connection (mTLS), or a credential to check, or refused.
        let found = match (&peer.service, bearer_of(req.headers())) {
            (Some(service), _) => Found::Known(Principal::service(service.clone())),
            (None, Some(token)) if settings.authenticator.is_cheap(token) => {
                Found::Check(settings.authenticator.authenticate(token))
            }
            (None, token) => match (admit_attempt(&settings, peer.remote_addr), token) {
                (Err(limited), _) => Found::Refused(limited),
                (Ok(()), Some(token)) => Found::Check(settings.authenticator.authenticate(token)),
                (Ok(()), None) => Found::Refused(refusal_error(Refusal::Unknown)),
            },
        };
        Box::pin(async move {
            let principal = match found {
                Found::Known(principal) => Ok(principal),
                Found::Check(check) => check.await.map_err(refusal_error),
                Found::Refused(err) => Err(err),
            };
            let requirement = settings.policy.requirement(&path);
            // Who it was, for the audit line of a refusal: a known principal the method is not
            // for is written by name.
            let mut refused_who = None;
            let decided = principal.and_then(|p| {
                refused_who = Some(p.id());
                authorize(requirement, &p)?;
                let tenant = tenant_for(&p, &req, &settings.default_tenant)?;
                Ok((p, tenant))
            });
            let (principal, tenant) = match decided {
                Ok(decided) => decided,
                Err(err) => {
                    let status = tonic::Status::from(err);
                    settings.refusals.count(status.code());
                    match refused_who.as_deref() {
                        Some(who) => {
                            audit::record(
                                Some(who),
                                None,
                                &path,
                                None,
                                status.code(),
                                peer.remote_addr,
                            );
                        }
                        None => audit::anonymous(
                            &settings.refusals.anonymous,
                            status.code(),
                            peer.remote_addr,
                        ),
                    }
                    return Ok(status.into_http());
                }
            };
            let target = AuditTarget::default();
            let who = principal.id();
            tracing::Span::current().record("tenant", tenant.as_str());
            req.extensions_mut().insert(CallerKey(who.clone()));
            req.extensions_mut().insert(principal);
            req.extensions_mut().insert(tenant.clone());
            req.extensions_mut().insert(target.clone());
            let ctx = tenant::call_context(tenant.clone(), req.extensions());
            let response = crate::request_id::scope(ctx, inner.oneshot(req)).await;
            if let Ok(response) = &response {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
                if requirement.writes() || code != tonic::Code::Ok {
                    audit::record(
                        Some(&who),
                        Some(tenant.as_str()),
                        &path,
                        target.get(),
                        code,
                        peer.remote_addr,
                    );
                }
            }
            response
        })
    }
}

/// What the edge of the call found out about its caller before any await.
enum Found {
    /// A service identity from the connection.
    Known(Principal),
    /// A credential whose check must run.
    Check(Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send>>),
    /// Refused already (no credential, or too many attempts from its address).
    Refused(Error),
}

/// One more attempt from `addr` that costs a lookup (or carries no credential at all).
fn admit_attempt(settings: &AuthSettings, addr: Option<SocketAddr>) -> Result<(), Error> {
    let key = addr.map_or_else(|| UNAUTHENTICATED.to_owned(), |a| a.ip().to_string());
    settings
        .unauthenticated
        .check(UNAUTHENTICATED, &key)
        .map_err(Error::from)
}

fn refusal_error(refusal: Refusal) -> Error {
    match refusal {
        Refusal::Unavailable(why) => {
            tracing::warn!(error = %why, "Credentials could not be checked");
            Error::Unavailable {
                message: "cannot check credentials now; retry".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            }
        }
        other => {
            tracing::debug!(reason = %other, "Credential refused");
            Error::Unauthenticated {
                message: NOT_AUTHENTICATED.into(),
            }
        }
    }
}

fn authorize(requirement: Requirement, principal: &Principal) -> Result<(), Error> {
    if requirement.admits(principal) {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        reason: match requirement {
            Requirement::Scope(_) => "MISSING_SCOPE",
            Requirement::Service => "SERVICE_ONLY",
        },
        message: format!("this method needs {}", requirement.describe()),
    })
}
