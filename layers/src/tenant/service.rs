use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;

use super::{Tenant, TenantSource};
use crate::{
    Error,
    request_id::{self, CallContext},
};

/// The service built by [`super::TenantLayer`].
#[derive(Debug, Clone)]
pub struct TenantService<S> {
    pub(super) inner: S,
    pub(super) source: TenantSource,
}

impl<S> TenantService<S> {
    fn resolve<B>(&self, req: &Request<B>) -> Result<Tenant, Error> {
        match &self.source {
            TenantSource::Fixed(t) => Ok(t.clone()),
            TenantSource::TrustedHeader { default } => super::named_in(req.headers(), default),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = TenantResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.resolve(&req) {
            Ok(tenant) => {
                // The server span is current here (see `trace::ServerSpan`); it declared the field.
                tracing::Span::current().record("tenant", tenant.as_str());
                req.extensions_mut().insert(tenant.clone());
                let ctx = super::call_context(tenant, req.extensions());
                TenantResponseFuture::Inner {
                    fut: request_id::scope(ctx, self.inner.call(req)),
                }
            }
            Err(err) => TenantResponseFuture::Refused {
                status: Some(tonic::Status::from(err)),
            },
        }
    }
}

pin_project! {
    /// Response future of [`TenantService`].
    #[project = Proj]
    #[derive(Debug)]
    #[allow(missing_docs)]
    pub enum TenantResponseFuture<F> {
        /// The call goes on with its tenant in scope.
        Inner {
            #[pin]
            fut: TaskLocalFuture<CallContext, F>,
        },
        /// The caller's tenant was malformed; answered without calling the service.
        Refused {
            status: Option<tonic::Status>,
        },
    }
}

impl<F, RB, E> Future for TenantResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Refused { status } => {
                let status = status.take().expect("polled after completion");
                Poll::Ready(Ok(status.into_http()))
            }
        }
    }
}
