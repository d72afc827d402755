//! The response body that holds a call's bulkhead slot until the call is over.
//!
//! A streaming call is not over when its response head is sent: it goes on for as long as
//! its body does, holding a handler, its buffers and a stream. Its slot goes with the body's
//! last frame (the trailers, or the end), its error, or the body being dropped (the caller
//! left, the connection broke), whichever comes first.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;

pin_project! {
    /// A response body holding its call's slot of a [`Bulkhead`](super::Bulkhead) until it
    /// ends or is dropped.
    pub struct BulkheadBody<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B> BulkheadBody<B> {
    /// `inner`, holding `permit` (if any) until it ends.
    pub fn new(inner: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { inner, permit }
    }

    /// Whether the body still holds a slot.
    pub fn holds_slot(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for BulkheadBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.permit.is_some())
            .finish()
    }
}

impl<B: Default> Default for BulkheadBody<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B: Body> Body for BulkheadBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let over = match &polled {
            // Trailers are the last frame of a gRPC response; nothing may follow them.
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers(),
            Poll::Ready(Some(Err(_)) | None) => true,
            Poll::Pending => false,
        };
        if over {
            this.permit.take();
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
