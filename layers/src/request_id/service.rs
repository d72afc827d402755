use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;
use tracing::{Instrument, instrument::Instrumented};

use super::{CallContext, REQUEST_ID_HEADER, RequestId, context};
use crate::tenant::TENANT_HEADER;

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
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate);
        if let Ok(value) = HeaderValue::from_str(id.as_str()) {
            req.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        req.extensions_mut().insert(id.clone());
        let span = tracing::info_span!(
            "grpc",
            service = self.service_name,
            method = %req.uri().path(),
            request_id = %id,
        );
        let ctx = CallContext {
            request_id: id.clone(),
            tenant: None,
        };
        let fut = context::scope(ctx, self.inner.call(req).instrument(span));
        ResponseFuture { inner: fut, id }
    }
}

pin_project! {
    /// Response future of [`RequestIdService`]: echoes the request id on the response.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: TaskLocalFuture<CallContext, Instrumented<F>>,
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
            res.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Poll::Ready(Ok(res))
    }
}

/// The service built by [`super::PropagateContextLayer`].
#[derive(Debug, Clone)]
pub struct PropagateContext<S> {
    pub(super) inner: S,
}

impl<S, B> Service<Request<B>> for PropagateContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(ctx) = context::current() {
            let headers = req.headers_mut();
            if !headers.contains_key(REQUEST_ID_HEADER)
                && let Ok(v) = HeaderValue::from_str(ctx.request_id.as_str())
            {
                headers.insert(REQUEST_ID_HEADER, v);
            }
            if let Some(tenant) = &ctx.tenant
                && let Ok(v) = HeaderValue::from_str(tenant.as_str())
            {
                headers.insert(TENANT_HEADER, v);
            }
        }
        self.inner.call(req)
    }
}
