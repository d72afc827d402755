//! A connection's socket as the server holds it: with its place under the connection cap
//! (released when the socket is dropped, so an upgraded WebSocket keeps counting), and an
//! idle timer that closes it when it makes no progress while nothing else is expected of it.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};

/// What a connection is doing, as far as its idle timer cares: shared between the socket and
/// the connection's service.
#[derive(Debug, Default)]
pub(super) struct Phase(AtomicU8);

/// A handler is running: the socket may rightly be quiet (the request timeout bounds it).
const HANDLING: u8 = 1;
/// The connection was upgraded: the protocol above (WebSocket pings) keeps it alive or not.
const UPGRADED: u8 = 2;

impl Phase {
    /// A handler starts; the returned guard says when it is done, even if it is dropped.
    pub(super) fn handling(self: &Arc<Self>) -> Handling {
        self.0.fetch_or(HANDLING, Ordering::Relaxed);
        Handling(self.clone())
    }

    /// The connection was switched to another protocol: the idle timer is off for good.
    pub(super) fn upgraded(&self) {
        self.0.fetch_or(UPGRADED, Ordering::Relaxed);
    }

    /// Whether the idle timer applies now.
    fn idle_timer_on(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Marks a handler as running until dropped.
#[derive(Debug)]
pub(super) struct Handling(Arc<Phase>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.0.fetch_and(!HANDLING, Ordering::Relaxed);
    }
}

/// The socket of one connection.
#[derive(Debug)]
pub(super) struct Guarded<I> {
    io: I,
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
    phase: Arc<Phase>,
    /// Its place under the connection cap, given back when the socket closes.
    _permit: OwnedSemaphorePermit,
}

impl<I> Guarded<I> {
    pub(super) fn new(
        io: I,
        timeout: Duration,
        phase: Arc<Phase>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            io,
            idle: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            phase,
            _permit: permit,
        }
    }

    /// Bytes moved: the connection is alive.
    fn progressed(&mut self) {
        self.idle.as_mut().reset(Instant::now() + self.timeout);
    }

    /// The socket is not ready: fail it if it has made no progress for the idle timeout
    /// while the timer applies; otherwise wait (the timer restarts while it does not apply,
    /// so a handler's quiet time is not held against the connection afterwards).
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.phase.idle_timer_on() {
            self.progressed();
            return Poll::Pending;
        }
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no progress within the idle timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.stalled(cx),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progressed();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.stalled(cx),
        }
    }
}
