//! Zero-copy relaying between two TCP sockets with Linux `splice(2)`: bytes move from one
//! socket into a pipe and from the pipe into the other socket without entering user space.

#![allow(unsafe_code)]

use super::Relayed;
use crate::tcp::Activity;
use std::{
    future::Future,
    io,
    net::Shutdown,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::{io::Interest, net::TcpStream};

/// How much one `splice` call may move; the pipe is grown to this size when the system allows.
const PIPE_SIZE: usize = 1 << 20;

/// Relays between two TCP streams with `splice(2)`, with the same half-close semantics as
/// [`relay`](super::relay). Pipes come from a per-thread pool while bytes are in flight and go
/// back once empty, so an idle relay holds none (and no descriptors beyond its two sockets).
pub fn splice_relay(a: TcpStream, b: TcpStream) -> SpliceRelay {
    SpliceRelay {
        a,
        b,
        a_to_b: Half::default(),
        b_to_a: Half::default(),
        activity: None,
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
    a: TcpStream,
    b: TcpStream,
    a_to_b: Half,
    b_to_a: Half,
    activity: Option<std::sync::Arc<Activity>>,
}

#[derive(Debug, Default)]
struct Half {
    /// Held only while bytes are in it.
    pipe: Option<Pipe>,
    in_pipe: usize,
    read_eof: bool,
    done: bool,
    moved: u64,
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
            Poll::Ready(Ok(this.relayed()))
        } else {
            Poll::Pending
        }
    }
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
                ready!(to.poll_write_ready(cx))?;
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
