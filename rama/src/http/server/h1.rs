//! The server's own HTTP/1.1 path: the requests that make up nearly all of a proxy's traffic
//! (no `CONNECT`, no upgrade, no `Expect`, a body of at most 64 KiB, read whole before the
//! call, or chunked and all there with its head) are parsed, called and answered here; at the
//! first request that is anything else, or is malformed, the rest of the connection goes to
//! hyper, starting with the bytes read so far (in a [`Rewind`](crate::io::Rewind)), and hyper
//! serves it as if it had been hyper's from the start (its `400`, `431`, upgrades, streaming
//! uploads).
//!
//! Why: hyper's HTTP/1.1 server reads through a dispatcher, a buffered I/O layer and
//! hyper-util's own rewinding wrapper, keeps per-message state for every case above, and
//! encodes each head through a generic writer; for a proxy's small requests that was about a
//! third of rama's instructions per request. Here a request is one parse into a reused
//! buffer, and a response with a body that is all there goes out in one write.

use super::{ConnFacts, Server, conn, interim::Interim};
use crate::{
    BoxError,
    http::{
        Body, Error, body_timeout,
        h1::{
            self,
            codec::{self, Framing, NotOwn, Parsed, ResponseFraming},
        },
    },
    shared::{Call, Shared},
    timer::ConnTimer,
};
use ::http::{Method, Request, Response, StatusCode, Version, header};
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use std::{
    cell::RefCell,
    future::{Future, poll_fn},
    io,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::{Instant, SystemTime},
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::Service;

/// How much room a read asks for in the request buffer (hyper's first read buffer is as
/// large; an idle connection holds it).
const READ_BUF: usize = 8 * 1024;

/// How the own path ended.
pub(super) enum Outcome<IO> {
    /// The connection is done: the client closed it, or it was closed after a response.
    Closed,
    /// The rest of the connection is hyper's: `io` with the bytes read and not yet served.
    HandOff(IO, BytesMut),
    /// It ended in failure (a `408` or `400` was answered first, where one applies).
    Failed(Error),
}

/// Serves `io` until it closes, fails, or has to go to hyper.
pub(super) async fn serve<IO, S, B>(
    mut io: IO,
    shared: Shared<S>,
    facts: ConnFacts,
    config: Arc<Server>,
) -> Outcome<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let peer = facts.peer_addr();
    let signal = facts.shutdown().clone();
    let mut shutdown = std::pin::pin!(signal.triggered());
    let timer = ConnTimer::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    // An upstream's informational heads come here while this path serves the connection
    // (`interim.rs`); `early` holds those on their way to the client.
    let _armed = Armed::new(facts.interim());
    let mut early = Vec::new();
    loop {
        // The next request: from what is buffered (a pipelined one), or read under the
        // header-read timeout, which runs from the end of the previous response, and on a
        // new connection from its start (nginx's `client_header_timeout`): a connection that
        // never sends a byte is not held until the transport's idle timeout.
        let timeout = config.header_read_timeout;
        let mut deadline = timeout.map(|t| Instant::now() + t);
        // The head has one deadline; a body behind it may take any time while it moves
        // (nginx's `client_body_timeout`): its bound runs from the head's end, then from each
        // read that brought some of it.
        let mut body_pending = false;
        let head = loop {
            match codec::parse_request(&mut buf, config.max_header_size) {
                Ok(Parsed::Request(head)) => break head,
                Ok(Parsed::Head) => {}
                Ok(Parsed::Body) if !body_pending => {
                    body_pending = true;
                    deadline = timeout.map(|t| Instant::now() + t);
                }
                Ok(Parsed::Body) => {}
                Err(NotOwn::Leave) => return Outcome::HandOff(io, buf),
                Err(NotOwn::Bad(why)) => {
                    tracing::debug!(%peer, why, "http: bad request, answering 400");
                    let _ = answer(&mut io, conn::BAD_REQUEST).await;
                    return Outcome::Failed(Error::protocol(why.into()));
                }
                Err(NotOwn::VersionNotSupported) => {
                    tracing::debug!(%peer, "http: request in an HTTP version other than 1.x, answering 505");
                    let _ = answer(&mut io, conn::VERSION_NOT_SUPPORTED).await;
                    return Outcome::Failed(Error::protocol(
                        "the request's HTTP version is not 1.x".into(),
                    ));
                }
                Err(NotOwn::TargetTooLong) => {
                    tracing::debug!(%peer, "http: request line over the head's size limit, answering 414");
                    let _ = answer(&mut io, conn::URI_TOO_LONG).await;
                    return Outcome::Failed(Error::protocol(
                        "the request line is longer than the head may be".into(),
                    ));
                }
            }
            make_room(&mut buf);
            let read = tokio::select! {
                biased;
                () = &mut shutdown, if nothing_of_a_request(&buf) => return Outcome::Closed,
                read = timer.bound(deadline, io.read_buf(&mut buf)) => read,
            };
            match read {
                Ok(Ok(0)) if buf.is_empty() => return Outcome::Closed,
                Ok(Ok(0)) => {
                    tracing::debug!(%peer, "http: the client closed the connection inside a request");
                    return Outcome::Closed;
                }
                Ok(Ok(_)) if body_pending => {
                    deadline = timeout.map(|t| Instant::now() + t);
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Outcome::Failed(Error::protocol(error.into())),
                // Nothing of a next request: a kept-alive connection left idle (or a browser's
                // pre-opened one never used), which is how clients keep them, not a slow
                // client. Closed without a word and without a warning, as nginx and HAProxy
                // close one: a `408` here could cross a request the client sends at the same
                // moment and be read as its answer, where a bare close tells the client to
                // retry on a new connection (RFC 9112 9.3.1).
                Err(()) if nothing_of_a_request(&buf) => {
                    tracing::debug!(%peer, "http: connection idle past the header-read timeout, closing");
                    return Outcome::Closed;
                }
                Err(()) if body_pending => {
                    tracing::warn!(%peer, "http: the client sent no more of the request body in time, answering 408");
                    let _ = answer(&mut io, conn::REQUEST_TIMEOUT).await;
                    let stalled = body_timeout::Stalled::new(timeout.unwrap_or_default());
                    return Outcome::Failed(Error::request_body(Box::new(stalled)));
                }
                Err(()) => {
                    tracing::warn!(%peer, "http: request headers did not arrive in time, answering 408");
                    let _ = answer(&mut io, conn::REQUEST_TIMEOUT).await;
                    return Outcome::Failed(Error::header_timeout());
                }
            }
        };

        let persist = config.keep_alive && codec::connection_persists(head.version, &head.headers);
        let version = head.version;
        let is_head = head.method == Method::HEAD;
        let body = match head.trailers {
            None => Body::full(head.body),
            Some(trailers) => Body::full_with_trailers(head.body, *trailers),
        };
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        facts.add_to(request.extensions_mut());

        let mut read_side = ReadSide {
            buf: &mut buf,
            room: config.max_header_size,
        };
        // Heads offered after the last final head (by an exchange a service made while its
        // body went) answer no request of this client's.
        if facts.interim().take(&mut early) {
            early.clear();
        }
        let mut call = Call::new(shared.clone(), request);
        // An HTTP/1.0 client gets no informational responses (RFC 9110 15.2).
        let interim = (version == Version::HTTP_11).then_some((facts.interim(), &mut early));
        let called = match poll_fn(|cx| call.poll(cx)).await {
            Ok(future) => in_flight(&mut io, &mut read_side, future, interim).await,
            Err(error) => Some(Err(error)),
        };
        drop(call);
        let response = match called {
            Some(Ok(response)) => response,
            Some(Err(error)) => return Outcome::Failed(Error::service(error.into())),
            None => {
                tracing::debug!(%peer, "http: the client closed the connection while its request was in flight, dropping the request");
                return Outcome::Closed;
            }
        };
        // What came with the final response, or for an HTTP/1.0 client, goes now or never.
        if facts.interim().take(&mut early) || !early.is_empty() {
            if version == Version::HTTP_11
                && let Err(error) = io.write_all(&early).await
            {
                tracing::debug!(%peer, %error, "http: writing informational responses failed");
                return Outcome::Failed(Error::protocol(error.into()));
            }
            early.clear();
        }
        // A shutdown lets this response finish, then closes (and says so).
        let close = !persist || signal.is_triggered();
        let written = write_response(
            &mut io, &mut out, read_side, response, is_head, version, close,
        )
        .await;
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return Outcome::Closed;
            }
            Err(error) => {
                tracing::debug!(%peer, error = %crate::error::Chain(&*error), "http: writing the response failed");
                return Outcome::Failed(Error::protocol(error));
            }
        }
    }
}

/// The read side of the connection while a request is answered: the buffer a pipelined next
/// request goes to, and how much of it may be read ahead.
struct ReadSide<'a> {
    buf: &'a mut BytesMut,
    room: usize,
}

/// Room in `buf` for the next read.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_BUF / 4 {
        buf.reserve(READ_BUF);
    }
}

/// Awaits the service's `answer` while reading on from the client, as nginx and squid do: a
/// client that closes its connection (or resets it) has given up on the answer, and dropping
/// the answer's future ends what it does for it (an upstream exchange: its connection is
/// closed, not held until the upstream answers or times out). `None` when the client went.
///
/// With `interim`, the informational heads an upstream sends meanwhile (`103 Early Hints`)
/// are written to the client as they come, the rest of a write that could not go at once
/// kept in its buffer (for the caller to write before the final head).
///
/// Bytes that come meanwhile are a pipelined next request, kept in the read side's buffer up
/// to its room (then the client waits, as its socket's buffers fill). A client that shuts
/// down only its sending side and waits for the answer cannot be told from one that closed:
/// it loses the answer, as it does with nginx's and squid's defaults.
async fn in_flight<IO, F, T>(
    io: &mut IO,
    read_side: &mut ReadSide<'_>,
    answer: F,
    mut interim: Option<(&Interim, &mut Vec<u8>)>,
) -> Option<T>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = T>,
{
    let mut answer = std::pin::pin!(answer);
    // By hand rather than `select!`, which cost 160 instructions more per request.
    poll_fn(|cx| {
        if let Poll::Ready(answered) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        if let Some((interim, early)) = interim.as_mut() {
            interim.watch(cx);
            if (interim.take(early) || !early.is_empty())
                && write_early(&mut *io, cx, early).is_err()
            {
                return Poll::Ready(None);
            }
        }
        while read_side.buf.len() < read_side.room {
            make_room(read_side.buf);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut *read_side.buf) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Writes as much of `early` (informational heads) as `io` takes now, and asks it to flush;
/// an error when the client went.
fn write_early<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    cx: &mut std::task::Context<'_>,
    early: &mut Vec<u8>,
) -> io::Result<()> {
    while !early.is_empty() {
        match Pin::new(&mut *io).poll_write(cx, early) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => drop(early.drain(..n)),
            Poll::Ready(Err(error)) => return Err(error),
            Poll::Pending => return Ok(()),
        }
    }
    match Pin::new(&mut *io).poll_flush(cx) {
        Poll::Ready(Err(error)) => Err(error),
        _ => Ok(()),
    }
}

/// Arms a connection's [`Interim`] while the own path serves it (hyper's paths take no
/// informational heads: HTTP/2, and HTTP/1.1 after a hand-over).
struct Armed<'a>(&'a Interim);

impl<'a> Armed<'a> {
    fn new(interim: &'a Interim) -> Self {
        interim.arm(true);
        Self(interim)
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.arm(false);
    }
}

/// Whether `buf` holds nothing of a request: empty, or the empty lines a client may send
/// between requests (an extra CRLF after a body, which servers ignore, RFC 9112 2.2).
fn nothing_of_a_request(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Writes one of the connection's own canned answers and closes.
async fn answer<IO: AsyncWrite + Unpin>(io: &mut IO, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.shutdown().await
}

/// Writes `response` (only its head for a `HEAD` request); whether the connection stays open
/// after it.
async fn write_response<IO, B>(
    io: &mut IO,
    out: &mut Vec<u8>,
    mut read_side: ReadSide<'_>,
    response: Response<B>,
    is_head: bool,
    version: Version,
    mut close: bool,
) -> Result<bool, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    close |= !codec::connection_persists(Version::HTTP_11, &parts.headers);
    let body_framing = if bodiless {
        Framing::Empty
    } else {
        match body.size_hint().exact() {
            Some(n) => Framing::Length(n),
            None if version == Version::HTTP_11 => Framing::Chunked,
            // An HTTP/1.0 client knows no chunks: the body ends with the connection.
            None => {
                close = true;
                Framing::Close
            }
        }
    };
    // A HEAD answer says the length a GET would get, from the body if the head does not.
    let head_framing = match body.size_hint().exact() {
        Some(n) if is_head && n > 0 && !parts.headers.contains_key(header::CONTENT_LENGTH) => {
            Framing::Length(n)
        }
        _ => body_framing,
    };
    let framing = ResponseFraming {
        body: head_framing,
        close,
        keep_alive: version == Version::HTTP_10,
    };
    out.clear();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        codec::encode_response_head(status, &parts.headers, framing, Some(date.now()), out);
    });
    codec::recycle_map(parts.headers);
    if bodiless {
        io.write_all(out).await?;
        io.flush().await?;
        return Ok(!close);
    }
    let mut body = std::pin::pin!(body);
    let mut sent = 0u64;
    // The head waits in `out` for the first bytes of the body (one write for a small one),
    // unless the body has none ready: then the client gets the head at once, as a client
    // waiting for a slow or streamed body (an event stream) expects.
    let mut began = false;
    let mut trailers = None;
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !began {
                    began = true;
                    io.write_all(out).await?;
                    io.flush().await?;
                    out.clear();
                }
                // A body that is slow to come (an event stream, a long poll) is waited for
                // while reading on from the client, as a request in flight is: one that went
                // takes the body, and what it holds upstream, with it.
                in_flight(io, &mut read_side, body.frame(), None)
                    .await
                    .ok_or("the client closed the connection while the response was streaming")?
            }
        };
        let Some(frame) = frame else {
            break;
        };
        let frame = match frame {
            Ok(frame) => frame,
            // Not a byte of the response has left: the client gets a `502` rather than a
            // connection closed without a word (the body behind a proxy is an upstream's, which
            // broke before its first byte, as a malformed first chunk does).
            Err(error) if !began => {
                let _ = answer(io, conn::BAD_GATEWAY).await;
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            // They go after the last chunk; a body by length or close has no place for them
            // (an HTTP/1.0 client knows no trailers).
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if !data.has_remaining() {
            continue;
        }
        sent += data.remaining() as u64;
        if matches!(body_framing, Framing::Length(n) if sent > n) {
            return Err("the response body is longer than its length".into());
        }
        h1::put_data(io, out, data, body_framing == Framing::Chunked).await?;
        if !body.is_end_stream() {
            began = true;
            io.write_all(out).await?;
            out.clear();
        }
    }
    match body_framing {
        Framing::Length(n) if sent < n => {
            return Err("the response body is shorter than its length".into());
        }
        Framing::Chunked => codec::encode_last_chunk(trailers.as_ref(), out),
        _ => {}
    }
    io.write_all(out).await?;
    io.flush().await?;
    Ok(!close)
}

thread_local! {
    /// This thread's `Date` value, made once a second.
    static DATE: RefCell<Date> = const { RefCell::new(Date { second: u64::MAX, text: [0; 29] }) };
}

/// An HTTP date (IMF-fixdate, 29 bytes) and the second it says.
struct Date {
    second: u64,
    text: [u8; 29],
}

impl Date {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if let Ok(text) = text.as_bytes().try_into() {
                self.text = text;
                self.second = second;
            }
        }
        &self.text
    }
}
