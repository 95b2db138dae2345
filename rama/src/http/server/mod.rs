//! [`Server`]: the stage that turns a byte stream into HTTP requests for the service behind it.
//!
//! HTTP/1.1 and HTTP/2: the version is the one TLS negotiated by ALPN
//! ([`tls::Alpn`](crate::tls::Alpn) in the connection's facts), or, on plain text, HTTP/2 when
//! the client opens with the HTTP/2 preface. HTTP/2 is served by hyper. HTTP/1.1 starts on
//! rama's own lean path, which serves the requests nearly all proxy traffic is made of (no
//! `CONNECT`, no upgrade, no `Expect`, no chunked upload, a body of at most 64 KiB); at the
//! first request that is anything else, or malformed, hyper takes the rest of the connection
//! (with the bytes already read) and serves it as its own. Upgrades (`101`, `CONNECT`) are
//! supported, WebSockets on HTTP/2 streams (RFC 8441) too, handed on as HTTP/1.1 upgrade
//! requests. An HTTP/2 `CONNECT` (a WebSocket's too) carries its stream's
//! [`io::ResetSignal`](crate::io::ResetSignal) in its extensions, raised when the client
//! resets the stream, for a relay to end on ([`Relay::with_reset`](crate::io::Relay::with_reset)).
//! The service gets `http::Request<`[`Body`](super::Body)`>`s (streamed, never buffered
//! beyond that small body); each carries the connection's [`ConnFacts`] in its extensions
//! (peer, local address, TLS facts, the shutdown signal).
//!
//! # No `Clone`, no `Send`
//!
//! The layer gets **one** inner service, yet every request of every connection must call it
//! (HTTP/2 runs many at once on one connection). The service sits in a ready-aware shared cell
//! (`Rc<RefCell<_>>`, see `shared.rs`): each request's future polls `poll_ready` and then
//! calls, under one short borrow that is never held across an `.await`. hyper-util's
//! `TowerToHyperService` is not used: it clones the service per request.
//!
//! HTTP/2 needs an executor for each stream's future. rama does not spawn: every connection
//! drives its own small set of tasks (its HTTP/2 streams, the tunnels its `CONNECT`s opened,
//! whatever its services [`spawn`]) inside the connection's future, so nothing needs `Send`
//! and the tcp server's graceful drain counts them. The price: this stage's futures are
//! `!Send`, so serve it in the default `Local` mode or with [`tcp::PerCore`](crate::tcp::PerCore),
//! not with `spawn_connections`.
//!
//! # Limits and bad input
//!
//! - a client that takes longer than [`header_read_timeout`](Server::header_read_timeout)
//!   to send a request's headers gets `408 Request Timeout` and is closed; a connection that
//!   sends no byte of a request in that time (a new one, or a kept-alive one left idle) is
//!   closed without an answer, as nginx and HAProxy close one;
//! - headers larger than [`max_header_size`](Server::max_header_size), or more than
//!   [`max_headers`](Server::max_headers) of them, get `431`; a request line that alone is
//!   larger gets `414 URI Too Long`;
//! - a malformed request gets `400`.
//!
//! Each of these ends that connection only; the tcp server logs it with the peer address.
//!
//! HTTP/2 answers in its own terms (hyper and the `h2` crate do): a malformed request (a
//! pseudo-header missing or repeated, a connection-specific field, a length its data does not
//! match, a field value with white space at either end) resets its stream
//! (`RST_STREAM PROTOCOL_ERROR`) and the connection serves on, but a field the `h2` crate's
//! decoder refuses (an uppercase or empty name, a CR, LF or NUL in a value) gets
//! `GOAWAY PROTOCOL_ERROR` for the whole connection; a header list over
//! `max_header_size` gets `431` on its stream; a frame that breaks the protocol gets
//! `GOAWAY PROTOCOL_ERROR`; a flood of streams the client resets before they are served
//! ("rapid reset"), or of empty `CONTINUATION` frames, and a header block that decodes to
//! far more than the limit (an HPACK bomb) get `GOAWAY ENHANCE_YOUR_CALM`; each
//! closes the connection, as does a flood of frames that ask for nothing (`PRIORITY`,
//! `SETTINGS`, `PING`, tiny `WINDOW_UPDATE`s: nginx's measure, eight times the bytes the
//! requests carry and 1 MiB). A client that resets its streams once the service has them
//! (rapid reset paced past the `h2` crate's count) is sent `GOAWAY` when 200 or more of its
//! requests, and half or more of its streams, were cancelled so, and closed when it cancels
//! as many again. A connection without a stream for the header-read timeout (a
//! client that sent half a header block, or nothing, and stopped) is sent `GOAWAY`, and
//! dropped when it is still there, without a stream, as long again. A stream whose client
//! takes nothing of its response (its window left shut) through a whole header-read period
//! is reset (nginx's `send_timeout`), which ends what its response held upstream.
//!
//! # Graceful shutdown
//!
//! When the server's [`Signal`](crate::graceful::Signal) fires, each connection finishes the
//! requests in flight and then closes (HTTP/1.1 stops keep-alive, HTTP/2 sends `GOAWAY`; an
//! HTTP/2 client with nothing in flight is closed within a second even when it does not
//! answer the `PING` that completes the `GOAWAY`).
//! Tunnels already open run until they end or the server's drain deadline drops them.

mod conn;
mod extended_connect;
mod flood;
mod h1;
pub(crate) mod interim;
mod malformed;
mod stall;
mod tunnel;

pub use self::conn::Connection;

use self::conn::Tasks;
use crate::shared::Shared;
use crate::{BoxError, Conn, ConnInfo, graceful};
use ::http::{Extensions, Request, Response};
use std::{
    cell::RefCell,
    fmt,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Layer, Service};

/// How long a client may take to send a request's headers unless told otherwise.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (request line and headers) accepted unless told otherwise.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

/// How many request headers are accepted unless told otherwise.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// The HTTP server stage: a `Layer` whose service serves each connection with hyper and calls
/// the inner service once per request. See the [module docs](self).
///
/// ```no_run
/// use rama::{http, proxy, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// proxy! { tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => http::ForwardProxy::new() => target }
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    header_read_timeout: Option<Duration>,
    max_header_size: usize,
    max_headers: usize,
    keep_alive: bool,
}

/// The service of [`Server`]: serves one connection per call.
///
/// `poll_ready` is the inner service's, so a limit behind `http::Server` still holds back the
/// accept loop. Not `Send`: see the [module docs](self).
pub struct ServerService<S> {
    shared: Shared<S>,
    config: Arc<Server>,
}

/// The facts of the connection a request arrived on, in every request's extensions.
///
/// Cheap to clone (one reference count).
///
/// ```
/// use rama::http::ConnFacts;
///
/// fn peer(request: &http::Request<rama::http::Body>) -> Option<std::net::SocketAddr> {
///     request.extensions().get::<ConnFacts>().map(ConnFacts::peer_addr)
/// }
/// ```
#[derive(Clone)]
pub struct ConnFacts {
    inner: Arc<FactsInner>,
}

struct FactsInner {
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: graceful::Signal,
    extensions: Extensions,
    interim: interim::Interim,
    /// The client's TCP socket, when the connection's stream is one (bare, behind detection's
    /// replay, or under TLS): an HTTP/1.1 tunnel's [`ResetSignal`](crate::io::ResetSignal)
    /// watches it. Only looked at while the connection is served, which keeps it open.
    #[cfg(unix)]
    socket: Option<std::os::fd::RawFd>,
}

/// The descriptor of a connection's TCP socket, found under the stream's known wrappers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Socket(#[cfg(unix)] std::os::fd::RawFd);

impl Socket {
    /// `io`'s socket, when `io` is an accepted [`tcp::Stream`](crate::tcp::Stream), bare,
    /// behind an [`io::Rewind`](crate::io::Rewind), or under server-side TLS.
    pub(crate) fn of<IO: 'static>(io: &IO) -> Option<Self> {
        #[cfg(unix)]
        {
            use crate::{io::Rewind, tcp, tls::TlsStream};
            use std::{any::Any, os::fd::AsRawFd};
            let io: &dyn Any = io;
            let tcp = io
                .downcast_ref::<tcp::Stream>()
                .or_else(|| {
                    io.downcast_ref::<Rewind<tcp::Stream>>()
                        .map(Rewind::get_ref)
                })
                .or_else(|| {
                    io.downcast_ref::<TlsStream<tcp::Stream>>()
                        .map(|tls| tls.get_ref().0)
                })
                .or_else(|| {
                    io.downcast_ref::<TlsStream<Rewind<tcp::Stream>>>()
                        .map(|tls| tls.get_ref().0.get_ref())
                })?;
            Some(Self(tcp.as_raw_fd()))
        }
        #[cfg(not(unix))]
        {
            let _ = io;
            None
        }
    }
}

/// [`spawn`] was called outside an HTTP connection served by [`Server`].
#[derive(Debug)]
pub struct SpawnError(());

// ===== impl Server =====

impl Server {
    /// A server with the documented defaults.
    pub fn new() -> Self {
        Self {
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            keep_alive: true,
        }
    }

    /// How long a client may take to send a request's headers (HTTP/1.1) before it gets
    /// `408` and is closed, counted from the connection's start or the previous response's
    /// end (a connection that sent nothing of a request in that time is closed without a
    /// `408`); also how long an HTTP/2 connection may go without a stream before
    /// it is sent `GOAWAY` (see the [module docs](self)). A small body the server reads whole
    /// before the call (HTTP/1.1, up to 64 KiB with a `Content-Length`) may take any time
    /// while it moves: this bounds the wait between two of its reads, and a client that
    /// stalls for it gets `408` too. `None` waits forever. Default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_read_timeout = timeout.into();
        self
    }

    /// The largest request head accepted, in bytes (at least 8 KiB); larger ones get `431`.
    /// Default [`DEFAULT_MAX_HEADER_SIZE`].
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes.max(8 * 1024);
        self
    }

    /// How many headers a request may carry; more get `431`. Default [`DEFAULT_MAX_HEADERS`].
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }

    /// Whether HTTP/1.1 connections are kept alive between requests (default `true`).
    pub fn keep_alive(mut self, enabled: bool) -> Self {
        self.keep_alive = enabled;
        self
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for Server {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> ServerService<S> {
        ServerService {
            shared: Shared::new(inner),
            config: Arc::new(self.clone()),
        }
    }
}

// ===== impl ServerService =====

impl<S, IO, B> Service<Conn<IO>> for ServerService<S>
where
    S: Service<Request<super::Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Response = ();
    type Error = crate::http::Error;
    type Future = Connection<IO>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.shared
            .poll_ready(cx)
            .map_err(|error| crate::http::Error::service(error.into()))
    }

    fn call(&mut self, conn: Conn<IO>) -> Self::Future {
        Connection::new(conn, self.shared.clone(), &self.config)
    }
}

impl<S> fmt::Debug for ServerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// ===== impl ConnFacts =====

impl ConnFacts {
    pub(crate) fn from_info(info: &ConnInfo, socket: Option<Socket>) -> Self {
        #[cfg(not(unix))]
        let _ = socket;
        Self {
            inner: Arc::new(FactsInner {
                peer: info.peer_addr(),
                local: info.local_addr(),
                shutdown: info.shutdown().clone(),
                extensions: info.extensions().clone(),
                interim: interim::Interim::default(),
                #[cfg(unix)]
                socket: socket.map(|socket| socket.0),
            }),
        }
    }

    /// A [`ResetSignal`](crate::io::ResetSignal) watching the client's socket, for an
    /// HTTP/1.1 tunnel or upgrade; `None` when the stream is not a TCP socket (or the
    /// descriptor could not be duplicated).
    pub(crate) fn socket_reset_signal(&self) -> Option<crate::io::ResetSignal> {
        #[cfg(unix)]
        {
            let fd = self.inner.socket?;
            #[allow(unsafe_code)]
            // SAFETY: called while the connection is served (from its bridge to the service),
            // so the stream that owns the descriptor is alive and open.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            crate::io::ResetSignal::watching_socket(fd).ok()
        }
        #[cfg(not(unix))]
        None
    }

    /// Puts these facts into a request's `extensions`. A request's set is most often new and
    /// empty (the own HTTP/1.1 path's, and all of hyper's): a spare one, which the h1 upstream
    /// path gives back once it sent the request, saves allocating a new map and table.
    pub(crate) fn add_to(&self, extensions: &mut Extensions) {
        if extensions.is_empty() {
            *extensions = super::h1::codec::spare_extensions();
        }
        extensions.insert(self.clone());
    }

    /// Where an upstream's informational responses go on their way to this client.
    pub(crate) fn interim(&self) -> &interim::Interim {
        &self.inner.interim
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// The address the connection was accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The server's shutdown signal.
    pub fn shutdown(&self) -> &graceful::Signal {
        &self.inner.shutdown
    }

    /// Whether the client came over TLS that a stage before `http::Server` terminated (it
    /// recorded [`tls::Negotiated`](crate::tls::Negotiated)). A request's own scheme (an
    /// `https://` target, HTTP/2's `:scheme`) says only what the client claims.
    pub fn is_tls(&self) -> bool {
        self.inner
            .extensions
            .get::<crate::tls::Negotiated>()
            .is_some()
    }

    /// What the stages before `http::Server` recorded (SNI, ALPN, a client certificate, ...).
    pub fn extensions(&self) -> &Extensions {
        &self.inner.extensions
    }

    /// A fresh [`ConnInfo`] with these facts, for a stage that hands on something of its own
    /// (an HTTP `CONNECT` becomes a [`tunnel::Request`](crate::tunnel::Request)).
    pub fn to_info(&self) -> ConnInfo {
        let mut info = ConnInfo::new(
            self.inner.peer,
            self.inner.local,
            self.inner.shutdown.clone(),
        );
        *info.extensions_mut() = self.inner.extensions.clone();
        info
    }
}

impl fmt::Debug for ConnFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnFacts")
            .field("peer", &self.inner.peer)
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

// ===== spawn =====

thread_local! {
    /// The task set of the connection being polled on this thread, if any.
    static CURRENT: RefCell<Option<Tasks>> = const { RefCell::new(None) };
}

/// Marks the connection being polled, for [`spawn`]; restores the previous one on drop (an
/// HTTP server inside a tunnel inside an HTTP server nests).
pub(crate) struct Enter {
    previous: Option<Tasks>,
}

impl Enter {
    pub(crate) fn new(tasks: &Tasks) -> Self {
        let previous = CURRENT.with(|current| current.replace(Some(tasks.clone())));
        Self { previous }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Runs `task` on the current HTTP connection: it is polled by the connection's own future,
/// needs no `Send`, and the connection (and so the tcp server's graceful drain) waits for it.
///
/// Works from inside a service that [`Server`] calls (its `call`, or its futures); elsewhere
/// it returns [`SpawnError`]. `http::ForwardProxy` runs its `CONNECT` tunnels this way,
/// since a tunnel outlives the request that opened it.
pub fn spawn<F>(task: F) -> Result<(), SpawnError>
where
    F: Future<Output = ()> + 'static,
{
    CURRENT.with(|current| match &*current.borrow() {
        Some(tasks) => {
            tasks.push(Box::pin(task));
            Ok(())
        }
        None => Err(SpawnError(())),
    })
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not inside a connection served by http::Server")
    }
}

impl std::error::Error for SpawnError {}
