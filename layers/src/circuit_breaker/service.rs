use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::core::{Breaker, Permit};
use crate::classify::{ClassifiedBody, Classify, OnOutcome, Outcome};

/// The service built by [`super::CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C> {
    pub(super) inner: S,
    pub(super) breaker: Breaker,
    pub(super) classifier: C,
}

/// Reports a call's outcome to its breaker, through the classifier.
#[derive(Debug)]
pub struct Recorder<C> {
    permit: Permit,
    classifier: C,
}

impl<C: Classify> OnOutcome for Recorder<C> {
    fn on_outcome(self, outcome: Outcome) {
        self.permit.record(self.classifier.classify(outcome));
    }
}

impl<S, B, RB, C> Service<Request<B>> for CircuitBreaker<S, C>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
    C: Classify,
{
    type Response = Response<ClassifiedBody<RB, Recorder<C>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.breaker.try_acquire() {
            Ok(permit) => ResponseFuture::Called {
                fut: self.inner.call(req),
                recorder: Some(Recorder {
                    permit,
                    classifier: self.classifier.clone(),
                }),
            },
            Err(open) => {
                tracing::debug!(breaker = %open.name, state = ?open.state, "Call rejected by circuit breaker");
                let status = tonic::Status::from(crate::Error::from(open));
                ResponseFuture::Rejected {
                    response: Some(status.into_http()),
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, C: Classify, RB> {
        /// The call was admitted.
        Called { #[pin] fut: F, recorder: Option<Recorder<C>> },
        /// The breaker refused it: a synthesized `UNAVAILABLE` response.
        Rejected { response: Option<Response<ClassifiedBody<RB, Recorder<C>>>> },
    }
}

impl<F, C, RB, E> Future for ResponseFuture<F, C, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    C: Classify,
{
    type Output = Result<Response<ClassifiedBody<RB, Recorder<C>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Called { fut, recorder } => {
                let result = std::task::ready!(fut.poll(cx));
                let recorder = recorder.take().expect("polled after completion");
                Poll::Ready(match result {
                    Ok(response) => Ok(ClassifiedBody::wrap(response, recorder)),
                    Err(err) => {
                        recorder.on_outcome(Outcome::Transport);
                        Err(err)
                    }
                })
            }
            Proj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}
