use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};

/// An accepted TCP stream.
///
/// When the server has an [idle timeout](super::Serve::idle_timeout), the stream records the
/// time of its last successful read or write (one relaxed atomic store per I/O call, never per
/// byte), which the server's timer reads.
#[derive(Debug)]
pub struct Stream {
    inner: TcpStream,
    activity: Option<Arc<Activity>>,
}

/// The last time a stream moved bytes, in milliseconds since `epoch`.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

// ===== impl Stream =====

impl Stream {
    pub(crate) fn new(inner: TcpStream, activity: Option<Arc<Activity>>) -> Self {
        Self { inner, activity }
    }

    /// The underlying tokio stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// The underlying tokio stream, mutably.
    pub fn get_mut(&mut self) -> &mut TcpStream {
        &mut self.inner
    }

    /// Unwraps the tokio stream (it stops counting as activity for the idle timeout).
    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// The tokio stream and the idle clock, for relays that bypass `AsyncRead`/`AsyncWrite`.
    pub(crate) fn into_parts(self) -> (TcpStream, Option<Arc<Activity>>) {
        (self.inner, self.activity)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// `read` into `buf`, and the time of it on `activity` when it filled anything.
pub(crate) fn note_read(
    activity: Option<&Activity>,
    buf: &mut ReadBuf<'_>,
    read: impl FnOnce(&mut ReadBuf<'_>) -> Poll<io::Result<()>>,
) -> Poll<io::Result<()>> {
    let before = buf.filled().len();
    let poll = read(buf);
    if let Some(activity) = activity
        && buf.filled().len() != before
    {
        activity.touch();
    }
    poll
}

/// `poll`, a write's outcome, after noting its time on `activity` when it wrote anything.
pub(crate) fn note_write(
    activity: Option<&Activity>,
    poll: Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    if let Some(activity) = activity
        && matches!(poll, Poll::Ready(Ok(n)) if n > 0)
    {
        activity.touch();
    }
    poll
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Self { inner, activity } = &mut *self;
        note_read(activity.as_deref(), buf, |buf| {
            Pin::new(inner).poll_read(cx, buf)
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        note_write(self.activity.as_deref(), poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        note_write(self.activity.as_deref(), poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

// ===== impl Activity =====

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the stream last moved bytes.
    pub(crate) fn last(&self) -> Instant {
        self.epoch + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}
