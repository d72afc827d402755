//! gRPC server metrics under the usual names (those of go-grpc-prometheus, which dashboards
//! expect): `grpc_server_started_total`, `grpc_server_handled_total{grpc_code}` and the
//! `grpc_server_handling_seconds` histogram, each labelled `grpc_service`, `grpc_method`
//! (and `grpc_type`), in the process [`registry`](crate::registry).
//!
//! The code is read where the call really ends: from the response headers of a
//! trailers-only answer, or from the trailers at the end of the body (a streaming call is
//! handled when its stream ends), through [`ClassifiedBody`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    classify::{ClassifiedBody, OnOutcome, Outcome},
    registry::{self, Histogram},
};

/// Records every call of a gRPC server.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service built by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// `/package.Service/Method` → (`package.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let (service, method) = crate::classify::service_and_method(path)
        .unwrap_or(("unknown", path.strip_prefix('/').unwrap_or(path)));
    (service.to_owned(), method.to_owned())
}

/// Reports one call's end.
#[derive(Debug)]
pub struct Handled {
    service: String,
    method: String,
    started: Instant,
    latency: Arc<Histogram>,
}

impl OnOutcome for Handled {
    fn on_outcome(self, outcome: Outcome) {
        let code = match outcome {
            Outcome::Status(code) => format!("{code:?}"),
            // No status reached the caller: the stream broke or the caller left.
            Outcome::Transport => "Unavailable".to_owned(),
            Outcome::Abandoned => "Canceled".to_owned(),
        };
        registry::global()
            .counter(
                "grpc_server_handled_total",
                "RPCs completed on the server, by status code.",
                &[
                    ("grpc_service", &self.service),
                    ("grpc_method", &self.method),
                    ("grpc_code", &code),
                ],
            )
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.latency.observe(self.started.elapsed());
    }
}

impl<S, B, RB> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<ClassifiedBody<RB, Handled>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let labels = [
            ("grpc_service", service.as_str()),
            ("grpc_method", method.as_str()),
        ];
        let r = registry::global();
        r.counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            &labels,
        )
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let latency = r.histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, on the server.",
            &labels,
        );
        ResponseFuture {
            fut: self.inner.call(req),
            handled: Some(Handled {
                service,
                method,
                started: Instant::now(),
                latency,
            }),
        }
    }
}

pin_project! {
    /// Response future of [`GrpcMetrics`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        handled: Option<Handled>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ClassifiedBody<RB, Handled>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.fut.poll(cx));
        let handled = this.handled.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(response) => Ok(ClassifiedBody::wrap(response, handled)),
            Err(err) => {
                handled.on_outcome(Outcome::Transport);
                Err(err)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/phantom.v1.Notifier/Publish"),
            ("phantom.v1.Notifier".into(), "Publish".into())
        );
        assert_eq!(split_path("/odd"), ("unknown".into(), "odd".into()));
    }
}
