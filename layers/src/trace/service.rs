use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::{Instrument, Span, field::Empty, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{outcome::SpanOutcome, propagation, split_path, traced};
use crate::classify::{ClassifiedBody, OnOutcome, Outcome};

/// The service built by [`super::ServerSpanLayer`].
#[derive(Debug, Clone)]
pub struct ServerSpan<S> {
    pub(super) inner: S,
    pub(super) service: &'static str,
    pub(super) rejected: std::sync::Arc<crate::tally::Tally>,
}

impl<S> ServerSpan<S> {
    fn span<B>(&self, req: &Request<B>) -> Span {
        let path = req.uri().path();
        if !traced(path) {
            return Span::none();
        }
        let (rpc_service, rpc_method) = split_path(path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format_args!("{rpc_service}/{rpc_method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = rpc_service,
            rpc.method = rpc_method,
            rpc.grpc.status_code = Empty,
            service = self.service,
            correlation_id = Empty,
            tenant = Empty,
        );
        let parent = propagation::extract(req.headers());
        if opentelemetry::trace::TraceContextExt::span(&parent)
            .span_context()
            .is_valid()
        {
            // Only fails without an OpenTelemetry layer, where there is nothing to link.
            let _ = span.set_parent(parent);
        }
        span
    }
}

impl<S, B, RB> Service<Request<B>> for ServerSpan<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<ClassifiedBody<RB, SpanOutcome>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = self.span(&req);
        // Entered while the layers below take the request, so they can record their fields
        // (`correlation_id`, `tenant`) on it.
        let fut = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner: fut.instrument(span.clone()),
            outcome: Some(SpanOutcome::server(
                span,
                self.service,
                self.rejected.clone(),
            )),
        }
    }
}

/// The service built by [`super::ClientSpanLayer`].
#[derive(Debug, Clone)]
pub struct ClientSpan<S> {
    pub(super) inner: S,
    pub(super) service: Arc<str>,
}

impl<S, B, RB> Service<Request<B>> for ClientSpan<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<ClassifiedBody<RB, SpanOutcome>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let span = if traced(path) {
            let (rpc_service, rpc_method) = split_path(path);
            tracing::info_span!(
                "grpc.client",
                otel.name = %format_args!("{rpc_service}/{rpc_method}"),
                otel.kind = "client",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = rpc_service,
                rpc.method = rpc_method,
                rpc.grpc.status_code = Empty,
                service = &*self.service,
            )
        } else {
            Span::none()
        };
        if !span.is_none() {
            // The callee's server span is this span's child.
            propagation::inject(&span.context(), req.headers_mut());
        }
        let fut = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner: fut.instrument(span.clone()),
            outcome: Some(SpanOutcome::client(span)),
        }
    }
}

pin_project! {
    /// Response future of [`ServerSpan`] and [`ClientSpan`]: hands the span to the response
    /// body, which ends it with the call's status.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        outcome: Option<SpanOutcome>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ClassifiedBody<RB, SpanOutcome>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let outcome = this.outcome.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(res) => Ok(ClassifiedBody::wrap(res, outcome)),
            Err(err) => {
                outcome.on_outcome(Outcome::Transport);
                Err(err)
            }
        })
    }
}
