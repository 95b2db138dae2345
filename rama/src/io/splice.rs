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
/// [`relay`](super::relay). Fails at creation only if no pipe can be made.
pub fn splice_relay(a: TcpStream, b: TcpStream) -> io::Result<SpliceRelay> {
    Ok(SpliceRelay {
        a_to_b: Half::new()?,
        b_to_a: Half::new()?,
        a,
        b,
        activity: None,
    })
}

/// Splices an accepted [`tcp::Stream`](crate::tcp::Stream), keeping its idle-timeout clock
/// running (the bytes bypass the stream's own accounting).
/// On failure (no pipe available) the streams come back, for a buffered relay instead.
pub(crate) fn splice_accepted(
    a: crate::tcp::Stream,
    b: TcpStream,
) -> Result<SpliceRelay, (io::Error, crate::tcp::Stream, TcpStream)> {
    let halves = Half::new().and_then(|a_to_b| Ok((a_to_b, Half::new()?)));
    let (a_to_b, b_to_a) = match halves {
        Ok(halves) => halves,
        Err(error) => return Err((error, a, b)),
    };
    let (a, activity) = a.into_parts();
    Ok(SpliceRelay {
        a,
        b,
        a_to_b,
        b_to_a,
        activity,
    })
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

#[derive(Debug)]
struct Half {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
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

impl Half {
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
            in_pipe: 0,
            read_eof: false,
            done: false,
            moved: 0,
        })
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
                ready!(from.poll_read_ready(cx))?;
                let (src, dst, len) = (from.as_raw_fd(), self.write.as_raw_fd(), self.capacity);
                match from.try_io(Interest::READABLE, || splice(src, dst, len)) {
                    Ok(0) => self.read_eof = true,
                    Ok(n) => self.in_pipe = n,
                    // Readiness was stale and is now cleared: poll again to re-register.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            while self.in_pipe > 0 {
                ready!(to.poll_write_ready(cx))?;
                let (src, dst, len) = (self.read.as_raw_fd(), to.as_raw_fd(), self.in_pipe);
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
