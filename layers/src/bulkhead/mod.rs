//! Bulkhead: at most `max_concurrent` calls in flight; the next one is rejected at once
//! (`RESOURCE_EXHAUSTED`), never queued.
//!
//! On a client it isolates one dependency (a slow analyzer cannot take every task of the
//! orchestrator with it); on a server it sheds load when the service itself is saturated,
//! so excess calls fail fast instead of queueing into timeouts. Health probes and
//! reflection always pass.
//!
//! A call holds its slot for as long as it runs: until its response body ends or is dropped
//! ([`BulkheadBody`]), not only until its response head. A server-streaming call that stays
//! open keeps its handler, its buffers and its stream; counting it only until its head would
//! let any number of them run under a bulkhead that reads empty.

mod body;

pub use body::BulkheadBody;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use crate::methods::Exempt;

/// A bulkhead's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Off: no bound.
    pub enabled: bool,
    /// Calls in flight at most.
    pub max_concurrent: u32,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_concurrent: 256,
        }
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    semaphore: Option<Arc<Semaphore>>,
    max: u32,
    rejected: AtomicU64,
}

/// A bulkhead shared by every clone.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    shared: Arc<Shared>,
}

/// What a bulkhead looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct BulkheadSnapshot {
    /// Its name.
    pub name: String,
    /// Calls in flight.
    pub in_flight: u32,
    /// The bound (0: unbounded).
    pub max_concurrent: u32,
    /// Calls rejected since start.
    pub rejected: u64,
}

impl Bulkhead {
    /// A bulkhead for `config`.
    pub fn new(name: &str, config: BulkheadConfig) -> Self {
        let bounded = config.enabled && config.max_concurrent > 0;
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                semaphore: bounded
                    .then(|| Arc::new(Semaphore::new(config.max_concurrent as usize))),
                max: if bounded { config.max_concurrent } else { 0 },
                rejected: AtomicU64::new(0),
            }),
        }
    }

    /// A slot, or `None` when full. Unbounded bulkheads always give one.
    pub fn try_enter(&self) -> Result<Option<OwnedSemaphorePermit>, crate::Error> {
        let Some(sem) = &self.shared.semaphore else {
            return Ok(None);
        };
        sem.clone().try_acquire_owned().map(Some).map_err(|_| {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            crate::Error::ResourceExhausted {
                message: format!(
                    "{} is at its limit of {} concurrent calls",
                    self.shared.name, self.shared.max
                ),
                // Saturation clears as calls finish; a short, jittered pause is the honest hint.
                retry_after: Some(Duration::from_millis(50 + fastrand::u64(0..50))),
            }
        })
    }

    /// The bulkhead now.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let s = &self.shared;
        BulkheadSnapshot {
            name: s.name.clone(),
            in_flight: s.semaphore.as_ref().map_or(0, |sem| {
                s.max - u32::try_from(sem.available_permits()).unwrap_or(s.max)
            }),
            max_concurrent: s.max,
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }
}

/// Applies a [`Bulkhead`].
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
    exempt: Exempt,
}

impl BulkheadLayer {
    /// A layer over `bulkhead`.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self {
            bulkhead,
            exempt: Exempt::default(),
        }
    }

    /// Lets the `exempt` paths through without a slot, even when full (a server's probes).
    pub fn with_exempt(mut self, exempt: Exempt) -> Self {
        self.exempt = exempt;
        self
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

/// The service built by [`BulkheadLayer`].
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
    exempt: Exempt,
}

impl<S, B, RB> Service<Request<B>> for BulkheadService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<BulkheadBody<RB>>;
    type Error = S::Error;
    type Future = BulkheadFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.exempt.contains(req.uri().path()) {
            return BulkheadFuture::Inner {
                fut: self.inner.call(req),
                permit: None,
            };
        }
        match self.bulkhead.try_enter() {
            Ok(permit) => BulkheadFuture::Inner {
                fut: self.inner.call(req),
                permit,
            },
            Err(err) => BulkheadFuture::Rejected {
                response: Some(tonic::Status::from(err).into_http()),
            },
        }
    }
}

pin_project! {
    /// Response future of [`BulkheadService`]: holds the slot until the response head
    /// arrives, then hands it to the response's [`BulkheadBody`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum BulkheadFuture<F, RB> {
        Inner { #[pin] fut: F, permit: Option<OwnedSemaphorePermit> },
        Rejected { response: Option<Response<RB>> },
    }
}

impl<F, RB, E> Future for BulkheadFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<BulkheadBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Inner { fut, permit } => {
                let out = std::task::ready!(fut.poll(cx));
                // An error ends the call here; a response carries the slot in its body.
                let permit = permit.take();
                Poll::Ready(out.map(|res| res.map(|body| BulkheadBody::new(body, permit))))
            }
            Proj::Rejected { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(|body| BulkheadBody::new(body, None))))
            }
        }
    }
}

impl crate::exposition::Describe for BulkheadSnapshot {
    fn describe(&self, out: &mut crate::exposition::Families) {
        let l = [("bulkhead", self.name.as_str())];
        out.gauge(
            "phantom_bulkhead_in_flight",
            "Calls in flight.",
            &l,
            f64::from(self.in_flight),
        );
        out.counter(
            "phantom_bulkhead_rejected_total",
            "Calls rejected because the bulkhead was full.",
            &l,
            self.rejected as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::{Code, body::Body};
    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rejects_at_once_when_full_and_admits_again_when_a_call_ends() {
        let bulkhead = Bulkhead::new(
            "dep",
            BulkheadConfig {
                enabled: true,
                max_concurrent: 2,
            },
        );
        let (release, gate) = tokio::sync::watch::channel(false);
        let svc = BulkheadLayer::new(bulkhead.clone())
            .with_exempt(Exempt::prefixes(["/grpc.health.v1.Health/"]))
            .layer(service_fn(move |_req: Request<Body>| {
                let mut gate = gate.clone();
                async move {
                    let _ = gate.wait_for(|open| *open).await;
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                }
            }));
        let req = |path: &str| {
            Request::builder()
                .uri(format!("http://x{path}"))
                .body(Body::empty())
                .unwrap()
        };
        let a = tokio::spawn(svc.clone().oneshot(req("/p.S/M")));
        let b = tokio::spawn(svc.clone().oneshot(req("/p.S/M")));
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.snapshot().in_flight, 2);
        let rejected = svc.clone().oneshot(req("/p.S/M")).await.unwrap();
        let status = tonic::Status::from_header_map(rejected.headers()).unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        // Probes pass even when full.
        let probe = tokio::spawn(svc.clone().oneshot(req("/grpc.health.v1.Health/Check")));
        release.send(true).unwrap();
        for t in [a, b, probe] {
            assert!(tonic::Status::from_header_map(t.await.unwrap().unwrap().headers()).is_none());
        }
        assert_eq!(bulkhead.snapshot().in_flight, 0);
        assert_eq!(bulkhead.snapshot().rejected, 1);
    }
}

#[cfg(test)]
mod stream_tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream_like::ReceiverStream;
    use tonic::body::Body;
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// What the handler of [`streaming`] sends, until it is dropped.
    type Frames = mpsc::Sender<Result<Frame<Bytes>, tonic::Status>>;

    /// A bulkhead of one slot over a server-streaming handler whose stream ends when its
    /// [`Frames`] sender is dropped.
    fn streaming() -> (
        Bulkhead,
        impl tower::Service<Request<Body>, Response = Response<BulkheadBody<Body>>, Error = Infallible>
        + Clone,
        Frames,
    ) {
        let bulkhead = Bulkhead::new(
            "stream",
            BulkheadConfig {
                enabled: true,
                max_concurrent: 1,
            },
        );
        let (tx, rx) = mpsc::channel(4);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
        let svc = BulkheadLayer::new(bulkhead.clone())
            .with_exempt(Exempt::prefixes(["/grpc.health.v1.Health/"]))
            .layer(service_fn(move |_req: Request<Body>| {
                let rx = rx.lock().unwrap().take().expect("one call");
                async move {
                    Ok::<_, Infallible>(Response::new(Body::new(StreamBody::new(ReceiverStream(
                        rx,
                    )))))
                }
            }));
        (bulkhead, svc, tx)
    }

    fn req() -> Request<Body> {
        Request::builder()
            .uri("http://x/p.S/Watch")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_stream_holds_its_slot_until_its_body_ends() {
        let (bulkhead, svc, tx) = streaming();
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(
            bulkhead.snapshot().in_flight,
            1,
            "the head is sent but the stream goes on"
        );
        let second = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(
            tonic::Status::from_header_map(second.headers()).map(|s| s.code()),
            Some(tonic::Code::ResourceExhausted),
            "a second stream is shed while the first runs"
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        drop(tx);
        let mut body = res.into_body();
        while body.frame().await.is_some() {}
        assert_eq!(bulkhead.snapshot().in_flight, 0, "the stream ended");
    }

    #[tokio::test]
    async fn a_stream_dropped_by_its_caller_gives_its_slot_back() {
        let (bulkhead, svc, _tx) = streaming();
        let res = svc.oneshot(req()).await.unwrap();
        assert_eq!(bulkhead.snapshot().in_flight, 1);
        drop(res);
        assert_eq!(bulkhead.snapshot().in_flight, 0);
    }

    mod tokio_stream_like {
        //! `mpsc::Receiver` as a `Stream`, without a dependency on `tokio-stream`.
        pub(super) struct ReceiverStream<T>(pub(super) tokio::sync::mpsc::Receiver<T>);

        impl<T> futures::Stream for ReceiverStream<T> {
            type Item = T;

            fn poll_next(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<T>> {
                self.0.poll_recv(cx)
            }
        }
    }
}
