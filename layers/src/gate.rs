//! A gate that answers calls at once, with `UNAVAILABLE`, while something the server cannot
//! work without is down.
//!
//! A server whose database stopped answering would otherwise take each call, wait for a
//! connection until the pool gives up (a second or more), and answer `UNAVAILABLE` then: a
//! caller's deadline spent on a known outcome, and a queue of waiting calls holding memory.
//! Whatever watches the dependency (the readiness probe) closes the gate, with the reason
//! callers are told, and opens it again when the dependency answers; meanwhile calls are
//! refused before any work, with a `RetryInfo` of [`RETRY_AFTER`], so that a client retries
//! another replica or later. Health probes and reflection always pass.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::methods::Exempt;

/// When a refused caller is told to try again: about when the gate is next reconsidered.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    reason: Mutex<String>,
}

/// Open or closed, shared by every clone. Open when made.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    shared: Arc<Shared>,
}

impl Gate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses calls from now on, telling callers `reason` ("the database is not answering").
    pub fn close(&self, reason: &str) {
        let mut held = self.shared.reason.lock().expect("gate lock");
        if held.as_str() != reason {
            reason.clone_into(&mut held);
        }
        self.shared.closed.store(true, Ordering::Release);
    }

    /// Lets calls through again.
    pub fn open(&self) {
        self.shared.closed.store(false, Ordering::Release);
    }

    /// Why calls are refused, when they are.
    pub fn closed(&self) -> Option<String> {
        self.shared
            .closed
            .load(Ordering::Acquire)
            .then(|| self.shared.reason.lock().expect("gate lock").clone())
    }
}

/// Applies a [`Gate`] to a server.
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Gate,
    exempt: Exempt,
}

impl GateLayer {
    /// A layer over `gate`; `exempt` paths always pass (a server's probes).
    pub fn new(gate: Gate, exempt: Exempt) -> Self {
        Self { gate, exempt }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

/// The service built by [`GateLayer`].
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Gate,
    exempt: Exempt,
}

impl<S, B, RB> Service<Request<B>> for GateService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<RB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.gate.closed() {
            Some(reason) if !self.exempt.contains(req.uri().path()) => {
                let refusal = crate::Error::Unavailable {
                    message: format!("not ready: {reason}"),
                    retry_after: Some(RETRY_AFTER),
                };
                Either::Right(ready(Ok(tonic::Status::from(refusal).into_http())))
            }
            _ => Either::Left(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic_types::StatusExt as _;
    use tower::{ServiceExt as _, service_fn};

    use super::*;

    async fn call(gate: &Gate, path: &str) -> Option<tonic::Status> {
        let inner = service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("handled")))
        });
        let layer = GateLayer::new(gate.clone(), Exempt::prefixes(["/grpc.health.v1.Health/"]));
        let response = layer
            .layer(inner)
            .oneshot(Request::builder().uri(path).body(()).unwrap())
            .await
            .unwrap();
        if response.body() == "handled" {
            return None;
        }
        Some(tonic::Status::from_header_map(response.headers()).expect("a gRPC status"))
    }

    #[tokio::test]
    async fn a_closed_gate_refuses_at_once_with_its_reason_and_a_retry_hint() {
        let gate = Gate::new();
        assert!(
            call(&gate, "/phantom.v1.ScanOrchestrator/GetScan")
                .await
                .is_none()
        );

        gate.close("the database is not answering");
        let refused = call(&gate, "/phantom.v1.ScanOrchestrator/GetScan")
            .await
            .expect("refused");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(
            refused.message(),
            "not ready: the database is not answering"
        );
        let retry = refused.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(RETRY_AFTER));
        // Probes pass: the kubelet sees the server as it is.
        assert!(call(&gate, "/grpc.health.v1.Health/Check").await.is_none());

        gate.open();
        assert!(
            call(&gate, "/phantom.v1.ScanOrchestrator/GetScan")
                .await
                .is_none()
        );
    }
}
