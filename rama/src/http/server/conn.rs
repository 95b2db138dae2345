//! One HTTP connection: hyper's connection, the connection's own tasks, the 408 answer, the
//! HTTP/2 idle check.

use super::{
    ConnFacts, Enter, Server,
    extended_connect::{self, Extended},
    flood,
    h1::{self, Outcome},
    malformed,
    stall::{self, Held, Ledger, Task},
};
use crate::{
    BoxError, Conn, graceful,
    http::{Body, Error, headers},
    io::{
        ResetSignal, Rewind,
        batch::{self, Batched},
    },
    shared::Shared,
    timer::ConnTimer,
};
use ::http::{HeaderName, Request, Response, StatusCode, Version, header};
use futures_util::{StreamExt, stream::FuturesUnordered};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::conn::auto,
};
use pin_project_lite::pin_project;
use std::{
    cell::RefCell,
    fmt,
    future::Future,
    io,
    marker::PhantomData,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tower::Service;

pub(super) type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// The connection's own tasks: HTTP/2 streams, tunnels, whatever services spawn. hyper sees it
/// as its executor; the connection's future polls what it queues.
#[derive(Clone, Default)]
pub(crate) struct Tasks {
    queue: Rc<RefCell<Vec<Task>>>,
    /// What the tasks share with the connection (see `stall`).
    ledger: Rc<Ledger>,
}

impl Tasks {
    pub(crate) fn push(&self, task: LocalTask) {
        self.queue.borrow_mut().push(Task::new(task, &self.ledger));
    }

    /// Moves what was queued into `set`; how many tasks that was.
    fn drain_into(&self, set: &mut FuturesUnordered<Task>) -> usize {
        let mut queue = self.queue.borrow_mut();
        let queued = queue.len();
        set.extend(queue.drain(..));
        queued
    }
}

impl<F> hyper::rt::Executor<F> for Tasks
where
    F: Future<Output = ()> + 'static,
{
    fn execute(&self, task: F) {
        // hyper's own tasks: HTTP/2 streams, and the sending halves of HTTP/2 tunnels.
        self.push(super::tunnel::spawned(task));
    }
}

/// The receive window of an HTTP/2 stream (see `hyper()`).
const H2_STREAM_WINDOW: u32 = 512 << 10;

/// The receive window of an HTTP/2 connection (see `hyper()`).
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// What an HTTP/2 connection opens with (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The stream, shared between hyper and the connection, so that the connection can still
/// answer `408` after hyper gave up on a slow client (hyper closes without a word). The lock
/// is taken per I/O call on the connection's own task and is never contended.
///
/// It also watches the first bytes hyper reads for the HTTP/2 preface, which is how hyper
/// itself tells the versions apart (or ALPN made hyper expect it): the connection's idle
/// check applies to HTTP/2 only. And whether bytes came since hyper last wrote (see
/// [`Watch`]).
struct SharedIo<IO> {
    io: Arc<Mutex<IO>>,
    /// How much of the preface the bytes read so far matched; `None` once that is decided.
    preface: Option<usize>,
    /// The flood check of an HTTP/2 connection (see `flood`); `None` once it is not one.
    scan: Option<flood::Scan>,
    watch: Arc<Watch>,
}

/// What the connection learns from hyper's reads and writes.
#[derive(Default)]
struct Watch {
    /// Set when the whole preface came, or ALPN chose HTTP/2.
    h2: AtomicBool,
    /// Whether bytes came since hyper last wrote. At hyper's header-read timeout it tells a
    /// client that sent part of a next request (`408`) from one that left a kept-alive
    /// connection idle, or never used a new one (closed without a word, as the own path closes
    /// it). A pipelined next request's first bytes read with the one before them count as
    /// none: that client gets the close, not the `408`. The other way round, the rest of an
    /// upload read after its answer went (a service that answered before it read the body
    /// whole) counts as part of a next request: that client, idle then, gets the `408`.
    read_since_write: AtomicBool,
    /// Whether any bytes came: an HTTP/2 connection (chosen by ALPN) that sent none by the
    /// idle check is closed as an idle HTTP/1.1 one is, without a `GOAWAY` for a client that
    /// never spoke HTTP/2.
    read_any: AtomicBool,
    /// Set when the connection's reads turned out a flood (see `flood`).
    flood: AtomicBool,
}

impl<IO> SharedIo<IO> {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut IO>) -> R) -> R
    where
        IO: Unpin,
    {
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        f(Pin::new(&mut *io))
    }

    /// Notes a write that moved bytes (see [`Watch::read_since_write`]).
    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if matches!(poll, Poll::Ready(Ok(n)) if *n > 0) {
            self.watch.read_since_write.store(false, Ordering::Relaxed);
        }
    }

    /// Matches `read`, the next bytes hyper read, against the rest of the preface.
    fn watch_preface(&mut self, matched: usize, read: &[u8]) {
        let rest = &H2_PREFACE[matched..];
        let n = read.len().min(rest.len());
        self.preface = if read[..n] != rest[..n] {
            None
        } else if matched + n == H2_PREFACE.len() {
            self.watch.h2.store(true, Ordering::Relaxed);
            None
        } else {
            Some(matched + n)
        };
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SharedIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = this.with(|io| io.poll_read(cx, buf));
        if buf.filled().len() > before {
            this.watch.read_since_write.store(true, Ordering::Relaxed);
            this.watch.read_any.store(true, Ordering::Relaxed);
            let read = &buf.filled()[before..];
            if let Some(matched) = this.preface {
                this.watch_preface(matched, read);
            }
            if this.preface.is_none() && !this.watch.h2.load(Ordering::Relaxed) {
                this.scan = None;
            }
            if let Some(scan) = this.scan.as_mut()
                && scan.read(read)
            {
                this.scan = None;
                this.watch.flood.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::Error::other(
                    "http2 flood: frames that ask for nothing far outweigh the requests",
                )));
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SharedIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.with(|io| io.poll_write(cx, buf));
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = self.with(|io| io.poll_write_vectored(cx, bufs));
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.with(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|io| io.poll_shutdown(cx))
    }
}

/// hyper's `&self` service over the shared cell: one ready-aware call per request.
pub(crate) struct Bridge<S> {
    shared: Shared<S>,
    facts: ConnFacts,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Bridge<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
{
    type Response = Response<Held<B>>;
    type Error = BoxError;
    type Future = BridgeFuture<S>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::from);
        if request.version() == Version::HTTP_2 {
            // `h2` takes equal repeated lengths as one and keeps every field (hyper's HTTP/1.1
            // keeps one): an HTTP/2 upstream would get them all. Only a body pays the lookup.
            if !http_body::Body::is_end_stream(request.body()) {
                headers::single_content_length(request.headers_mut());
            }
        } else if request.headers().contains_key(header::CONNECTION) {
            // HTTP/1.1's chunked uploads come this way, and their trailers with them: the
            // fields the head's `Connection` named are this hop's there too (the proxies remove
            // them from the head, and the trailers reach the client when the head has long
            // gone). HTTP/2 has no `Connection`: no lookup.
            let named = headers::connection_named(request.headers());
            if !named.is_empty() {
                request = request.map(|body| Body::new(without_in_trailers(body, named)));
            }
        }
        self.facts.add_to(request.extensions_mut());
        // An HTTP/2 `CONNECT` (a tunnel, or a WebSocket handed on below as an upgrade) opens a
        // stream whose reset its relay may not see (`io::ResetSignal`): the relay behind finds
        // the signal in the request, raised once the stream ends.
        let tunnel =
            request.version() == Version::HTTP_2 && request.method() == http::Method::CONNECT;
        let extended = extended_connect::as_upgrade(&mut request);
        let stream_end = (tunnel && extended != Extended::Other).then(|| {
            let signal = ResetSignal::new();
            request.extensions_mut().insert(signal.clone());
            signal
        });
        // An HTTP/1.1 tunnel or upgrade over a TCP socket: its relay watches the socket for
        // a reset it would not see otherwise (see `io::ResetSignal`).
        if request.version() <= Version::HTTP_11
            && (request.method() == http::Method::CONNECT
                || request.headers().contains_key(header::UPGRADE))
            && let Some(signal) = self.facts.socket_reset_signal()
        {
            request.extensions_mut().insert(signal);
        }
        let refused = if extended == Extended::Other {
            Some(extended_connect::refusal(&request))
        } else {
            malformed::check(&request).err().map(BoxError::from)
        };
        BridgeFuture {
            shared: self.shared.clone(),
            request: Some(request),
            future: None,
            waiting: false,
            extended,
            stream_end,
            refused,
        }
    }
}

/// `body` with the fields `named` left out of its trailers.
fn without_in_trailers(
    body: Body,
    named: Vec<HeaderName>,
) -> impl http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static {
    body.map_frame(move |frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            for name in &named {
                trailers.remove(name);
            }
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    })
}

pin_project! {
    /// One request through the shared cell: waits for readiness, calls, then runs the call
    /// (in place: hyper keeps this future inside its own, so it needs no box of its own).
    pub(crate) struct BridgeFuture<S: Service<Request<Body>>> {
        shared: Shared<S>,
        request: Option<Request<Body>>,
        #[pin]
        future: Option<S::Future>,
        waiting: bool,
        // An HTTP/2 WebSocket `CONNECT` handed on as an upgrade.
        extended: Extended,
        // An HTTP/2 `CONNECT`'s signal (in the request too), watched once the service opens
        // the tunnel (`2xx`, or `101` to a WebSocket).
        stream_end: Option<ResetSignal>,
        // Why the request's stream is reset without a call: an extended `CONNECT` for another
        // protocol, a malformed HTTP/2 request.
        refused: Option<BoxError>,
    }

    impl<S: Service<Request<Body>>> PinnedDrop for BridgeFuture<S> {
        fn drop(this: Pin<&mut Self>) {
            if this.waiting {
                this.shared.wake_waiters();
            }
            if this.future.is_some() {
                stall::cancelled();
            }
        }
    }
}

impl<S, B> Future for BridgeFuture<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
{
    type Output = Result<Response<Held<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(error) = this.refused.take()
            && let Some(request) = this.request.take()
        {
            let peer = request
                .extensions()
                .get::<ConnFacts>()
                .map(ConnFacts::peer_addr);
            let peer = crate::http::forward::Peer(peer);
            tracing::debug!(%peer, %error, "http: resetting the stream");
            return Poll::Ready(Err(error));
        }
        if this.future.is_none() {
            let poll = this.shared.poll_call(cx, this.request);
            *this.waiting = poll.is_pending();
            match poll {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error.into())),
                Poll::Ready(Ok(future)) => this.future.set(Some(future)),
            }
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let response = ready!(future.poll(cx));
        this.future.set(None);
        let mut response = response.map_err(Into::into)?;
        // The server speaks its own version (RFC 9110 6.2: an intermediary sends its own),
        // whatever an upstream's answer said: hyper would write an `HTTP/1.0` one as such to
        // an HTTP/1.1 client, and panics on versions it does not write (HTTP/0.9, HTTP/3).
        // HTTP/2 ignores it; an HTTP/1.0 client gets `HTTP/1.0` from hyper all the same.
        *response.version_mut() = http::Version::HTTP_11;
        if crate::http::h1::codec::status_has_no_length(response.status()) {
            let headers = response.headers_mut();
            headers.remove(http::header::CONTENT_LENGTH);
            headers.remove(http::header::TRANSFER_ENCODING);
        }
        let websocket = *this.extended == Extended::WebSocket;
        let opened = if websocket {
            response.status() == StatusCode::SWITCHING_PROTOCOLS
        } else {
            response.status().is_success()
        };
        if opened && let Some(signal) = this.stream_end.take() {
            // hyper spawns the stream's sending half once this answer is returned.
            super::tunnel::watch(signal);
        }
        if websocket {
            extended_connect::answer(&mut response);
        }
        Poll::Ready(Ok(response.map(|body| Held::new(body, cx))))
    }
}

/// hyper's connection, with its service and body types erased (one box per connection).
trait Serving {
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<IO, S, B> Serving
    for auto::UpgradeableConnection<'static, TokioIo<SharedIo<IO>>, Bridge<S>, Tasks>
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_serve(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Future::poll(self, cx)
    }

    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// The future of one HTTP connection, returned by [`ServerService`](super::ServerService):
/// serves requests until the client closes, an error ends the connection, or the shutdown
/// signal has let the requests in flight finish; then waits for the connection's tasks
/// (tunnels it opened).
pub struct Connection<IO> {
    /// rama's own HTTP/1.1 path (see `h1.rs`): it ends with the connection closed, in failure,
    /// or with hyper serving the rest of it (or all of it, where the own path does not apply).
    own: Option<Own>,
    hyper: Option<Pin<Box<dyn Serving>>>,
    /// The stream hyper serves, for the `408` hyper does not write itself.
    io: Option<Arc<Mutex<dyn AsyncWrite + Unpin + Send>>>,
    timeout_answer: Option<&'static [u8]>,
    tasks: Tasks,
    running: FuturesUnordered<Task>,
    shutdown: Pin<Box<graceful::Triggered>>,
    shutting_down: bool,
    /// What hyper's reads and writes told (see `SharedIo`).
    watch: Option<Arc<Watch>>,
    /// The period of the HTTP/2 idle check: the server's header-read timeout.
    idle_period: Option<Duration>,
    idle: Option<Idle>,
    /// How many tasks (HTTP/2 streams, tunnels) the connection has queued so far.
    queued: usize,
    /// The count of cancelled requests when rapid reset sent the client away (see
    /// [`Connection::poll_cancelled`]).
    sent_away_at: Option<usize>,
    peer: SocketAddr,
    failure: Option<Error>,
    /// The stream's type, which the fields above have erased.
    _io: PhantomData<fn(IO)>,
}

/// The idle check of an HTTP/2 connection. HTTP/1.1 has its header-read timeout for a client
/// that sends nothing, or half a request head; HTTP/2 has no such timer in hyper, and a
/// connection without a stream (a client that sent half a header block and stopped) would be
/// held until the peer closes it. Every period the check asks whether a stream or tunnel ran
/// since the last one, or was still running at it (a stream that ends just before a check
/// leaves the connection busy for that period, as nginx's keep-alive timeout counts from a
/// request's end): the first period without sends `GOAWAY` (hyper's graceful shutdown,
/// which a client that reads closes on), the second, for a client that kept the connection
/// all the same, drops it. One timer per connection, moved once a period, nothing per stream.
/// It also watches a hyper connection that has sent nothing yet, HTTP/2 or not (hyper-util's
/// look at the first bytes for the version has no timer): one still silent after a period is
/// closed without a word, one that spoke HTTP/1.1 is left to hyper's header-read timeout.
struct Idle {
    sleep: Pin<Box<Sleep>>,
    /// `queued` at the last check.
    seen: usize,
    /// Whether a stream or tunnel was running at the last check.
    busy: bool,
    going_away: bool,
}

/// How many requests an HTTP/2 client may cancel once the service has them before its
/// connection is looked at for rapid reset: hyper's limit on concurrent streams, a whole
/// window of them.
const RAPID_RESET_FLOOR: usize = 200;

/// How often the HTTP/2 idle check looks once the server is shutting down (see
/// `Connection::poll_hyper`).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The answer to a client whose request headers did not come in time.
pub(super) const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 42\r\nconnection: close\r\n\r\n\
the request headers did not arrive in time";

/// The answer to a request whose target or headers `http` does not take.
pub(super) const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 11\r\nconnection: close\r\n\r\n\
bad request";

/// The answer to a request line longer than the head may be.
pub(super) const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 28\r\nconnection: close\r\n\r\n\
the request line is too long";

/// The answer to a request in an HTTP version of another major than 1 (nginx's answer too).
pub(super) const VERSION_NOT_SUPPORTED: &[u8] = b"HTTP/1.1 505 HTTP Version Not Supported\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 37\r\nconnection: close\r\n\r\n\
the request's HTTP version is not 1.x";

/// The answer to a request whose response body failed before its first byte left.
pub(super) const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 41\r\nconnection: close\r\n\r\n\
the response failed before its first byte";

/// The own path's future: `Ok(None)` when the connection is closed, `Ok(Some(..))` when hyper
/// serves the rest of it.
type Own = Pin<Box<dyn Future<Output = Result<Option<Handed>, Error>>>>;

/// hyper serving a connection, its stream, and what its reads and writes tell.
type Handed = (
    Pin<Box<dyn Serving>>,
    Arc<Mutex<dyn AsyncWrite + Unpin + Send>>,
    Arc<Watch>,
);

/// hyper serving `io` (with what was already read from it in front), and the stream.
fn hyper<IO, S, B>(
    io: Rewind<IO>,
    shared: Shared<S>,
    facts: ConnFacts,
    config: &Server,
    alpn: Option<&crate::tls::Alpn>,
    tasks: &Tasks,
) -> Handed
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(tasks.clone());
    builder
        .http1()
        .timer(ConnTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_size)
        .keep_alive(config.keep_alive);
    // hyper's own limit is the same 100 headers, parsed into stack arrays it need not
    // fill; an explicit limit, even an equal one, fills a vector of that size per request.
    if config.max_headers != super::DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(config.max_headers);
    }
    // An upload or tunnel stalled behind the service (an upstream that does not read) holds
    // its stream's window of data; with hyper's defaults (1 MiB for a stream and for the
    // connection) one such stream starved all the others of the client (and four, with a 4
    // MiB connection window: a browser's uploads through an HTTP/2 proxy). nginx opens the
    // connection's window all the way and keeps streams' small; here a stream has 512 KiB
    // (25 MiB/s at 20 ms) and the connection 16 MiB: 32 stalled streams before the others
    // wait, and what one connection can make the server hold stays nginx's order (8 MiB).
    // Extended CONNECT (RFC 8441) is offered: a WebSocket on an HTTP/2 stream reaches the
    // service as the HTTP/1.1 upgrade every stage carries (`extended_connect`).
    builder
        .http2()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
        .enable_connect_protocol();
    let builder = match alpn {
        Some(alpn) if alpn.is_h2() => builder.http2_only(),
        Some(_) => builder.http1_only(),
        None => builder,
    };
    let io = Arc::new(Mutex::new(io));
    // Chosen by ALPN, HTTP/2 has its idle check from the start: a client that never sends the
    // preface is not held until the transport's idle timeout.
    let watch = Arc::new(Watch {
        h2: AtomicBool::new(alpn.is_some_and(crate::tls::Alpn::is_h2)),
        read_since_write: AtomicBool::new(false),
        read_any: AtomicBool::new(false),
        flood: AtomicBool::new(false),
    });
    let shared_io = SharedIo {
        io: io.clone(),
        preface: Some(0),
        scan: Some(flood::Scan::new()),
        watch: watch.clone(),
    };
    let bridge = Bridge { shared, facts };
    let hyper = builder
        .serve_connection_with_upgrades(TokioIo::new(shared_io), bridge)
        .into_owned();
    (Box::pin(hyper), io, watch)
}

/// Serves `io`: on rama's own HTTP/1.1 path, and with hyper after it when it hands the
/// connection over; with hyper from the start when the own path does not apply.
async fn serve<IO, S, B>(
    io: IO,
    shared: Shared<S>,
    facts: ConnFacts,
    config: Arc<Server>,
    alpn: Option<crate::tls::Alpn>,
    tasks: Tasks,
) -> Result<Option<Handed>, Error>
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The own path parses into stack slots for the default 100 headers; HTTP/2 is hyper's.
    let own = config.max_headers == super::DEFAULT_MAX_HEADERS
        && !alpn.as_ref().is_some_and(crate::tls::Alpn::is_h2);
    let (io, read) = if own {
        match h1::serve(io, shared.clone(), facts.clone(), config.clone()).await {
            // Hand-overs are rare: the copy is not worth a prefix type of its own.
            Outcome::HandOff(io, read) => (io, read.to_vec()),
            Outcome::Closed => return Ok(None),
            Outcome::Failed(error) => return Err(error),
        }
    } else {
        (io, Vec::new())
    };
    let io = Rewind::new(read, io);
    let alpn = alpn.as_ref();
    Ok(Some(hyper(io, shared, facts, &config, alpn, &tasks)))
}

impl<IO> Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) fn new<S, B>(conn: Conn<IO>, shared: Shared<S>, config: &Arc<Server>) -> Self
    where
        S: Service<Request<Body>, Response = Response<B>> + 'static,
        S::Error: Into<BoxError>,
        S::Future: 'static,
        B: http_body::Body + 'static,
        B::Error: Into<BoxError>,
    {
        let (io, info) = conn.into_parts();
        let alpn = info.extensions().get::<crate::tls::Alpn>().cloned();
        let facts = ConnFacts::from_info(&info, super::Socket::of(&io));
        let tasks = Tasks::default();
        tasks.ledger.peer.set(Some(info.peer_addr()));
        let mut this = Self {
            own: None,
            hyper: None,
            io: None,
            timeout_answer: None,
            tasks: tasks.clone(),
            running: FuturesUnordered::new(),
            shutdown: Box::pin(info.shutdown().triggered()),
            shutting_down: false,
            watch: None,
            idle_period: config.header_read_timeout,
            idle: None,
            queued: 0,
            sent_away_at: None,
            peer: info.peer_addr(),
            failure: None,
            _io: PhantomData,
        };
        let config = config.clone();
        // A plain TCP connection writes at the end of the server's pass (see `io::batch`).
        this.own = Some(match batch::batched(io) {
            Batched::Plain(stream) => Box::pin(serve(stream, shared, facts, config, alpn, tasks)),
            Batched::Rewound(stream) => Box::pin(serve(stream, shared, facts, config, alpn, tasks)),
            Batched::Other(io) => Box::pin(serve(io, shared, facts, config, alpn, tasks)),
        });
        this
    }

    /// Polls the own path; when it hands over, hyper takes the connection.
    fn poll_own(&mut self, cx: &mut Context<'_>) {
        let Some(own) = self.own.as_mut() else {
            return;
        };
        let Poll::Ready(outcome) = own.as_mut().poll(cx) else {
            return;
        };
        self.own = None;
        match outcome {
            Ok(Some((serving, io, watch))) => {
                self.hyper = Some(serving);
                self.io = Some(io);
                self.watch = Some(watch);
            }
            Ok(None) => {}
            Err(error) => self.failure = Some(error),
        }
    }

    fn poll_hyper(&mut self, cx: &mut Context<'_>) {
        let Some(hyper) = self.hyper.as_mut() else {
            return;
        };
        if !self.shutting_down && self.shutdown.as_mut().poll(cx).is_ready() {
            self.shutting_down = true;
            tracing::debug!(peer = %self.peer, "http: shutting down, finishing requests in flight");
            hyper.as_mut().graceful_shutdown();
            // From here the idle check looks every `SHUTDOWN_GRACE`: an HTTP/2 client with
            // nothing in flight is closed then, not held to the server's drain deadline
            // (hyper's GOAWAY waits for the answer to a PING, which some clients, Python's
            // `h2`, never send once they saw GOAWAY).
            if let Some(idle) = self.idle.as_mut() {
                idle.going_away = true;
                idle.seen = self.queued;
                idle.sleep.as_mut().reset(Instant::now() + SHUTDOWN_GRACE);
            }
        }
        let Poll::Ready(result) = hyper.as_mut().poll_serve(cx) else {
            return;
        };
        self.hyper = None;
        let Err(error) = result else {
            return;
        };
        let header_timeout =
            crate::error::cause_ref::<hyper::Error>(&*error).is_some_and(hyper::Error::is_timeout);
        let idle = !self
            .watch
            .as_ref()
            .is_some_and(|watch| watch.read_since_write.load(Ordering::Relaxed));
        if header_timeout && idle {
            // Nothing of a next request: closed without a word (see `h1.rs`, which does the same).
            tracing::debug!(peer = %self.peer, "http: connection idle past the header-read timeout, closing");
        } else if self
            .watch
            .as_ref()
            .is_some_and(|watch| watch.flood.load(Ordering::Relaxed))
        {
            tracing::warn!(peer = %self.peer, "http2: flood of frames that ask for nothing (PRIORITY, SETTINGS, PING, WINDOW_UPDATE), closing");
            self.failure = Some(Error::protocol(error));
        } else if header_timeout {
            tracing::warn!(peer = %self.peer, "http: request headers did not arrive in time, answering 408");
            self.timeout_answer = Some(REQUEST_TIMEOUT);
            self.failure = Some(Error::header_timeout());
        } else {
            self.failure = Some(Error::protocol(error));
        }
    }

    /// The HTTP/2 idle check (see [`Idle`]); after the connection's tasks ran, so that it
    /// counts the streams this poll queued.
    fn poll_idle(&mut self, cx: &mut Context<'_>) {
        let (Some(hyper), Some(period), Some(watch)) =
            (self.hyper.as_mut(), self.idle_period, self.watch.as_ref())
        else {
            return;
        };
        let h2 = watch.h2.load(Ordering::Relaxed);
        let silent = !watch.read_any.load(Ordering::Relaxed);
        let idle = match self.idle.as_mut() {
            Some(idle) if !idle.sleep.is_elapsed() => return,
            Some(idle) => idle,
            // HTTP/2; or any connection that has sent nothing yet: hyper-util's look at the
            // first bytes for the version (where the own path does not apply) has no timer.
            None if h2 || silent => self.idle.insert(Idle {
                sleep: Box::pin(tokio::time::sleep(period)),
                seen: self.queued,
                busy: false,
                going_away: false,
            }),
            None => return,
        };
        if idle.sleep.is_elapsed() {
            // Nothing in flight now, nor since the last check; `quiet` also wants nothing
            // running at that check. The shutdown's close takes the first: it only waits for
            // what is in flight, not for a quiet period.
            let none_since = self.running.is_empty() && self.queued == idle.seen;
            let quiet = !idle.busy && none_since;
            idle.seen = self.queued;
            idle.busy = !self.running.is_empty();
            let next = if self.shutting_down {
                SHUTDOWN_GRACE
            } else {
                period
            };
            idle.sleep.as_mut().reset(Instant::now() + next);
            if quiet && silent {
                tracing::debug!(peer = %self.peer, "http: connection idle past the header-read timeout, closing");
                self.hyper = None;
                return;
            }
            if !h2 {
                // HTTP/1.1 that spoke: hyper's header-read timeout has it from here.
                self.idle = None;
                return;
            }
            // The send timeout (see `stall`): the streams whose client took nothing of their
            // response through a whole period are reset.
            let generation = &self.tasks.ledger.generation;
            generation.set(generation.get() + 1);
            let reset = self
                .running
                .iter()
                .map(Task::slot)
                .filter(|slot| slot.stalled())
                .inspect(|slot| slot.kill())
                .count();
            if reset > 0 {
                tracing::warn!(peer = %self.peer, streams = reset, ?period, "http2: the client took nothing of a response for the header-read timeout, resetting the stream");
            }
            if none_since && idle.going_away && self.shutting_down {
                tracing::debug!(peer = %self.peer, "http2: nothing in flight since the shutdown's GOAWAY, closing");
                self.hyper = None;
                return;
            }
            if quiet && idle.going_away {
                tracing::warn!(peer = %self.peer, "http2: no stream since GOAWAY and the client kept the connection, closing");
                self.hyper = None;
                self.failure = Some(Error::header_timeout());
                return;
            }
            if quiet {
                tracing::debug!(peer = %self.peer, ?period, "http2: no stream for the header-read timeout, sending GOAWAY");
                idle.going_away = true;
                if !self.shutting_down {
                    hyper.as_mut().graceful_shutdown();
                }
            }
        }
        // Registers the connection's waker with the timer, armed or moved.
        let _ = idle.sleep.as_mut().poll(cx);
    }

    /// Rapid reset past `h2`'s own count (CVE-2023-44487): `h2` bounds the streams reset
    /// before hyper accepts them, but a client that waits until the service has its request
    /// before it resets the stream costs a call each time (behind a proxy, an upstream
    /// exchange begun and thrown away, a connection to the origin churned). Once
    /// [`RAPID_RESET_FLOOR`] requests were cancelled so, and they are half or more of the
    /// connection's streams (Envoy's measure), the client is sent `GOAWAY` (graceful: what it
    /// has in flight finishes); one that goes on cancelling as many again is closed.
    fn poll_cancelled(&mut self, cx: &Context<'_>) {
        let cancelled = self.tasks.ledger.cancelled.get();
        if cancelled < RAPID_RESET_FLOOR {
            return;
        }
        let Some(hyper) = self.hyper.as_mut() else {
            return;
        };
        match self.sent_away_at {
            None if cancelled * 2 >= self.queued => {
                tracing::warn!(peer = %self.peer, cancelled, streams = self.queued, "http2: the client cancelled most of its requests once the service had them (rapid reset), sending GOAWAY");
                self.sent_away_at = Some(cancelled);
                if !self.shutting_down {
                    self.shutting_down = true;
                    hyper.as_mut().graceful_shutdown();
                    // For hyper to write the GOAWAY.
                    cx.waker().wake_by_ref();
                }
            }
            Some(at) if cancelled >= at + RAPID_RESET_FLOOR => {
                tracing::warn!(peer = %self.peer, cancelled, "http2: the client went on cancelling its requests after GOAWAY, closing");
                self.hyper = None;
                self.failure = Some(Error::protocol(
                    "the client cancelled its requests as fast as it made them".into(),
                ));
            }
            _ => {}
        }
    }

    /// Writes what is left of the `408` answer, then shuts the stream down.
    fn poll_timeout_answer(&mut self, cx: &mut Context<'_>) {
        let (Some(rest), Some(io)) = (self.timeout_answer.as_mut(), self.io.as_ref()) else {
            self.timeout_answer = None;
            return;
        };
        let mut io = io.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if rest.is_empty() {
                match Pin::new(&mut *io).poll_shutdown(cx) {
                    Poll::Pending => return,
                    Poll::Ready(_) => break,
                }
            }
            match Pin::new(&mut *io).poll_write(cx, rest) {
                Poll::Pending => return,
                Poll::Ready(Ok(n)) if n > 0 => *rest = &rest[n..],
                Poll::Ready(_) => break,
            }
        }
        drop(io);
        self.timeout_answer = None;
    }
}

impl<IO> Future for Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _enter = Enter::new(&this.tasks);
        let _outside = stall::Outside::enter();
        this.poll_own(cx);
        this.poll_hyper(cx);
        this.poll_timeout_answer(cx);
        // Tasks may queue more tasks (a stream opening a tunnel): run until the queue is dry.
        loop {
            let queued = this.tasks.drain_into(&mut this.running);
            this.queued += queued;
            while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {}
            if queued == 0 {
                break;
            }
        }
        this.poll_cancelled(cx);
        this.poll_idle(cx);
        if this.own.is_none()
            && this.hyper.is_none()
            && this.timeout_answer.is_none()
            && this.running.is_empty()
        {
            return Poll::Ready(match this.failure.take() {
                Some(error) if error.is_peer_gone() => {
                    tracing::debug!(peer = %this.peer, error = %crate::error::Chain(&error), "http: the client went away");
                    Ok(())
                }
                failure => failure.map_or(Ok(()), Err),
            });
        }
        Poll::Pending
    }
}

impl<IO> fmt::Debug for Connection<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("own", &self.own.is_some())
            .field("hyper", &self.hyper.is_some())
            .field("tasks", &self.running.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::{BAD_GATEWAY, BAD_REQUEST, H2_PREFACE, REQUEST_TIMEOUT, SharedIo, URI_TOO_LONG};
    use std::sync::{Arc, Mutex, atomic::Ordering};

    /// Whether `SharedIo` takes the reads `chunks` for the HTTP/2 preface.
    fn is_h2(chunks: &[&[u8]]) -> bool {
        let mut io = SharedIo {
            io: Arc::new(Mutex::new(())),
            preface: Some(0),
            scan: None,
            watch: Arc::default(),
        };
        for chunk in chunks {
            if let Some(matched) = io.preface {
                io.watch_preface(matched, chunk);
            }
        }
        io.watch.h2.load(Ordering::Relaxed)
    }

    #[test]
    fn the_preface_is_told_across_reads_and_nothing_else_is_taken_for_it() {
        assert!(is_h2(&[H2_PREFACE]));
        assert!(is_h2(&[
            b"PRI * HT",
            b"TP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0"
        ]));
        assert!(is_h2(&[b"P", b"RI * HTTP/2.0\r\n\r\nSM\r\n\r", b"\n"]));
        assert!(!is_h2(&[b"GET / HTTP/1.1\r\n"]));
        assert!(!is_h2(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r"]));
        assert!(!is_h2(&[b"PRI * HTTP/2.0\r\n", b"\r\nXX\r\n\r\n"]));
    }

    #[test]
    fn the_canned_answers_have_the_right_lengths() {
        for answer in [REQUEST_TIMEOUT, BAD_REQUEST, BAD_GATEWAY, URI_TOO_LONG] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("content-length: {}\r\n", body.len())),
                "{text}"
            );
        }
    }
}
