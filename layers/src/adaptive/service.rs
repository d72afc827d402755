use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::limiter::{ConcurrencyLimiter, Slot};
use crate::{
    classify::{ClassifiedBody, Classify, Load, OnOutcome, Outcome},
    methods::Exempt,
};

/// The service built by [`super::AdaptiveConcurrencyLayer`].
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrency<S, C> {
    pub(super) inner: S,
    pub(super) limiter: ConcurrencyLimiter,
    pub(super) classifier: C,
    pub(super) exempt: Exempt,
}

/// Holds a call's [`Slot`] until the call ends, then reports it: the latency measured at
/// its response head, and what its outcome says of the load.
#[derive(Debug)]
pub struct Recorder<C> {
    slot: Slot,
    classifier: C,
    rtt: Duration,
}

impl<C: Classify> OnOutcome for Recorder<C> {
    fn on_outcome(self, outcome: Outcome) {
        match self.classifier.load(outcome) {
            Load::Served => self.slot.record(self.rtt, false),
            Load::Overloaded => self.slot.record(self.rtt, true),
            // The slot is given back as it drops; nothing is learnt.
            Load::Unknown => {}
        }
    }
}

impl<S, B, RB, C> Service<Request<B>> for AdaptiveConcurrency<S, C>
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
        if self.exempt.contains(req.uri().path()) {
            return ResponseFuture::Called {
                fut: self.inner.call(req),
                admitted: None,
            };
        }
        match self.limiter.try_acquire() {
            Ok(slot) => ResponseFuture::Called {
                fut: self.inner.call(req),
                admitted: Some((slot, self.classifier.clone())),
            },
            Err(err) => {
                tracing::debug!(
                    limiter = self.limiter.name(),
                    limit = self.limiter.limit(),
                    "Call refused by adaptive concurrency limit"
                );
                ResponseFuture::Rejected {
                    response: Some(tonic::Status::from(err).into_http()),
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`AdaptiveConcurrency`]: holds the slot until the response head
    /// arrives, then hands it to the response's body, which holds it until the call ends
    /// (its trailers, its end or error, or being dropped) and reports the call then.
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, C, RB> {
        /// The call was admitted (with a slot) or exempt (without).
        Called { #[pin] fut: F, admitted: Option<(Slot, C)> },
        /// The limit was reached: a synthesized `RESOURCE_EXHAUSTED` response.
        Rejected { response: Option<Response<RB>> },
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
            Proj::Called { fut, admitted } => {
                let result = std::task::ready!(fut.poll(cx));
                let Some((slot, classifier)) = admitted.take() else {
                    return Poll::Ready(result.map(|res| res.map(ClassifiedBody::unobserved)));
                };
                // The latency is the time to the head: a unary call's whole handling, a
                // stream's setup. Its lifetime is held by the slot, not measured.
                let recorder = Recorder {
                    rtt: slot.started().elapsed(),
                    slot,
                    classifier,
                };
                Poll::Ready(match result {
                    Ok(response) => Ok(ClassifiedBody::wrap(response, recorder)),
                    Err(err) => {
                        recorder.on_outcome(Outcome::Transport);
                        Err(err)
                    }
                })
            }
            Proj::Rejected { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(ClassifiedBody::unobserved)))
            }
        }
    }
}
