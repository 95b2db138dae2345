//! Zero-copy relaying between two TCP sockets with Linux `splice(2)`: bytes move from one
//! socket into a pipe and from the pipe into the other socket without entering user space.

#![allow(unsafe_code)]

use super::{Relayed, Waits};
use crate::tcp::Activity;
use std::{
    future::Future,
    io,
    net::Shutdown,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::{
    io::{Interest, Ready},
    net::TcpStream,
};

/// How much one `splice` call may move; the pipe is grown to this size when the system allows.
const PIPE_SIZE: usize = 1 << 20;

/// Relays between two TCP streams with `splice(2)`, with the same half-close semantics as
/// [`relay`](super::relay). Pipes come from a per-thread pool while bytes are in flight and go
/// back once empty, so an idle relay holds none (and no descriptors beyond its two sockets).
///
/// A side that ends with a TCP `RST` while neither direction reads or writes it (a client
/// that gives up on an upstream that stopped reading: one direction waits to write to the
/// upstream, the other to read from it) ends the relay all the same: it fails with an error
/// for which [`is_reset`](super::is_reset) holds when that side is `a` (the client), the
/// socket's own error when it is `b`, and the other side is closed with a `RST` too.
pub fn splice_relay(a: TcpStream, b: TcpStream) -> SpliceRelay {
    SpliceRelay {
        a: Arc::new(a),
        b: Arc::new(b),
        a_to_b: Half::default(),
        b_to_a: Half::default(),
        activity: None,
        watch_a: None,
        watch_b: None,
    }
}

/// Splices an accepted [`tcp::Stream`](crate::tcp::Stream), keeping its idle-timeout clock
/// running (the bytes bypass the stream's own accounting).
pub(crate) fn splice_accepted(a: crate::tcp::Stream, b: TcpStream) -> SpliceRelay {
    let (a, activity) = a.into_parts();
    let mut relay = splice_relay(a, b);
    relay.activity = activity;
    relay
}

/// The future returned by [`splice_relay`].
#[derive(Debug)]
pub struct SpliceRelay {
    // Shared with the error watches below, which wait on a side's readiness.
    a: Arc<TcpStream>,
    b: Arc<TcpStream>,
    a_to_b: Half,
    b_to_a: Half,
    activity: Option<Arc<Activity>>,
    /// Set up the first time a side is waited on by neither direction (see `poll`); most
    /// relays never have one.
    watch_a: Option<ErrorWatch>,
    watch_b: Option<ErrorWatch>,
}

/// Resolves once a socket has an error (`EPOLLERR`: a `RST` came, say).
struct ErrorWatch(Pin<Box<dyn Future<Output = io::Result<Ready>> + Send>>);

impl std::fmt::Debug for ErrorWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorWatch")
    }
}

#[derive(Debug, Default)]
struct Half {
    /// Held only while bytes are in it.
    pipe: Option<Pipe>,
    in_pipe: usize,
    read_eof: bool,
    done: bool,
    moved: u64,
    waits: Waits,
}

impl SpliceRelay {
    /// Bytes moved so far, each way.
    pub fn relayed(&self) -> Relayed {
        Relayed {
            sent: self.a_to_b.moved,
            received: self.b_to_a.moved,
        }
    }
}

impl Future for SpliceRelay {
    type Output = io::Result<Relayed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let before = this.a_to_b.moved + this.b_to_a.moved;
        let a_to_b = this.a_to_b.poll_copy(cx, &this.a, &this.b)?;
        let b_to_a = this.b_to_a.poll_copy(cx, &this.b, &this.a)?;
        if let Some(activity) = &this.activity
            && this.a_to_b.moved + this.b_to_a.moved != before
        {
            activity.touch();
        }
        if a_to_b.is_ready() && b_to_a.is_ready() {
            return Poll::Ready(Ok(this.relayed()));
        }
        // A side that neither direction reads or writes (its reader waits to write the other
        // side, its writer to read from it, or either is done) left no waker with the runtime,
        // and its RST would go unseen until the other side moves, if ever: the tunnel and its
        // upstream held until the idle timeout, or for good without one. Watch such a side for
        // an error, as nginx and HAProxy see `EPOLLERR` on a socket they do not poll for.
        let a_waited = this.a_to_b.waits == Waits::Read || this.b_to_a.waits == Waits::Write;
        let b_waited = this.b_to_a.waits == Waits::Read || this.a_to_b.waits == Waits::Write;
        if !a_waited && watch(&mut this.watch_a, &this.a, cx)?.is_ready() {
            let _ = this.b.set_zero_linger();
            return Poll::Ready(Err(super::reset::reset_error()));
        }
        if !b_waited && watch(&mut this.watch_b, &this.b, cx)?.is_ready() {
            let _ = this.a.set_zero_linger();
            let error = this.b.take_error()?;
            return Poll::Ready(Err(
                error.unwrap_or_else(|| io::ErrorKind::ConnectionReset.into())
            ));
        }
        Poll::Pending
    }
}

/// Polls the error watch of `side`, set up in `slot` the first time.
fn watch(
    slot: &mut Option<ErrorWatch>,
    side: &Arc<TcpStream>,
    cx: &mut Context<'_>,
) -> io::Result<Poll<()>> {
    let watch = slot.get_or_insert_with(|| {
        let side = Arc::clone(side);
        ErrorWatch(Box::pin(async move { side.ready(Interest::ERROR).await }))
    });
    Ok(watch.0.as_mut().poll(cx)?.map(drop))
}

/// A non-blocking pipe: what `splice` moves bytes through.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

thread_local! {
    static PIPES: std::cell::RefCell<Vec<Pipe>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Pipe {
    /// A pipe from the thread's pool, or a new one.
    fn take() -> io::Result<Self> {
        match super::pool::take(&PIPES, |_| true) {
            Some(pipe) => Ok(pipe),
            None => Self::new(),
        }
    }

    fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe means fewer system calls per byte; the default (64 KiB) still works.
        // SAFETY: F_SETPIPE_SZ on a descriptor we own, with an integer argument.
        let grown = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        let capacity = if grown > 0 { grown as usize } else { 64 * 1024 };
        Ok(Self {
            read,
            write,
            capacity,
        })
    }
}

impl Half {
    /// Gives the (empty) pipe back to the thread's pool.
    fn release(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            super::pool::give(&PIPES, pipe);
        }
    }

    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
    ) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.in_pipe == 0 && !self.read_eof {
                if from.poll_read_ready(cx)?.is_pending() {
                    self.release();
                    self.waits = Waits::Read;
                    return Poll::Pending;
                }
                let pipe = match &mut self.pipe {
                    Some(pipe) => pipe,
                    none => none.insert(Pipe::take()?),
                };
                let (src, dst, len) = (from.as_raw_fd(), pipe.write.as_raw_fd(), pipe.capacity);
                match from.try_io(Interest::READABLE, || splice(src, dst, len)) {
                    Ok(0) => {
                        self.read_eof = true;
                        self.release();
                    }
                    Ok(n) => self.in_pipe = n,
                    // Readiness was stale and is now cleared: poll again to re-register.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            while let (true, Some(pipe)) = (self.in_pipe > 0, &self.pipe) {
                if to.poll_write_ready(cx)?.is_pending() {
                    self.waits = Waits::Write;
                    return Poll::Pending;
                }
                let (src, dst, len) = (pipe.read.as_raw_fd(), to.as_raw_fd(), self.in_pipe);
                match to.try_io(Interest::WRITABLE, || splice(src, dst, len)) {
                    Ok(n) => {
                        self.in_pipe -= n;
                        self.moved += n as u64;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            if self.read_eof {
                match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                    Err(error) if error.kind() != io::ErrorKind::NotConnected => {
                        return Poll::Ready(Err(error));
                    }
                    _ => {}
                }
                self.done = true;
                self.waits = Waits::Nothing;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// One non-blocking `splice(2)` of up to `len` bytes.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from owned
    // sockets and pipes); null offsets mean "current position", as sockets and pipes require.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
