//! rama's own HTTP/1.1 client connection, behind the [`Client`](super::Client)'s plain
//! `http://` path (requests that ask for no upgrade).
//!
//! Why not hyper's `client::conn::http1`: it runs each connection as a task of its own and
//! hands every request to it, and every response back, through channels; per exchange that was
//! two task wake-ups and polls, a oneshot and a want/give handshake, about a fifth of the
//! reverse proxy's instructions per request. Here the request's own future writes the request
//! and reads the response head, and the response body reads the rest: the connection belongs to
//! whoever is using it, and to the pool in between. [`codec`] is the framing on bytes.

pub(crate) mod codec;
#[cfg(test)]
mod differential;

use self::codec::{ChunkedDecoder, Decoded, Framing, ResponseHead};
use super::{
    Body, ConnFacts,
    body_timeout::{Silent, Upload, Verdict},
};
use crate::{BoxError, io::batch, timer::ConnTimer};
use ::http::{Response, StatusCode, request};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, future::Either};
use http_body::Frame;
use http_body_util::BodyExt;
use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// How much room a read asks for in the connection's buffer (responses of a few hundred bytes
/// share one allocation, many to a buffer).
const READ_BUF: usize = 32 * 1024;

/// Body bytes up to this size are copied behind what is waiting to be written (a head, a
/// chunk's start) and go in its write; larger ones are written as they are.
const COALESCE: usize = 16 * 1024;

/// How long a request that asked `Expect: 100-continue` holds its body back for the upstream's
/// `100` (or its refusal): curl's own wait, after which an upstream that ignores the
/// expectation (HTTP/1.0, say) gets the body all the same.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// Why a response from an upstream could not be read: it broke HTTP/1.1's framing.
#[derive(Debug)]
pub(crate) enum ParseError {
    Head(httparse::Error),
    TooManyHeaders,
    HeadTooLarge,
    Upgrade,
    ContentLength,
    /// A `Transfer-Encoding` other than `chunked` alone.
    TransferCoding,
    Chunk(&'static str),
    /// A malformed trailer section.
    Trailers(httparse::Error),
    /// A trailer section larger than a head may be.
    TrailersTooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head(_) => f.write_str("invalid response head"),
            Self::TooManyHeaders => write!(
                f,
                "the response head has more than {} header fields",
                codec::MAX_HEADERS
            ),
            Self::HeadTooLarge => write!(
                f,
                "the response head is larger than {} KiB",
                codec::MAX_HEAD / 1024
            ),
            Self::Upgrade => f.write_str("a 101 response to a request that asked for no upgrade"),
            Self::ContentLength => f.write_str("invalid content-length in the response"),
            Self::TransferCoding => f.write_str(
                "the response's transfer-encoding is not chunked alone (a coding rama does not undo)",
            ),
            Self::Chunk(what) => write!(f, "invalid chunked response body: {what}"),
            Self::Trailers(_) => f.write_str("invalid trailer section in the response"),
            Self::TrailersTooLarge => write!(
                f,
                "the response's trailer section is larger than {} KiB or has more than {} fields",
                codec::MAX_HEAD / 1024,
                codec::MAX_HEADERS
            ),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Head(error) | Self::Trailers(error) => Some(error),
            _ => None,
        }
    }
}

/// Why an exchange (request out, response head in) failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Writing the request head failed: the upstream did not get the request (on a pooled
    /// connection, it closed the connection while it was idle).
    Unsent(io::Error),
    /// The upstream closed or reset the connection after the request went and before any byte
    /// of a response (on a pooled connection, maybe while it was idle, maybe while it acted on
    /// the request).
    Closed(Option<io::Error>),
    /// Reading or writing failed after that.
    Io(io::Error),
    /// The response broke the framing.
    Parse(ParseError),
    /// The request body failed, or did not match its length (or stalled: `body_timeout::Stalled`).
    RequestBody(BoxError),
    /// The response head did not come before the deadline.
    Timeout,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsent(_) => f.write_str("writing the request to the upstream failed"),
            Self::Closed(_) => f.write_str("the upstream closed the connection before answering"),
            Self::Io(_) => f.write_str("the upstream connection failed"),
            Self::Parse(_) => f.write_str("the upstream's response is not valid HTTP/1.1"),
            Self::RequestBody(_) => f.write_str("the request body failed"),
            Self::Timeout => f.write_str("the upstream did not answer in time"),
        }
    }
}

impl std::error::Error for ExchangeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unsent(error) => Some(error),
            Self::Closed(error) => error.as_ref().map(|e| e as _),
            Self::Io(error) => Some(error),
            Self::Parse(error) => Some(error),
            Self::RequestBody(error) => Some(&**error),
            Self::Timeout => None,
        }
    }
}

impl From<ParseError> for ExchangeError {
    fn from(error: ParseError) -> Self {
        Self::Parse(error)
    }
}

/// An HTTP/1.1 connection to an upstream, between exchanges or inside one.
pub(crate) struct Connection {
    stream: batch::Stream,
    /// What was read and not yet taken: a response (head, then body) in pieces.
    read: BytesMut,
    /// The request head being written (reused from request to request).
    write: Vec<u8>,
    /// Bounds the wait for each response head.
    timer: ConnTimer,
}

/// What an exchange got: the response head, how its body is delimited, and whether the
/// connection can carry another exchange after it.
pub(crate) struct Answer {
    head: ResponseHead,
    framing: Framing,
    keep_alive: bool,
}

/// Where a connection goes once a response body has been read to its end.
pub(crate) type Home = Box<dyn FnOnce(Connection) + Send>;

impl Connection {
    /// A connection on `stream`, whose response heads `timer` bounds (the one that bounded
    /// the dial).
    pub(crate) fn new(stream: TcpStream, timer: ConnTimer) -> Self {
        Self {
            stream: batch::Stream::new(stream),
            read: BytesMut::new(),
            write: Vec::new(),
            timer,
        }
    }

    /// Whether an idle connection can still be used: the upstream has neither closed it nor
    /// sent anything since its last response (the readiness the runtime recorded; a read only
    /// when that says something came).
    pub(crate) fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.get_ref().poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) => {
                let mut byte = [0; 1];
                matches!(self.stream.get_ref().try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Poll::Ready(Err(_)) => false,
        }
    }

    /// Writes the request (`parts` with the origin-form `target`, and `body`) and reads the
    /// response head, by `deadline`. A streaming body is written while the head is awaited: an
    /// upstream that answers before it took the whole body ends the exchange there, and the
    /// connection is not used again. A streaming body is not bounded by `deadline` but by
    /// `timeout` after it last moved (see [`Upload`]): an upload may take longer than any
    /// response should.
    ///
    /// Not an `async fn`: its state machine would hold the exchange twice (built, then
    /// awaited), and the whole request's future carries it.
    pub(crate) fn exchange<'a>(
        &'a mut self,
        parts: &'a request::Parts,
        target: &'a str,
        body: Body,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Answer, ExchangeError>> + 'a {
        let Self {
            stream,
            read,
            write,
            timer,
        } = self;
        write.clear();
        let hint = http_body::Body::size_hint(&body);
        let framing =
            codec::encode_request_head(&parts.method, target, &parts.headers, &hint, write);
        match body.into_bytes() {
            Ok(bytes) => {
                let exchange = exchange(stream, read, write, parts, bytes, framing);
                Either::Left(
                    timer
                        .bound(deadline, exchange)
                        .map(|bounded| bounded.unwrap_or(Err(ExchangeError::Timeout))),
                )
            }
            // Boxed: the streaming exchange holds much more than the common one above, and
            // the common one would carry its room too.
            Err(body) => Either::Right(Box::pin(exchange_streaming(
                stream,
                read,
                write,
                timer,
                parts,
                body,
                Streaming {
                    framing,
                    // Only a body that streams is worth holding back (and worth the lookup).
                    expects_continue: codec::expects_continue(&parts.headers),
                    deadline,
                    timeout,
                },
            ))),
        }
    }

    /// The body of the response `answer` heads, and the connection when that body has been
    /// read already (nothing, or a length the connection's buffer holds whole) and it can
    /// carry another exchange; otherwise the body owns the connection and hands it to `home`
    /// at its end, and fails when it waits `timeout` for the upstream's next bytes.
    pub(crate) fn into_response(
        mut self,
        answer: Answer,
        home: impl FnOnce() -> Home,
        timeout: Option<Duration>,
    ) -> (Response<Body>, Option<Self>) {
        let Answer {
            mut head,
            framing,
            keep_alive,
        } = answer;
        let (body, free) = match framing {
            Framing::Empty => (Body::empty(), Some(self)),
            Framing::Length(n) if n <= self.read.len() as u64 => {
                let bytes = self.read.split_to(n as usize).freeze();
                (Body::full(bytes), Some(self))
            }
            framing => {
                let state = match framing {
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::Chunked(ChunkedDecoder::new(&mut head.hop)),
                    _ => State::Close,
                };
                let body = ResponseBody {
                    conn: Some(self),
                    state,
                    home: keep_alive.then(home),
                    timeout,
                    waiting: None,
                };
                (Body::h1(body), None)
            }
        };
        // Bytes after a whole response that came unasked: the connection is not in step.
        let free = free.filter(|conn| keep_alive && conn.read.is_empty());
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        (response, free)
    }
}

/// [`Connection::exchange`] of a body that is all there, without the deadline: the head in
/// `write` and the body behind it (in the same write when it is small; most requests have
/// none), then the response head.
async fn exchange(
    stream: &mut batch::Stream,
    read: &mut BytesMut,
    write: &mut Vec<u8>,
    parts: &request::Parts,
    bytes: Bytes,
    framing: Framing,
) -> Result<Answer, ExchangeError> {
    check_length(framing, bytes.len() as u64, true)?;
    if !bytes.is_empty() {
        put_data(stream, write, bytes, false)
            .await
            .map_err(ExchangeError::Unsent)?;
    }
    stream
        .write_all(write)
        .await
        .map_err(ExchangeError::Unsent)?;
    read_final(stream, read, parts, false).await
}

/// How [`exchange_streaming`] sends its body.
struct Streaming {
    framing: Framing,
    /// The request asked `Expect: 100-continue`.
    expects_continue: bool,
    /// For the request head (the dial shares it).
    deadline: Option<Instant>,
    /// For the body and the response head, from the upload's last move.
    timeout: Option<Duration>,
}

/// [`Connection::exchange`] with a body that streams, once the head is in `write`: the head
/// under `deadline` (which the dial shares), then the body and the response head side by
/// side, under `timeout` from the upload's last move.
///
/// A request that asked `Expect: 100-continue` waits for the upstream's word first (RFC 9110
/// 10.1.1): the body is not read until the upstream's `100` came, and the server in front
/// sends the client its own `100` only when the body is first read, so the client's upload
/// waits for the upstream's consent, and an upstream that refuses at once (`401`, `413`)
/// is answered without a byte of the body moving. Past [`CONTINUE_WAIT`] the body goes anyway.
async fn exchange_streaming(
    stream: &mut batch::Stream,
    read: &mut BytesMut,
    write: &mut Vec<u8>,
    timer: &ConnTimer,
    parts: &request::Parts,
    body: Body,
    how: Streaming,
) -> Result<Answer, ExchangeError> {
    let Streaming {
        framing,
        expects_continue,
        deadline,
        timeout,
    } = how;
    timer
        .bound(deadline, stream.write_all(write))
        .await
        .map_err(|()| ExchangeError::Timeout)?
        .map_err(ExchangeError::Unsent)?;
    write.clear();
    // Whether the upstream's `100` came (the request reached it, whatever happens next).
    let mut continued = false;
    if expects_continue {
        let wait = Some(Instant::now() + CONTINUE_WAIT);
        match timer
            .bound(wait, read_continue(stream, read, &parts.method))
            .await
        {
            // The upstream answered without the body, which it was announced and never got:
            // the connection is out of step.
            Ok(Ok(Some(mut answer))) => {
                answer.keep_alive = false;
                return Ok(answer);
            }
            Ok(Ok(None)) => continued = true,
            Err(()) => {}
            Ok(Err(error)) => return Err(error),
        }
    }
    let upload = timeout.map(Upload::new);
    let (mut reader, mut writer) = stream.split();
    let mut sending = std::pin::pin!(send_body(
        &mut writer,
        write,
        body,
        framing,
        upload.as_ref()
    ));
    let mut head = std::pin::pin!(read_final(&mut reader, read, parts, continued));
    let mut sent = false;
    let mut write_error = None;
    // Moved forward each time it passes while the upload moved since (see `body_timeout.rs`).
    let mut deadline = upload.as_ref().map(Upload::deadline);
    loop {
        let expiry = async {
            match deadline {
                Some(deadline) => timer.sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            answer = &mut head => {
                return match (answer, write_error) {
                    (Ok(mut answer), _) => {
                        answer.keep_alive &= sent;
                        Ok(answer)
                    }
                    // The upstream went away: why the write failed says more.
                    (Err(_), Some(error)) => Err(error),
                    (Err(error), None) => Err(error),
                };
            }
            done = &mut sending, if !sent && write_error.is_none() => match done {
                Ok(()) => {
                    sent = true;
                    if let Some(upload) = &upload {
                        upload.finished();
                    }
                }
                Err(error @ ExchangeError::RequestBody(_)) => return Err(error),
                // The upstream may still answer (a 413 before it closed, say).
                Err(error) => write_error = Some(error),
            },
            () = expiry => match upload.as_ref().zip(deadline).map(|(u, d)| (u, u.verdict(d))) {
                Some((_, Verdict::Later(next))) => deadline = Some(next),
                Some((upload, Verdict::Stalled)) => {
                    return Err(ExchangeError::RequestBody(upload.stalled()));
                }
                _ => return Err(ExchangeError::Timeout),
            }
        }
    }
}

/// Puts `data` behind what `out` holds, as the next piece of a body (a chunk of its own when
/// `chunked`): copied when it is small, so that it goes in `out`'s next write; else `out` is
/// written and then `data`, as it is. What ends a chunk stays in `out`. The client's request
/// bodies and the server's response bodies go out through here.
pub(crate) async fn put_data<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    mut data: impl Buf,
    chunked: bool,
) -> io::Result<()> {
    if chunked {
        codec::encode_chunk_start(data.remaining(), out);
    }
    if data.remaining() <= COALESCE {
        out.put(data);
    } else {
        io.write_all(out).await?;
        out.clear();
        io.write_all_buf(&mut data).await?;
    }
    if chunked {
        out.extend_from_slice(codec::CHUNK_END);
    }
    Ok(())
}

/// An error unless `written` bytes fit the framing the head announced (`done`: all of them).
fn check_length(framing: Framing, written: u64, done: bool) -> Result<(), ExchangeError> {
    let fits = match framing {
        Framing::Length(n) if done => written == n,
        Framing::Length(n) => written <= n,
        Framing::Empty => written == 0,
        Framing::Chunked | Framing::Close => true,
    };
    if fits {
        return Ok(());
    }
    Err(ExchangeError::RequestBody(
        format!("the request body is {written} bytes, not what its head announced").into(),
    ))
}

/// Reads until a final response head to the request `parts` is in `buf`; the informational
/// ones before it are read past, and offered to the client's connection (see
/// [`server::interim`](super::server::interim)) when the request came from rama's server;
/// `answered` when an interim one came already, so that a close is no longer one "before
/// answering" (which a retry may take as unprocessed).
async fn read_final<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    parts: &request::Parts,
    answered: bool,
) -> Result<Answer, ExchangeError> {
    let mut received = answered || !buf.is_empty();
    loop {
        while !buf.is_empty()
            && let Some(head) = codec::parse_response_head(buf)?
        {
            if head.status.is_informational()
                && let Some(facts) = parts.extensions.get::<ConnFacts>()
            {
                facts.interim().offer(head.status, &head.headers);
            }
            if let Some(answer) = answer_to(&parts.method, head)? {
                return Ok(answer);
            }
        }
        read_more(reader.read_buf(room(buf)).await, &mut received)?;
    }
}

/// Reads until a `100 Continue` (`None`) or a final response head (`Some`) is in `buf`;
/// other informational ones are read past. Apart from [`read_final`], which every response
/// goes through, so that its future stays as small as it was.
async fn read_continue<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    method: &::http::Method,
) -> Result<Option<Answer>, ExchangeError> {
    let mut received = !buf.is_empty();
    loop {
        while !buf.is_empty()
            && let Some(head) = codec::parse_response_head(buf)?
        {
            if head.status == StatusCode::CONTINUE {
                return Ok(None);
            }
            if let Some(answer) = answer_to(method, head)? {
                return Ok(Some(answer));
            }
        }
        read_more(reader.read_buf(room(buf)).await, &mut received)?;
    }
}

/// The answer `head` makes to a `method` request; `None` for an informational one (read
/// past), an error for a `101` (no upgrade goes this way).
fn answer_to(method: &::http::Method, head: ResponseHead) -> Result<Option<Answer>, ExchangeError> {
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ParseError::Upgrade.into());
    }
    if head.status.is_informational() {
        return Ok(None);
    }
    let framing = codec::response_framing(method, &head)?;
    let mut head = head;
    head.hop
        .transfer_coding
        .drop_length_beside_chunks(&mut head.headers);
    let keep_alive = codec::keeps_alive(&head) && framing != Framing::Close;
    Ok(Some(Answer {
        head,
        framing,
        keep_alive,
    }))
}

/// `buf`, with room for the next read of a response head.
fn room(buf: &mut BytesMut) -> &mut BytesMut {
    if buf.capacity() - buf.len() < READ_BUF / 8 {
        buf.reserve(READ_BUF);
    }
    buf
}

/// What a read for a response head came to: an error for the end of the stream or a failure,
/// told apart by whether anything of an answer was `received` before (a close before any is
/// one a retry may take as unprocessed).
fn read_more(read: io::Result<usize>, received: &mut bool) -> Result<(), ExchangeError> {
    match read {
        Ok(0) if !*received => Err(ExchangeError::Closed(None)),
        Ok(0) => {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "in the response head");
            Err(ExchangeError::Io(eof))
        }
        Ok(_) => {
            *received = true;
            Ok(())
        }
        Err(error) if !*received => Err(ExchangeError::Closed(Some(error))),
        Err(error) => Err(ExchangeError::Io(error)),
    }
}

/// Writes a streaming request body in the framing its head announced (`out`: an empty
/// buffer to write through).
async fn send_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Vec<u8>,
    mut body: Body,
    framing: Framing,
    upload: Option<&Upload>,
) -> Result<(), ExchangeError> {
    let chunked = framing == Framing::Chunked;
    let mut written = 0u64;
    let mut trailers = None;
    let moved = |on_client| upload.inspect(|upload| upload.moved(on_client));
    while let Some(frame) = body.frame().await {
        moved(false);
        let frame = frame.map_err(ExchangeError::RequestBody)?;
        let data = match frame.into_data() {
            Ok(data) => data,
            // Sent after the last chunk; a length-delimited body has no place for them.
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        written += data.len() as u64;
        check_length(framing, written, false)?;
        put_data(writer, out, data, chunked)
            .await
            .map_err(ExchangeError::Io)?;
        writer.write_all(out).await.map_err(ExchangeError::Io)?;
        out.clear();
        moved(true);
    }
    check_length(framing, written, true)?;
    if chunked {
        codec::encode_last_chunk(trailers.as_ref(), out);
        writer.write_all(out).await.map_err(ExchangeError::Io)?;
    }
    Ok(())
}

/// How much of a streaming response body is left.
enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

/// A response body read from its connection as the receiver asks for it; at its end the
/// connection goes `home` (when it can carry another exchange). Dropped before its end, it
/// closes the connection.
pub(crate) struct ResponseBody {
    conn: Option<Connection>,
    state: State,
    home: Option<Home>,
    /// How long it may wait for the upstream's next bytes (nginx's `proxy_read_timeout`):
    /// only the time it waits counts, not the time its receiver takes between two asks.
    timeout: Option<Duration>,
    /// Since when it waits.
    waiting: Option<Instant>,
}

/// The next thing a response body does.
enum Step {
    Data(Bytes),
    Trailers(::http::HeaderMap),
    Read,
    Done,
}

impl ResponseBody {
    fn step(&mut self) -> Result<Step, BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::Done);
        };
        let buf = &mut conn.read;
        Ok(match &mut self.state {
            State::Length(0) => Step::Done,
            State::Length(_) | State::Close if buf.is_empty() => Step::Read,
            State::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                Step::Data(buf.split_to(n).freeze())
            }
            State::Close => Step::Data(buf.split().freeze()),
            State::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data(data) => Step::Data(data),
                Decoded::Trailers(trailers) => Step::Trailers(trailers),
                Decoded::NeedMore => Step::Read,
                Decoded::Done => Step::Done,
            },
        })
    }

    /// The body has ended: its connection goes home if it can carry another exchange.
    fn finish(&mut self) {
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take())
            && conn.read.is_empty()
        {
            home(conn);
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let step = match this.step() {
                Ok(step) => step,
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
            };
            match step {
                Step::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                // The body's last frame: its connection goes home now, as a receiver that has
                // the trailers need not ask again (hyper's HTTP/2 server does not).
                Step::Trailers(trailers) => {
                    this.finish();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Step::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::Read => {}
            }
            let conn = this
                .conn
                .as_mut()
                .expect("a body that reads has its connection");
            if conn.read.capacity() - conn.read.len() < READ_BUF / 8 {
                conn.read.reserve(READ_BUF);
            }
            let read = std::pin::pin!(conn.stream.read_buf(&mut conn.read)).poll(cx);
            let Poll::Ready(read) = read else {
                let Some(timeout) = this.timeout else {
                    return Poll::Pending;
                };
                let since = *this.waiting.get_or_insert_with(Instant::now);
                let mut expiry = std::pin::pin!(conn.timer.sleep_until(since + timeout));
                if expiry.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.conn = None;
                return Poll::Ready(Some(Err(Box::new(Silent(timeout)))));
            };
            this.waiting = None;
            match read {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    let eof = "the upstream closed the connection before the end of the body";
                    return Poll::Ready(Some(Err(eof.into())));
                }
                Ok(_) => {}
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.state, State::Length(0))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.state {
            State::Length(left) if self.conn.is_some() => http_body::SizeHint::with_exact(left),
            State::Length(_) => http_body::SizeHint::with_exact(0),
            _ => http_body::SizeHint::default(),
        }
    }
}
