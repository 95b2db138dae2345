//! Byte-stream plumbing: the bidirectional [`Relay`] that every tunnel ends in, and on Linux
//! a zero-copy [`SpliceRelay`] for TCP-to-TCP.

pub(crate) mod batch;
mod pool;
mod reset;
mod rewind;
mod tcp_relay;
pub(crate) use self::reset::SocketWatch;
pub use self::reset::{ResetSignal, is_reset};
pub use self::rewind::Rewind;
pub(crate) use self::tcp_relay::{TcpRelay, relay_cut, relay_finished};
#[cfg(target_os = "linux")]
mod splice;
#[cfg(target_os = "linux")]
pub(crate) use self::splice::splice_accepted;
#[cfg(target_os = "linux")]
pub use self::splice::{SpliceRelay, splice_relay};

use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The buffer size of each direction of a [`Relay`] unless told otherwise.
pub const DEFAULT_RELAY_BUFFER: usize = 32 * 1024;

/// Bytes moved by a finished [`Relay`], each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes read from the first stream (the client) and written to the second (the upstream).
    pub sent: u64,
    /// Bytes read from the second stream and written to the first.
    pub received: u64,
}

/// Copies bytes both ways between `a` and `b` until both directions have reached end of file.
///
/// Half-close is honoured: when one side ends its writing (EOF), the relay shuts down the write
/// half of the other side and keeps carrying the opposite direction until it ends too. An I/O
/// error on either side ends the whole relay. Each direction owns one buffer of
/// `buffer_size` bytes; there is no other per-byte work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use rama::io::relay;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
///
/// let (mut client, proxy_a) = duplex(64);
/// let (proxy_b, mut upstream) = duplex(64);
/// let relay = tokio::spawn(relay(proxy_a, proxy_b, 1024));
///
/// client.write_all(b"ping").await?;
/// client.shutdown().await?; // half-close: the upstream sees EOF after "ping"
/// let mut got = Vec::new();
/// upstream.read_to_end(&mut got).await?;
/// assert_eq!(got, b"ping");
///
/// upstream.write_all(b"pong").await?;
/// drop(upstream);
/// let mut back = Vec::new();
/// client.read_to_end(&mut back).await?;
/// assert_eq!(back, b"pong");
///
/// let moved = relay.await.unwrap()?;
/// assert_eq!((moved.sent, moved.received), (4, 4));
/// # Ok(())
/// # }
/// ```
pub fn relay<A, B>(a: A, b: B, buffer_size: usize) -> Relay<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    Relay {
        a,
        b,
        a_to_b: Half::new(buffer_size),
        b_to_a: Half::new(buffer_size),
        reset: None,
        upstream: None,
    }
}

pin_project! {
    /// The future returned by [`relay`].
    pub struct Relay<A, B> {
        a: A,
        b: B,
        a_to_b: Half,
        b_to_a: Half,
        // Raised when `a` ended abnormally where no read or write of it would tell.
        reset: Option<ResetSignal>,
        // `b`'s socket, when it is one, watched for an error while neither direction reads
        // or writes it.
        upstream: Option<reset::SocketWatch>,
    }
}

/// One direction of a relay: a buffer while bytes are in flight, and where the copy stands.
struct Half {
    /// Taken from the thread's pool before a read, given back once empty and the reader has
    /// nothing more for now: an idle direction holds no buffer.
    buf: Option<Box<[u8]>>,
    size: usize,
    /// Bytes `buf[pos..end]` are read and not yet written.
    pos: usize,
    end: usize,
    read_eof: bool,
    need_flush: bool,
    done: bool,
    moved: u64,
    /// What the last `poll_copy` that returned `Pending` waits for.
    waits: Waits,
}

/// What a direction of a relay (this one, or a [`SpliceRelay`]) waits for: a side waited on
/// by neither direction is one whose reset nobody would see.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waits {
    /// Nothing (it is done, or has not been polled).
    #[default]
    Nothing,
    /// Its source to become readable.
    Read,
    /// Its destination to become writable (or flushed, or shut down).
    Write,
}

// ===== impl Relay =====

impl<A, B> Relay<A, B> {
    /// Ends the relay with an error ([`is_reset`]) once `signal` is raised: the first stream
    /// (the client) ended abnormally, as an HTTP/2 `CONNECT` stream reset by its client,
    /// which the relay may not be reading or writing at the time (see [`ResetSignal`]). A
    /// signal [watching the client's socket](ResetSignal::watching_socket) ends it the same
    /// way on an error of that socket, looked for while neither direction reads or writes
    /// the first stream.
    ///
    /// The signal counts while the relay has not shut down the first stream's write half.
    /// Once it has (the second stream ended), the first stream's sending side has ended by the
    /// relay's hand, and whatever raises the signal on that end (hyper's task that sends an
    /// HTTP/2 tunnel's bytes) raises it as a reset would. The relay failing for another
    /// reason (an I/O error on either side) marks the signal
    /// [aborted](ResetSignal::is_aborted) before the relay resolves.
    pub fn with_reset(mut self, signal: ResetSignal) -> Self {
        self.reset = Some(signal);
        self
    }

    /// Watches `upstream`, the second stream's socket (a TCP upstream's, see
    /// `SocketWatch::upstream`), for an error while neither direction reads or writes it: an
    /// upstream that resets while the relay waits on a client that stopped reading (and sends
    /// nothing) ends the relay with that error, which fails the client's [`ResetSignal`] (and
    /// resets the client's socket, when the signal has it). Without it, the relay learns of it
    /// only once the client moves. The duplicate is registered with the runtime the first time
    /// it is needed.
    pub(crate) fn watching_upstream(mut self, upstream: Option<reset::SocketWatch>) -> Self {
        self.upstream = upstream;
        self
    }

    /// The two streams back, as they are (a relay that ended by its [`ResetSignal`] leaves the
    /// second one to be closed as abnormally: with a TCP `RST`, say).
    pub fn into_inner(self) -> (A, B) {
        (self.a, self.b)
    }

    /// Bytes moved so far, each way.
    pub fn relayed(&self) -> Relayed {
        Relayed {
            sent: self.a_to_b.moved,
            received: self.b_to_a.moved,
        }
    }
}

impl<A, B> Future for Relay<A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<Relayed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Poll both directions every time: one being stuck must not starve the other.
        let a_to_b = this.a_to_b.poll_copy(cx, this.a, this.b);
        let a_to_b = ready_or_reset(a_to_b, this.reset, this.b_to_a)?;
        let b_to_a = this.b_to_a.poll_copy(cx, this.b, this.a);
        let b_to_a = ready_or_reset(b_to_a, this.reset, this.b_to_a)?;
        if a_to_b.is_ready() && b_to_a.is_ready() {
            if let Some(reset) = this.reset {
                reset.release_socket();
            }
            return Poll::Ready(Ok(Relayed {
                sent: this.a_to_b.moved,
                received: this.b_to_a.moved,
            }));
        }
        // About to wait: a write pending on the upstream and a read pending on it leave the
        // client unpolled, so its reset would go unseen (see `reset`). Looked at only here, so
        // a relay that moves bytes pays nothing per byte, and one without a signal a branch.
        if let Some(upstream) = this.upstream.as_mut()
            && this.a_to_b.waits != Waits::Write
            && this.b_to_a.waits != Waits::Read
            && upstream.poll_error(cx).is_ready()
        {
            let error = upstream.take_error();
            *this.upstream = None;
            // A failure of the relay, as if a read or write of the upstream had told it.
            return Poll::Ready(Err(failed(this.reset, error)));
        }
        if let Some(reset) = this.reset {
            // Neither direction waits on the client: only its socket, when the signal has
            // it, can tell of a reset now.
            let unwatched = this.a_to_b.waits != Waits::Read && this.b_to_a.waits != Waits::Write;
            if this.b_to_a.done {
                // Shut down by the relay: its end is no news (see `with_reset`).
                reset.release_socket();
                *this.reset = None;
            } else if reset.poll_raised(cx).is_ready()
                || (unwatched && reset.poll_socket_error(cx).is_ready())
            {
                return Poll::Ready(Err(reset::reset_error()));
            }
        }
        Poll::Pending
    }
}

/// A direction's error once the client's side was reset (hyper's `Upgraded` fails its writes
/// then) is that reset: the relay's end is the same whichever way it learnt of it first. (The
/// signal counts while `to_client` has not shut the client's side down, see `with_reset`.)
/// Any other error aborts the signal: the relay failed, and the client's side is to be reset
/// rather than ended as if the tunnel had finished.
fn ready_or_reset(
    poll: Poll<io::Result<()>>,
    reset: &Option<ResetSignal>,
    to_client: &Half,
) -> Poll<io::Result<()>> {
    match (poll, reset) {
        (Poll::Ready(Err(_)), Some(reset)) if !to_client.done && reset.is_raised() => {
            reset.release_socket();
            Poll::Ready(Err(reset::reset_error()))
        }
        (Poll::Ready(Err(error)), reset) => Poll::Ready(Err(failed(reset, error))),
        (poll, _) => poll,
    }
}

/// The relay failed with `error` (not by the client's reset): its signal is aborted, so that
/// the client's side is reset rather than ended as if the tunnel had finished.
fn failed(reset: &Option<ResetSignal>, error: io::Error) -> io::Error {
    if let Some(reset) = reset {
        reset.abort();
        reset.release_socket();
    }
    error
}

impl<A, B> fmt::Debug for Relay<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("relayed", &self.relayed())
            .finish_non_exhaustive()
    }
}

// ===== impl Half =====

impl Half {
    fn new(size: usize) -> Self {
        Self {
            buf: None,
            size: size.max(1),
            pos: 0,
            end: 0,
            read_eof: false,
            need_flush: false,
            done: false,
            moved: 0,
            waits: Waits::Nothing,
        }
    }

    /// Gives the (empty) buffer back to the thread's pool.
    fn release(&mut self) {
        if let Some(buf) = self.buf.take() {
            pool::give(&pool::BUFFERS, buf);
        }
    }

    /// Copies from `reader` to `writer` until `reader` ends, then shuts `writer`'s write half.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            self.waits = Waits::Nothing;
            return Poll::Ready(Ok(()));
        }
        // Any `Pending` below but the read's is the writer's.
        self.waits = Waits::Write;
        loop {
            if self.pos == self.end && !self.read_eof {
                let size = self.size;
                let buf = self.buf.get_or_insert_with(|| {
                    pool::take(&pool::BUFFERS, |b| b.len() == size)
                        .unwrap_or_else(|| vec![0; size].into_boxed_slice())
                });
                let mut buf = ReadBuf::new(buf);
                match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {}
                    // A TLS peer that closed its TCP side without `close_notify` (nginx on a
                    // kept-alive connection, clients that half-close): its end, passed on as
                    // the other side's FIN, as haproxy does; a relay cannot tell the other
                    // side about a truncation better than that.
                    Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                        buf.clear();
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {
                        self.waits = Waits::Read;
                        self.release();
                        // Nothing more to read for now: push out what a buffering writer
                        // (TLS) still holds before we sleep.
                        if self.need_flush {
                            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
                let n = buf.filled().len();
                if n == 0 {
                    self.read_eof = true;
                    self.release();
                } else {
                    self.pos = 0;
                    self.end = n;
                }
            }
            while self.pos < self.end {
                let pending = match &self.buf {
                    Some(buf) => &buf[self.pos..self.end],
                    None => unreachable!("bytes in flight live in a buffer"),
                };
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
                self.need_flush = true;
            }
            if self.read_eof {
                match ready!(Pin::new(&mut *writer).poll_shutdown(cx)) {
                    // The peer is already gone: there is nobody left to tell about EOF.
                    Err(error) if error.kind() == io::ErrorKind::NotConnected => {}
                    result => result?,
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}
