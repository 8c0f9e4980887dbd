//! When a connection last carried a byte, and whether a request on it is
//! being answered: what the idle timeout needs to tell a silent connection
//! from a slow handler.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Shared by a connection's IO and its service.
#[derive(Clone)]
pub struct Clock(Arc<State>);

struct State {
    start: Instant,
    /// Milliseconds since `start` at the last byte read or written.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Clock {
    pub fn new() -> Clock {
        Clock(Arc::new(State {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        let ms = self.0.start.elapsed().as_millis() as u64;
        self.0.last.store(ms, Ordering::Relaxed);
    }

    /// Marks a request as being answered until the guard drops.
    pub fn busy(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection will have been silent for `idle`.
    pub fn idle_deadline(&self, idle: Duration) -> Instant {
        self.0.start + Duration::from_millis(self.0.last.load(Ordering::Relaxed)) + idle
    }

    pub fn is_idle_for(&self, idle: Duration) -> bool {
        self.0.busy.load(Ordering::SeqCst) == 0 && Instant::now() >= self.idle_deadline(idle)
    }
}

pub struct Busy(Clock);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An IO that touches its clock on every byte.
pub struct Activity<IO> {
    io: IO,
    clock: Clock,
}

impl<IO> Activity<IO> {
    pub fn new(io: IO, clock: Clock) -> Self {
        Activity { io, clock }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Activity<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Activity<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
