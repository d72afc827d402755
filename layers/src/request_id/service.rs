use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use super::{CORRELATION_ID_HEADER, CallContext, REQUEST_ID_HEADER, RequestId, context};
use crate::{
    deadline::{self, GRPC_TIMEOUT},
    tenant::TENANT_HEADER,
};
use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;

/// The header names as values, parsed once: a `&str` name is parsed and hashed again at
/// every lookup and insert.
const CORRELATION_ID: HeaderName = HeaderName::from_static(CORRELATION_ID_HEADER);
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// The service built by [`super::RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    service_name: &'static str,
}

impl<S> RequestIdService<S> {
    pub(super) fn new(inner: S, service_name: &'static str) -> Self {
        Self {
            inner,
            service_name,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers();
        let id = [&CORRELATION_ID, &REQUEST_ID]
            .into_iter()
            .find_map(|name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(RequestId::parse)
            })
            .unwrap_or_else(RequestId::generate);
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            req.headers_mut().insert(CORRELATION_ID, value.clone());
            req.headers_mut().insert(REQUEST_ID, value);
        }
        req.extensions_mut().insert(id.clone());
        // The server span is current here (see `trace::ServerSpan`); it declared the field.
        tracing::Span::current().record("correlation_id", id.as_str());
        tracing::debug!(service = self.service_name, "Call received");
        let deadline = req
            .headers()
            .get(crate::deadline::GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse)
            .map(|d| tokio::time::Instant::now() + d);
        let ctx = CallContext {
            request_id: id.clone(),
            tenant: None,
            deadline,
        };
        // In scope for the inner `call` as well as its future: the layers below (tenant,
        // auth) build their own context in `call`, from this one.
        let fut = context::sync_scope(ctx.clone(), || self.inner.call(req));
        let fut = context::scope(ctx, fut);
        ResponseFuture { inner: fut, id }
    }
}

pin_project! {
    /// Response future of [`RequestIdService`]: echoes the correlation id on the response.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<CallContext, F>,
        id: RequestId,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Ok(value) = HeaderValue::from_str(this.id.as_str()) {
            res.headers_mut().insert(CORRELATION_ID, value.clone());
            res.headers_mut().insert(REQUEST_ID, value);
        }
        Poll::Ready(Ok(res))
    }
}

/// The service built by [`super::PropagateContextLayer`].
#[derive(Debug, Clone)]
pub struct PropagateContext<S> {
    pub(super) inner: S,
}

impl<S, B, RB> Service<Request<B>> for PropagateContext<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = PropagateFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(ctx) = context::current() {
            let headers = req.headers_mut();
            if !headers.contains_key(CORRELATION_ID_HEADER)
                && !headers.contains_key(REQUEST_ID_HEADER)
                && let Ok(v) = HeaderValue::from_str(ctx.request_id.as_str())
            {
                headers.insert(CORRELATION_ID_HEADER, v.clone());
                headers.insert(REQUEST_ID_HEADER, v);
            }
            if let Some(tenant) = &ctx.tenant
                && let Ok(v) = HeaderValue::from_str(tenant.as_str())
            {
                headers.insert(TENANT_HEADER, v);
            }
            if let Some(deadline) = ctx.deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    let status =
                        tonic::Status::deadline_exceeded("the incoming call's deadline has passed");
                    return PropagateFuture::Expired {
                        response: Some(status.into_http()),
                    };
                }
                // The downstream call gets what is left, or its own timeout if that is shorter.
                let own = headers
                    .get(GRPC_TIMEOUT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(deadline::parse);
                let budget = own.map_or(left, |own| own.min(left));
                if let Ok(v) = HeaderValue::from_str(&deadline::format(budget)) {
                    headers.insert(GRPC_TIMEOUT, v);
                }
            }
        }
        PropagateFuture::Inner {
            fut: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`PropagateContext`].
    #[project = PropagateProj]
    #[allow(missing_docs)]
    pub enum PropagateFuture<F, RB> {
        /// The call goes on.
        Inner { #[pin] fut: F },
        /// The incoming deadline had already passed: answered locally.
        Expired { response: Option<Response<RB>> },
    }
}

impl<F, RB, E> Future for PropagateFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PropagateProj::Inner { fut } => fut.poll(cx),
            PropagateProj::Expired { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
