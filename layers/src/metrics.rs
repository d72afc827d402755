//! gRPC server metrics under the usual names (those of go-grpc-prometheus, which dashboards
//! expect): `grpc_server_started_total`, `grpc_server_handled_total{grpc_code}` and the
//! `grpc_server_handling_seconds` histogram, each labelled `grpc_service`, `grpc_method`
//! (and `grpc_type`), in the service's [`Registry`].
//!
//! Labels come from the server's [`KnownMethods`], never from the request path as sent: a
//! call to a method the server does not have is counted under `unknown`, so the number of
//! series is fixed when the server is built, whatever callers send.
//!
//! The code is read where the call really ends: from the response headers of a
//! trailers-only answer, or from the trailers at the end of the body (a streaming call is
//! handled when its stream ends), through [`ClassifiedBody`].

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    classify::{ClassifiedBody, OnOutcome, Outcome},
    methods::{KnownMethods, MethodLabels},
    registry::{Histogram, Registry},
};

/// Records every call of a gRPC server, labelled by the method it names when the server
/// has it, `unknown` otherwise.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    methods: KnownMethods,
    registry: Registry,
}

impl GrpcMetricsLayer {
    /// Metrics labelled from `methods` (the server's own; every other path is `unknown`),
    /// recorded in `registry`.
    pub fn new(methods: KnownMethods, registry: Registry) -> Self {
        Self { methods, registry }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            methods: self.methods.clone(),
            registry: self.registry.clone(),
            handles: Arc::default(),
        }
    }
}

/// The service built by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    methods: KnownMethods,
    registry: Registry,
    /// Each method's series, found in the registry once (a registry lookup builds its key:
    /// label strings, a sort, a hash; three per call cost more than the rest of this layer).
    /// Keyed by known path or `unknown`: bounded by the server's methods.
    handles: Arc<RwLock<HashMap<String, Arc<MethodSeries>>>>,
}

/// One method's series.
#[derive(Debug)]
struct MethodSeries {
    labels: Arc<MethodLabels>,
    started: Arc<AtomicU64>,
    latency: Arc<Histogram>,
    /// `grpc_server_handled_total` per code label, made on first use: one slot per gRPC
    /// code, and one for calls the caller abandoned (no lock on the call's path).
    handled: [OnceLock<Arc<AtomicU64>>; 18],
}

impl<S> GrpcMetrics<S> {
    fn series(&self, path: &str) -> Arc<MethodSeries> {
        let labels = self.methods.labels(path);
        if let Some(found) = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&labels.path)
        {
            return found.clone();
        }
        let names = [
            ("grpc_service", labels.service.as_str()),
            ("grpc_method", labels.method.as_str()),
        ];
        let r = &self.registry;
        let series = Arc::new(MethodSeries {
            started: r.counter(
                "grpc_server_started_total",
                "RPCs started on the server.",
                &names,
            ),
            latency: r.histogram(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status, on the server.",
                &names,
            ),
            handled: Default::default(),
            labels: labels.clone(),
        });
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels.path.clone())
            .or_insert(series)
            .clone()
    }
}

/// Reports one call's end.
#[derive(Debug)]
pub struct Handled {
    series: Arc<MethodSeries>,
    started: Instant,
    registry: Registry,
}

impl OnOutcome for Handled {
    fn on_outcome(self, outcome: Outcome) {
        let (slot, code) = match outcome {
            Outcome::Status(code) => (code as usize, code_label(code)),
            // No status reached the caller: the stream broke or the caller left.
            Outcome::Transport => (tonic::Code::Unavailable as usize, "Unavailable"),
            Outcome::Abandoned => (17, "Canceled"),
        };
        let labels = &self.series.labels;
        self.series.handled[slot]
            .get_or_init(|| {
                self.registry.counter(
                    "grpc_server_handled_total",
                    "RPCs completed on the server, by status code.",
                    &[
                        ("grpc_service", &labels.service),
                        ("grpc_method", &labels.method),
                        ("grpc_code", code),
                    ],
                )
            })
            .fetch_add(1, Ordering::Relaxed);
        self.series.latency.observe(self.started.elapsed());
    }
}

/// The `grpc_code` label of `code` (its name, as go-grpc-prometheus writes it); a code
/// outside the 17 of the protocol (a peer can send any number) is `Unknown`, as tonic reads it.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "Ok",
        C::Cancelled => "Cancelled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
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
        let series = self.series(req.uri().path());
        series.started.fetch_add(1, Ordering::Relaxed);
        ResponseFuture {
            fut: self.inner.call(req),
            handled: Some(Handled {
                series,
                started: Instant::now(),
                registry: self.registry.clone(),
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
    use std::convert::Infallible;

    use tonic::body::Body;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn series(registry: &Registry) -> usize {
        let s = registry.snapshot();
        s.counters.len() + s.histograms.len() + s.gauges.len()
    }

    #[tokio::test]
    async fn calls_to_twenty_thousand_unknown_methods_add_a_bounded_number_of_series() {
        let known = KnownMethods::new(["/phantom.v1.Notifier/Publish"]);
        let registry = Registry::default();
        let svc = GrpcMetricsLayer::new(known, registry.clone()).layer(service_fn(
            |_req: Request<Body>| async {
                Ok::<_, Infallible>(tonic::Status::unimplemented("").into_http::<Body>())
            },
        ));
        let before = series(&registry);
        for i in 0..20_000 {
            let req = Request::builder()
                .uri(format!("http://x/attacker.Svc{i}/Method{i}"))
                .body(Body::empty())
                .unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
        let grown = series(&registry) - before;
        // started, handled{Unimplemented} and the histogram of `unknown`.
        assert!(
            grown <= 3,
            "20,000 unknown methods added {grown} metric series"
        );
    }

    #[tokio::test]
    async fn a_known_method_is_labelled_with_its_service_and_name() {
        let known = KnownMethods::new(["/metrics.test.Svc/Known"]);
        let registry = Registry::default();
        let svc = GrpcMetricsLayer::new(known, registry.clone()).layer(service_fn(
            |_req: Request<Body>| async {
                Ok::<_, Infallible>(tonic::Status::not_found("").into_http::<Body>())
            },
        ));
        let req = Request::builder()
            .uri("http://x/metrics.test.Svc/Known")
            .body(Body::empty())
            .unwrap();
        svc.oneshot(req).await.unwrap();
        let handled = registry.snapshot().counters.into_iter().find(|c| {
            c.name == "grpc_server_handled_total"
                && c.labels.get("grpc_service").map(String::as_str) == Some("metrics.test.Svc")
        });
        let handled = handled.expect("a series for the known method");
        assert_eq!(handled.labels["grpc_method"], "Known");
        assert_eq!(handled.labels["grpc_code"], "NotFound");
        assert_eq!(handled.value, 1);
    }
}
