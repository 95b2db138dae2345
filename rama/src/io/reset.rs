//! A side of a relay that can end abnormally without a byte to read: an HTTP/2 `CONNECT`
//! stream the client resets (RFC 9113 8.5), or whose connection goes away.
//!
//! A relay only learns of a side's end by reading or writing it. A direction whose write is
//! pending (an upstream that does not read) reads nothing more from its client, and the other
//! direction waits on an upstream that may say nothing: neither polls the client, and the
//! reset went unnoticed until the idle timeout, with the upstream connection held all that
//! time. Reading on into spare room does not help over HTTP/2: `h2` hands out the stream's
//! buffered data (a whole window, 512 KiB here) before its reset, and hyper reports a reset
//! with `CANCEL` or `NO_ERROR` as a plain end of stream. Whoever learns of the end instead
//! raises a [`ResetSignal`], and the relay looks at it each time it is about to wait.
//!
//! The other way round, a relay that fails (the upstream reset its TCP connection) marks the
//! signal [aborted](ResetSignal::is_aborted): dropped, hyper's `Upgraded` ends its stream as
//! cleanly as an upstream's FIN would (`END_STREAM`), and the client could not tell a cut
//! tunnel from a finished one; told, the client's side resets the stream instead.

use futures_util::task::AtomicWaker;
use std::{
    error::Error as StdError,
    fmt, io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

/// Raised when a relay's client side ended abnormally (its HTTP/2 stream was reset, or its
/// connection went away); the [`Relay`](super::Relay) watching it then ends with an error
/// for which [`is_reset`] holds, and a relay to a TCP upstream closes that connection with
/// a TCP `RST`. Clones share the one signal.
///
/// The relay, failing, [aborts](Self::is_aborted) it in turn: the client's side is then to be
/// reset, not ended as if the tunnel had finished.
///
/// [`http::Server`](crate::http::Server) puts one in each HTTP/2 `CONNECT` request (a
/// WebSocket's too); `http::ForwardProxy` hands it to the tunnel through
/// [`Handshake::reset_signal`](crate::tunnel::Handshake::reset_signal).
#[derive(Clone, Default)]
pub struct ResetSignal {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    raised: AtomicBool,
    aborted: AtomicBool,
    /// The relay's task, from when it last waited.
    waker: AtomicWaker,
}

/// The error a relay ends with when its client side's [`ResetSignal`] was raised.
#[derive(Debug)]
struct Reset(());

// ===== impl ResetSignal =====

impl ResetSignal {
    /// A signal not raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the relay watching this signal that the client's side ended abnormally.
    pub fn raise(&self) {
        self.inner.raised.store(true, Ordering::Release);
        self.inner.waker.wake();
    }

    /// Whether [`raise`](Self::raise) was called.
    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::Acquire)
    }

    /// Whether the relay watching this signal failed (see [`ResetSignal`]): the client's
    /// side is to be reset rather than ended cleanly. The relay marks it before it lets go of
    /// the client's stream.
    pub fn is_aborted(&self) -> bool {
        self.inner.aborted.load(Ordering::Acquire)
    }

    /// Marks the relay failed (see [`is_aborted`](Self::is_aborted)).
    pub(crate) fn abort(&self) {
        self.inner.aborted.store(true, Ordering::Release);
    }

    /// Ready once raised; else the task of `cx` is woken when it is.
    pub(crate) fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_raised() {
            return Poll::Ready(());
        }
        self.inner.waker.register(cx.waker());
        // Raised between the look and the registration: `raise` woke the waker before it.
        if self.is_raised() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for ResetSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResetSignal")
            .field("raised", &self.is_raised())
            .field("aborted", &self.is_aborted())
            .finish()
    }
}

/// The error of a relay whose client side was reset (see [`ResetSignal`]).
pub(crate) fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, Reset(()))
}

/// Whether `error` is a relay's end by its [`ResetSignal`], rather than a failed read or write.
pub fn is_reset(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Reset>())
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the client reset its side of the relay")
    }
}

impl StdError for Reset {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_raise_wakes_the_task_that_waited_and_is_seen_by_clones() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let signal = ResetSignal::new();
        let watched = signal.clone();
        assert!(watched.poll_raised(&mut cx).is_pending());
        signal.raise();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(watched.poll_raised(&mut cx).is_ready());
        assert!(is_reset(&reset_error()));
        assert!(!is_reset(&io::Error::from(io::ErrorKind::ConnectionReset)));
    }
}
