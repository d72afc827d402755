//! A response body that reports the call's [`Outcome`] once, when the body ends.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Outcome, code_in_headers};

/// Told how a call ended, exactly once.
pub trait OnOutcome: Send + 'static {
    /// The call ended with `outcome`.
    fn on_outcome(self, outcome: Outcome);
}

pin_project! {
    /// Wraps a response body and reports the gRPC status found in its trailers (or its end
    /// without one, or an error, or being dropped early) to `O`.
    pub struct ClassifiedBody<B, O: OnOutcome> {
        #[pin]
        inner: B,
        observer: Option<O>,
    }

    impl<B, O: OnOutcome> PinnedDrop for ClassifiedBody<B, O> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(o) = this.project().observer.take() {
                o.on_outcome(Outcome::Abandoned);
            }
        }
    }
}

impl<B: std::fmt::Debug, O: OnOutcome> std::fmt::Debug for ClassifiedBody<B, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifiedBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B, O: OnOutcome> ClassifiedBody<B, O> {
    /// A body that reports to `observer` when it ends.
    pub fn new(inner: B, observer: O) -> Self {
        Self {
            inner,
            observer: Some(observer),
        }
    }

    /// A body whose outcome is already reported (or of no interest).
    pub fn unobserved(inner: B) -> Self {
        Self {
            inner,
            observer: None,
        }
    }

    /// Wraps the body of `response`: if its status is already in the headers, reports now.
    pub fn wrap(response: http::Response<B>, observer: O) -> http::Response<Self> {
        match code_in_headers(response.headers()) {
            Some(code) => {
                observer.on_outcome(Outcome::Status(code));
                response.map(Self::unobserved)
            }
            None => response.map(|b| Self::new(b, observer)),
        }
    }
}

impl<B: Default, O: OnOutcome> Default for ClassifiedBody<B, O> {
    fn default() -> Self {
        Self::unobserved(B::default())
    }
}

impl<B, O> Body for ClassifiedBody<B, O>
where
    B: Body<Data = Bytes>,
    O: OnOutcome,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(o) = this.observer.take()
                {
                    // Trailers without grpc-status break the protocol: the server failed.
                    let code = code_in_headers(trailers).unwrap_or(tonic::Code::Unknown);
                    o.on_outcome(Outcome::Status(code));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(o) = this.observer.take() {
                    o.on_outcome(Outcome::Transport);
                }
            }
            Poll::Ready(None) => {
                if let Some(o) = this.observer.take() {
                    // The stream ended without trailers: the connection was cut short.
                    o.on_outcome(Outcome::Transport);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
