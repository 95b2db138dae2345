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
//! HTTP/1.1 has the same blind spot with nobody to raise the signal: a `CONNECT` tunnel or an
//! upgrade handed over by hyper is a byte stream over the client's socket, and a client that
//! gives up with a TCP `RST` while the relay waits on the upstream both ways is a socket
//! nobody polls. Its socket tells it itself (`EPOLLERR`), so such a signal carries a
//! [duplicate](ResetSignal::watching_socket) of the client's socket, which the relay watches
//! for an error only while neither direction reads or writes the client (a registration made
//! the first time it is needed, none for a relay that keeps moving bytes).
//!
//! The other way round, a relay that fails (the upstream reset its TCP connection) marks the
//! signal [aborted](ResetSignal::is_aborted): dropped, hyper's `Upgraded` ends its stream as
//! cleanly as an upstream's FIN would (`END_STREAM`), and the client could not tell a cut
//! tunnel from a finished one; told, the client's side resets the stream instead. A signal
//! with the client's socket resets the connection through the duplicate, which shares it.

use futures_util::task::AtomicWaker;
#[cfg(unix)]
use std::sync::{Mutex, PoisonError};
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
/// WebSocket's too), and in each HTTP/1.1 `CONNECT` and upgrade request that came over a
/// TCP socket (with [the socket](Self::watching_socket)); `http::ForwardProxy` hands it to
/// the tunnel through [`Handshake::reset_signal`](crate::tunnel::Handshake::reset_signal).
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
    /// The client's socket, when the client's side is one (see the [module](self)).
    #[cfg(unix)]
    socket: Mutex<Option<socket::Watch>>,
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

    /// Marks the relay failed (see [`is_aborted`](Self::is_aborted)); the client's socket,
    /// when the signal has it, is reset.
    pub(crate) fn abort(&self) {
        self.inner.aborted.store(true, Ordering::Release);
        #[cfg(unix)]
        if let Some(watch) = self.socket().as_ref() {
            watch.reset();
        }
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

#[cfg(unix)]
impl ResetSignal {
    /// A signal that also watches `socket`, the client's side of the relay, for an error (a
    /// TCP `RST`) while the relay neither reads nor writes it. The signal keeps a duplicate
    /// of the descriptor (the socket stays open while the signal does: a relay lets go of it
    /// when it ends), registered with the runtime the first time the relay waits so.
    pub fn watching_socket(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<Self> {
        let watch = socket::Watch::of(socket)?;
        let signal = Self::new();
        *signal.socket() = Some(watch);
        Ok(signal)
    }

    fn socket(&self) -> std::sync::MutexGuard<'_, Option<socket::Watch>> {
        self.inner
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ready once the client's socket has an error (never, without a socket); registers the
    /// task of `cx` for it otherwise.
    pub(crate) fn poll_socket_error(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.socket().as_mut() {
            Some(watch) => watch.poll_error(cx),
            None => Poll::Pending,
        }
    }

    /// Lets go of the client's socket: the relay that watched it has ended.
    pub(crate) fn release_socket(&self) {
        self.socket().take();
    }
}

#[cfg(not(unix))]
impl ResetSignal {
    pub(crate) fn poll_socket_error(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    pub(crate) fn release_socket(&self) {}
}

#[cfg(unix)]
pub(crate) use self::socket::Watch as SocketWatch;

/// Where there is no socket to watch, no relay has one.
#[cfg(not(unix))]
pub(crate) enum SocketWatch {}

#[cfg(not(unix))]
impl SocketWatch {
    pub(crate) fn upstream(_socket: &tokio::net::TcpStream) -> Option<Self> {
        None
    }

    pub(crate) fn poll_error(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        match *self {}
    }

    pub(crate) fn take_error(&self) -> io::Error {
        match *self {}
    }
}

#[cfg(unix)]
mod socket {
    use std::{
        future::Future,
        os::fd::{AsFd, BorrowedFd, OwnedFd},
        pin::Pin,
        sync::Arc,
        task::{Context, Poll},
        time::Duration,
    };
    use tokio::io::{Interest, unix::AsyncFd};

    /// A duplicate of a relay's socket (the client's, in a [`ResetSignal`](super::ResetSignal);
    /// a TCP upstream's, in the relay), and once the relay first needed it, the wait for an
    /// error on it.
    pub(crate) struct Watch {
        /// The duplicate, until it is registered.
        fd: Option<OwnedFd>,
        registered: Option<Arc<AsyncFd<OwnedFd>>>,
        error: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    }

    impl Watch {
        /// Watches a duplicate of `socket`.
        pub(super) fn of(socket: BorrowedFd<'_>) -> std::io::Result<Self> {
            Ok(Self {
                fd: Some(socket.try_clone_to_owned()?),
                registered: None,
                error: None,
            })
        }

        /// Watches a duplicate of a relay's TCP upstream; `None` when the system refused
        /// the duplicate (the relay goes on unwatched).
        pub(crate) fn upstream(socket: &tokio::net::TcpStream) -> Option<Self> {
            Self::of(socket.as_fd()).ok()
        }

        #[allow(unsafe_code)]
        pub(crate) fn poll_error(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            if let Some(fd) = self.fd.take() {
                // Registered for errors alone: the socket's reads wake the relay through its
                // own registration, never through this one.
                // SAFETY: an `OwnedFd` is an open descriptor of one file description until
                // it is dropped, which only the `AsyncFd` that owns it does.
                let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) };
                let Ok(fd) = registered else {
                    // The poller refused it: the relay goes on without this watch.
                    return Poll::Pending;
                };
                let fd = Arc::new(fd);
                let watched = fd.clone();
                self.registered = Some(fd);
                self.error = Some(Box::pin(async move {
                    // An error of the registration itself (the runtime shutting down) is no
                    // news of the client's.
                    if watched.ready(Interest::ERROR).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }));
            }
            match self.error.as_mut() {
                Some(error) => error.as_mut().poll(cx),
                None => Poll::Pending,
            }
        }

        fn fd(&self) -> Option<BorrowedFd<'_>> {
            match (&self.fd, &self.registered) {
                (Some(fd), _) => Some(fd.as_fd()),
                (None, Some(fd)) => Some(fd.get_ref().as_fd()),
                (None, None) => None,
            }
        }

        /// The socket's pending error (`SO_ERROR`): what its reset was.
        pub(crate) fn take_error(&self) -> std::io::Error {
            self.fd()
                .and_then(|fd| socket2::SockRef::from(&fd).take_error().ok().flatten())
                .unwrap_or_else(|| std::io::ErrorKind::ConnectionReset.into())
        }

        /// Resets the client's connection: the socket is shared with the client's own
        /// descriptor, whose stream, dropped, would end with a FIN first (tokio's write half
        /// shuts down on drop). On Linux a `connect` to `AF_UNSPEC` sends the `RST` at once
        /// (`tcp_disconnect`); elsewhere `SO_LINGER` 0 makes the last close send it.
        pub(super) fn reset(&self) {
            let Some(fd) = self.fd() else {
                return;
            };
            let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
            #[cfg(target_os = "linux")]
            disconnect(fd);
        }
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn disconnect(fd: BorrowedFd<'_>) {
        use std::os::fd::AsRawFd;
        let unspecified = libc::sockaddr {
            sa_family: libc::AF_UNSPEC as libc::sa_family_t,
            sa_data: [0; 14],
        };
        // SAFETY: `fd` is an open socket for the call's duration, and the address is a whole
        // `sockaddr` of the length given.
        let _ = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &unspecified,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
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

    /// A connected pair on 127.0.0.1: (ours, the peer's).
    #[cfg(unix)]
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (ours, accepted) = tokio::join!(ours, listener.accept());
        (ours.unwrap(), accepted.unwrap().0)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_socket_watch_sees_the_peers_reset_and_nothing_before() {
        use std::os::fd::AsFd;
        let (ours, mut peer) = pair().await;
        let signal = ResetSignal::watching_socket(ours.as_fd()).unwrap();
        let watched = std::future::poll_fn(|cx| signal.poll_socket_error(cx));
        // Bytes to read are no error.
        tokio::io::AsyncWriteExt::write_all(&mut peer, b"x")
            .await
            .unwrap();
        let early = tokio::time::timeout(std::time::Duration::from_millis(100), watched).await;
        assert!(early.is_err(), "an error seen before the reset");
        peer.set_zero_linger().unwrap();
        drop(peer);
        let watched = std::future::poll_fn(|cx| signal.poll_socket_error(cx));
        tokio::time::timeout(std::time::Duration::from_secs(3), watched)
            .await
            .expect("the reset seen");
        assert!(
            !signal.is_raised(),
            "the socket's error is the relay's to act on"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_aborted_signal_resets_the_client_at_once() {
        use std::os::fd::AsFd;
        use tokio::io::AsyncReadExt;
        let (ours, mut peer) = pair().await;
        let signal = ResetSignal::watching_socket(ours.as_fd()).unwrap();
        signal.abort();
        assert!(signal.is_aborted());
        // `ours` is still open: the reset went before any close of it.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            peer.read_to_end(&mut rest),
        )
        .await
        .expect("the end in time");
        assert_eq!(
            read.map_err(|error| error.kind()),
            Err(io::ErrorKind::ConnectionReset)
        );
        drop(ours);
    }
}
