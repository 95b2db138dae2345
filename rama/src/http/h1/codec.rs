//! HTTP/1.1 client framing on bytes, without I/O: the request head, the response head, how a
//! response body is delimited (RFC 9112 section 6.3), and chunked transfer coding both ways.

use super::ParseError;
use crate::http::headers;
use ::http::{
    Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header,
    uri::PathAndQuery,
};
use bytes::{Buf, Bytes, BytesMut};
use http_body::SizeHint;
use std::{
    cell::{Cell, RefCell},
    io::Write,
    mem::MaybeUninit,
    thread::LocalKey,
};

/// The most header fields a response head may carry (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;

/// The most bytes a response head, or a chunk-size line with the trailer section, may take.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes the connection (responses only).
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    /// The fields but the hop-by-hop ones (RFC 9110 7.6.1: `Connection` and those it names,
    /// `Keep-Alive`, `Transfer-Encoding`, ...), which are about this connection, not the message:
    /// whoever the response goes on to needs them gone, and removing them from a built map
    /// costs more than never putting them in.
    pub(crate) headers: HeaderMap,
    /// What the hop-by-hop fields said.
    pub(crate) hop: Hop,
}

/// What a response's hop-by-hop fields said about its framing and its connection.
#[derive(Debug, Default)]
pub(crate) struct Hop {
    /// What the `Transfer-Encoding` fields said, all of them.
    pub(crate) transfer_coding: headers::TransferCoding,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// The fields `Connection` named besides the usual tokens (rare): this hop's, in the head
    /// and in a trailer section alike. A thin pointer: the head is moved whole a few times.
    named: Option<Box<[HeaderName]>>,
}

/// Appends the head of a request to `out`: `method target HTTP/1.1`, `headers` as they are
/// but `Content-Length`, which is written from the framing chosen here and returned. A body of
/// known size gets `Content-Length` (none for an empty body of a method whose requests carry
/// none, RFC 9110 section 8.6); one of unknown size `Transfer-Encoding: chunked` (the headers
/// come with the hop-by-hop ones removed, `Transfer-Encoding` among them).
pub(crate) fn encode_request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &SizeHint,
    out: &mut Vec<u8>,
) -> Framing {
    let framing = match body.exact() {
        Some(0) if !expects_body(method) && !headers.contains_key(header::CONTENT_LENGTH) => {
            Framing::Empty
        }
        Some(n) => Framing::Length(n),
        // A stream that says its length in a header the client set: trusted like hyper does.
        None => match headers.get(header::CONTENT_LENGTH).and_then(parse_length) {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        },
    };
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // The map hands a name's values out one after the other.
    let mut in_cookie = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            continue;
        }
        if name == header::COOKIE {
            // The cookies an HTTP/2 request split over several lines (RFC 9113 8.2.3) go on
            // one, as HTTP/1.1 has them (RFC 6265 5.4): an origin may read the first alone.
            if in_cookie {
                out.truncate(out.len() - 2);
                out.extend_from_slice(b"; ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
                continue;
            }
            in_cookie = true;
        } else {
            in_cookie = false;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// Whether requests of `method` are expected to carry content, so that an empty one says
/// `Content-Length: 0` rather than nothing.
fn expects_body(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::OPTIONS
            | Method::CONNECT
            | Method::TRACE
    )
}

/// Appends the line that opens a chunk of `len` bytes.
pub(crate) fn encode_chunk_start(len: usize, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

/// What ends a chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with an empty trailer section.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the last chunk with `trailers`, if any, as its trailer section (RFC 9112 7.1.2),
/// but the fields no trailer may carry ([`headers::allowed_in_trailers`]).
pub(crate) fn encode_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    let Some(trailers) = trailers else {
        out.extend_from_slice(LAST_CHUNK);
        return;
    };
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        if headers::allowed_in_trailers(name) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses a response head from the front of `buf`: `Ok(None)` while it is incomplete (an
/// error once it is longer than [`MAX_HEAD`]); when complete, its bytes are split off `buf`
/// and the header values keep pointing into them (no copy).
pub(crate) fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, ParseError> {
    // Uninitialized slots: filling 100 of them first would cost more than parsing 10 headers.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(ParseError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ParseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
        Err(error) => return Err(ParseError::Head(error)),
    };
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = StatusCode::from_u16(response.code.unwrap_or_default())
        .map_err(|_| ParseError::Head(httparse::Error::Status))?;
    let spans = Spans::of(buf, response.headers);
    let head = buf.split_to(len).freeze();
    let mut hop = Hop::default();
    let headers = spans
        .header_map(&head, ROOM_IN_RESPONSE, &RESPONSE_NAMES, Some(&mut hop))
        .map_err(|()| ParseError::Head(httparse::Error::HeaderValue))?;
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        hop,
    }))
}

/// Room for the headers a proxy adds to a request it forwards (`X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded`, `Via`, `Host`).
const ROOM_IN_REQUEST: usize = 6;

/// Room for the headers a proxy adds to a response (`Via`).
const ROOM_IN_RESPONSE: usize = 1;

/// Where each header's name and value sit in a head, to slice them off it once it is frozen
/// (httparse's fields borrow the buffer the head is split from). A head is at most 64 KiB, so
/// 16 bits say where.
struct Spans {
    spans: [[u16; 4]; MAX_HEADERS],
    count: usize,
}

impl Spans {
    fn of(buf: &[u8], headers: &[httparse::Header<'_>]) -> Self {
        let base = buf.as_ptr() as usize;
        let offset = |field: &[u8]| (field.as_ptr() as usize - base) as u16;
        let mut spans = [[0u16; 4]; MAX_HEADERS];
        for (span, header) in spans.iter_mut().zip(headers) {
            let name = header.name.as_bytes();
            *span = [
                offset(name),
                name.len() as u16,
                offset(header.value),
                header.value.len() as u16,
            ];
        }
        Self {
            spans,
            count: headers.len(),
        }
    }

    /// The headers, their values slices of `head` (no copy), with room for `more` (what a
    /// proxy adds: growing the map later rehashes every header). With `hop`, the hop-by-hop
    /// fields stay out of the map and what they say goes to `hop`.
    #[allow(unsafe_code)]
    fn header_map(
        &self,
        head: &Bytes,
        more: usize,
        seen: &'static LocalKey<Cell<SeenNames>>,
        mut hop: Option<&mut Hop>,
    ) -> Result<HeaderMap, ()> {
        let mut headers = spare_map(self.count + more);
        // Fields `Connection` names besides the usual tokens (rare: no allocation otherwise).
        let mut named = Vec::new();
        // Taken out of the thread's cell for the loop, put back after it (an empty one
        // while the thread is being torn down).
        let mut names = seen.try_with(Cell::take).unwrap_or_default();
        let mut fill = || {
            for (at, &[name, name_len, value, value_len]) in
                self.spans[..self.count].iter().enumerate()
            {
                let (name, value) = (usize::from(name), usize::from(value));
                let (name, hop_by_hop) =
                    names.name(at, &head[name..name + usize::from(name_len)])?;
                let value = head.slice(value..value + usize::from(value_len));
                // SAFETY: httparse (default config: no obsolete line folding) accepts in a
                // value exactly the bytes `HeaderValue` does (HTAB, 0x20-0x7E, 0x80-0xFF) and
                // fails the parse on any other (`bad_bytes_in_values_fail_the_parse` pins
                // it). Checking them again was a tenth of the parse.
                let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
                if hop_by_hop && let Some(hop) = hop.as_deref_mut() {
                    hop.note(&name, value, &mut named);
                    continue;
                }
                headers.append(name, value);
            }
            Ok(())
        };
        let filled = fill();
        let _ = seen.try_with(|seen| seen.set(names));
        filled?;
        if !named.is_empty() {
            remove_named(&mut headers, named, hop);
        }
        Ok(headers)
    }
}

/// The longest field name [`SeenNames`] keeps.
const SEEN_NAME_MAX: usize = 32;

/// How many fields of a head [`SeenNames`] keeps the names of.
const SEEN_FIELDS: usize = 32;

/// The field names of the last head of a kind (requests, responses) this thread parsed, by
/// position. The next head of that kind most often has the same names in the same order (a
/// client's next request, an upstream's next response), and a name whose bytes are the same
/// as the one seen at its place is taken from here: `HeaderName::from_bytes` (lowercasing, a
/// match over the standard names, an allocation for any other) and the hop-by-hop lookup are
/// a function of those bytes alone, and were a third of what building a map cost per field.
#[derive(Default)]
struct SeenNames {
    seen: Vec<SeenName>,
}

/// A name [`SeenNames`] keeps: its bytes as they came, and what they made.
struct SeenName {
    raw: [u8; SEEN_NAME_MAX],
    len: u8,
    name: HeaderName,
    hop_by_hop: bool,
}

impl SeenNames {
    /// The name whose bytes are `raw`, the `at`-th field of its head, and whether it is a
    /// hop-by-hop field.
    fn name(&mut self, at: usize, raw: &[u8]) -> Result<(HeaderName, bool), ()> {
        if let Some(seen) = self.seen.get(at)
            && seen.raw[..usize::from(seen.len)] == *raw
        {
            return Ok((seen.name.clone(), seen.hop_by_hop));
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| ())?;
        let hop_by_hop = headers::hop_by_hop_index(&name).is_some();
        // Kept if it is short enough and its place is known or next: the fields come in
        // order, so past a name too long to keep none of the head's later ones is kept
        // either, and no place is left empty.
        if raw.len() <= SEEN_NAME_MAX && at <= self.seen.len() && at < SEEN_FIELDS {
            let mut bytes = [0; SEEN_NAME_MAX];
            bytes[..raw.len()].copy_from_slice(raw);
            let seen = SeenName {
                raw: bytes,
                len: raw.len() as u8,
                name: name.clone(),
                hop_by_hop,
            };
            if at == self.seen.len() {
                self.seen.push(seen);
            } else {
                self.seen[at] = seen;
            }
        }
        Ok((name, hop_by_hop))
    }
}

/// Removes the fields `Connection` named from `headers`, and keeps their names in `hop` (for
/// the trailers). Apart from [`Spans::header_map`], which every head goes through: grown by
/// this, it no longer had `HeaderMap::append` inlined (300 instructions per proxied request).
#[inline(never)]
fn remove_named(headers: &mut HeaderMap, named: Vec<HeaderName>, hop: Option<&mut Hop>) {
    for name in &named {
        headers.remove(name);
    }
    if let Some(hop) = hop {
        hop.named = Some(named.into_boxed_slice());
    }
}

impl Hop {
    /// Takes in one hop-by-hop field.
    fn note(&mut self, name: &HeaderName, value: HeaderValue, named: &mut Vec<HeaderName>) {
        if name == header::TRANSFER_ENCODING {
            self.transfer_coding = self.transfer_coding.and(value.as_bytes());
        } else if name == header::CONNECTION {
            for token in value
                .as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
            {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if let Ok(name) = HeaderName::from_bytes(token)
                    // The body's length is read once the map is built: a connection option
                    // must not take it away (the client then read until the close, which a
                    // kept-alive upstream never sent). The server frames what it forwards.
                    && name != header::CONTENT_LENGTH
                {
                    named.push(name);
                }
            }
        }
    }
}

/// How many emptied header maps (and, apart, extension sets) a thread keeps.
const SPARES: usize = 64;

/// Maps with room for more fields than this are not kept (one odd message must not pin a
/// large map).
const SPARE_MAP_MAX: usize = 64;

/// Sets that held more values than this are not kept.
const SPARE_EXTENSIONS_MAX: usize = 8;

/// A thread's list of emptied values kept for reuse.
type Spares<T> = LocalKey<RefCell<Vec<T>>>;

thread_local! {
    /// Emptied header maps: each exchange parses two heads and drops two maps; taking an
    /// emptied one saves the two allocations (and two frees) of a new one.
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };

    /// Emptied extension sets: the server puts the connection's facts into each request's,
    /// which costs a new set three allocations (its map, the map's table, the value); the
    /// client empties the set of each request it sent.
    static SPARE_EXTENSIONS: RefCell<Vec<Extensions>> = const { RefCell::new(Vec::new()) };

    /// The field names of the last request head this thread parsed (see [`SeenNames`]).
    static REQUEST_NAMES: Cell<SeenNames> = const { Cell::new(SeenNames { seen: Vec::new() }) };

    /// The field names of the last response head this thread parsed (see [`SeenNames`]).
    static RESPONSE_NAMES: Cell<SeenNames> = const { Cell::new(SeenNames { seen: Vec::new() }) };
}

/// One of this thread's `spares`, if it has one.
fn take_spare<T: 'static>(spares: &'static Spares<T>) -> Option<T> {
    spares
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
}

/// Keeps the emptied `value` in this thread's `spares`, unless it has enough.
fn keep_spare<T: 'static>(spares: &'static Spares<T>, value: T) {
    let _ = spares.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(value);
        }
    });
}

/// An empty header map with room for `fields`: a spare one when this thread has one.
fn spare_map(fields: usize) -> HeaderMap {
    match take_spare(&SPARE) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Empties `map` and keeps it for [`spare_map`] (unless the thread has enough, or it is large).
pub(crate) fn recycle_map(mut map: HeaderMap) {
    if map.capacity() > SPARE_MAP_MAX {
        return;
    }
    map.clear();
    keep_spare(&SPARE, map);
}

/// An empty extension set: a spare one when this thread has one.
pub(crate) fn spare_extensions() -> Extensions {
    take_spare(&SPARE_EXTENSIONS).unwrap_or_default()
}

/// Empties `extensions` and keeps it for [`spare_extensions`] (unless the thread has enough,
/// or it held many values).
pub(crate) fn recycle_extensions(mut extensions: Extensions) {
    if extensions.is_empty() || extensions.len() > SPARE_EXTENSIONS_MAX {
        return;
    }
    extensions.clear();
    keep_spare(&SPARE_EXTENSIONS, extensions);
}

/// A request the server's own HTTP/1.1 path serves: its head, and its body, which came whole
/// right behind it (by its `Content-Length`, or chunked and decoded).
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// A chunked body's trailer fields, if it had any (rare: boxed, so that every request
    /// does not carry a second map's room).
    pub(crate) trailers: Option<Box<HeaderMap>>,
}

/// Why [`parse_request`] did not take a request for the server's own path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotOwn {
    /// Something the path leaves to hyper, buffer untouched: `CONNECT`, an upgrade, `Expect`,
    /// a transfer coding other than `chunked` alone (or beside a `Content-Length`, or from an
    /// HTTP/1.0 client), a chunked body not all in the buffer or malformed, a body larger
    /// than [`MAX_BODY`], a head larger than `max_head`, anything malformed in the head (hyper
    /// answers `400` or `431`), HTTP/2's preface.
    Leave,
    /// The head was taken off the buffer, and its target or a header is not one `http` takes:
    /// `400`.
    Bad(&'static str),
    /// The request line alone is longer than the head may be: `414` (what nginx and HAProxy
    /// answer; hyper, given the rest, would say `431` of fields that never came).
    TargetTooLong,
    /// The request line names an HTTP version of a major above 1 (`HTTP/2.0` that is not
    /// HTTP/2's preface, `HTTP/3.0`): `505`, as nginx answers (hyper would say `400`).
    VersionNotSupported,
}

/// The largest body the server's own path waits for behind a head.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// What [`parse_request`] found at the front of the buffer.
// Returned by value and taken apart at once, as `Option<RequestHead>` was; boxing the request
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// A whole request, taken off the buffer.
    Request(RequestHead),
    /// Not all of the head yet.
    Head,
    /// The whole head, and not all of its body yet (the server bounds the wait for a body
    /// between two reads, as for an upload, not as for a head).
    Body,
}

/// Parses a request at the front of `buf` for the server's own HTTP/1.1 path: how far it is
/// while incomplete, the request taken off `buf` when complete; see [`NotOwn`] for the rest.
pub(crate) fn parse_request(buf: &mut BytesMut, max_head: usize) -> Result<Parsed, NotOwn> {
    // Looked at only past the limit, off the path of every request that fits.
    if buf.len() > max_head
        && buf
            .iter()
            .position(|&b| b == b'\n')
            .is_none_or(|at| at > max_head)
    {
        return Err(NotOwn::TargetTooLong);
    }
    let max_head = max_head.min(MAX_HEAD);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Ok(Parsed::Head),
        // Off the path of every request httparse takes.
        Err(httparse::Error::Version) => {
            return match other_version(buf) {
                OtherVersion::Rewritten => parse_request(buf, max_head),
                OtherVersion::Unsupported => Err(NotOwn::VersionNotSupported),
                OtherVersion::Invalid => Err(NotOwn::Leave),
            };
        }
        _ => return Err(NotOwn::Leave),
    };
    let Some(method) = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
    else {
        return Err(NotOwn::Leave);
    };
    if method == Method::CONNECT {
        return Err(NotOwn::Leave);
    }
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut length = None;
    let mut repeated = false;
    let mut coding = headers::TransferCoding::Absent;
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        let is = |other: &HeaderName| name.eq_ignore_ascii_case(other.as_str().as_bytes());
        if is(&header::UPGRADE) || is(&header::EXPECT) {
            return Err(NotOwn::Leave);
        }
        if is(&header::TRANSFER_ENCODING) {
            coding = coding.and(header.value);
            continue;
        }
        if is(&header::CONTENT_LENGTH) {
            match parse_digits(header.value.trim_ascii()) {
                Some(n) if length.is_none_or(|l| l == n) => {
                    repeated |= length.is_some();
                    length = Some(n);
                }
                _ => return Err(NotOwn::Leave),
            }
        }
    }
    // How many bytes past the head the body takes, and, when chunked, what they decode to.
    let (body_len, chunked) = match coding {
        headers::TransferCoding::Absent => match usize::try_from(length.unwrap_or(0)) {
            Ok(n) if n <= MAX_BODY => (n, None),
            _ => return Err(NotOwn::Leave),
        },
        // Chunks beside a length, and from an HTTP/1.0 client, are hyper's (the proxies
        // forward the first by its chunks and close; the second is `400`).
        headers::TransferCoding::Chunked if length.is_none() && version == Version::HTTP_11 => {
            let Some(whole) = whole_chunked(&buf[len..], request.headers) else {
                return Err(NotOwn::Leave);
            };
            (whole.len, Some(whole))
        }
        _ => return Err(NotOwn::Leave),
    };
    if buf.len() - len < body_len {
        return Ok(Parsed::Body);
    }
    let target = request.path.unwrap_or("/");
    let target = (
        target.as_ptr() as usize - buf.as_ptr() as usize,
        target.len(),
    );
    let spans = Spans::of(buf, request.headers);
    let head = buf.split_to(len).freeze();
    let (body, trailers) = match chunked {
        Some(whole) => {
            buf.advance(whole.len);
            (whole.data, whole.trailers)
        }
        None => (buf.split_to(body_len).freeze(), None),
    };
    let Ok(mut uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        return Err(NotOwn::Bad("invalid request target"));
    };
    if method == Method::OPTIONS && has_no_path(&head[target.0..target.0 + target.1]) {
        uri = asterisk(uri).ok_or(NotOwn::Bad("invalid request target"))?;
    }
    let Ok(mut headers) = spans.header_map(&head, ROOM_IN_REQUEST, &REQUEST_NAMES, None) else {
        return Err(NotOwn::Bad("invalid header"));
    };
    if repeated {
        headers::single_content_length(&mut headers);
    }
    Ok(Parsed::Request(RequestHead {
        method,
        uri,
        version,
        headers,
        body,
        trailers,
    }))
}

/// A chunked request body that came whole: how many bytes it took, its data, its trailers.
struct WholeChunked {
    len: usize,
    data: Bytes,
    trailers: Option<Box<HeaderMap>>,
}

/// Decodes the chunked body at the front of `raw` if all of it is there (the trailer section
/// and its empty line included), well-formed, and its data is at most [`MAX_BODY`]; `None`
/// otherwise, for hyper to stream it (a malformed one fails there, at the error, which the
/// proxies answer `400` naming it). The decoder is the client's: it ends a trailer line at a
/// bare LF as nginx and HAProxy do (RFC 9112 2.2), where hyper reads on to the next CRLF, so
/// a request whose body came whole is framed as a hop in front framed it.
///
/// The fields the head's `Connection` (among `fields`) names are this hop's, kept out of the
/// trailers too, as a response's are.
///
/// It decodes a copy: a body not all there leaves the buffer as it was, for hyper. Chunked
/// requests are a small part of the traffic, and the copy is of what one read brought.
fn whole_chunked(raw: &[u8], fields: &[httparse::Header<'_>]) -> Option<WholeChunked> {
    let mut hop = Hop::default();
    let mut named = Vec::new();
    for field in fields {
        if field.name.eq_ignore_ascii_case(header::CONNECTION.as_str()) {
            let value = HeaderValue::from_bytes(field.value).ok()?;
            hop.note(&header::CONNECTION, value, &mut named);
        }
    }
    hop.named = (!named.is_empty()).then(|| named.into_boxed_slice());
    let mut rest = BytesMut::from(raw);
    let mut decoder = ChunkedDecoder::new(&mut hop);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    let mut trailers = None;
    loop {
        match decoder.decode(&mut rest).ok()? {
            Decoded::Data(bytes) => {
                len += bytes.len();
                if len > MAX_BODY {
                    return None;
                }
                chunks.push(bytes);
            }
            Decoded::Trailers(fields) => trailers = Some(Box::new(fields)),
            Decoded::NeedMore => return None,
            Decoded::Done => break,
        }
    }
    // One chunk, the usual case, is kept as it came; more are joined.
    let data = match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    };
    Some(WholeChunked {
        len: raw.len() - rest.len(),
        data,
        trailers,
    })
}

/// What [`other_version`] made of a request line httparse refused for its version.
#[derive(Debug, PartialEq, Eq)]
enum OtherVersion {
    /// `HTTP/1.x` with `x` above 1, now `HTTP/1.1` in the buffer.
    Rewritten,
    /// `HTTP/M.m` with `M` above 1, and not HTTP/2's preface.
    Unsupported,
    /// Anything else: malformed (hyper answers `400`), or the preface (hyper takes it).
    Invalid,
}

/// HTTP/2's connection preface starts so (RFC 9113 3.4): hyper takes it, whatever its version.
const PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";

/// Looks at the version of the request line at the front of `buf`, which httparse refused
/// (it knows `HTTP/1.0` and `HTTP/1.1` alone). A higher minor version of major 1 is rewritten
/// in place to `HTTP/1.1`: RFC 9112 2.3 has a recipient process it as the highest minor
/// version it conforms to (nginx does), and rewritten, the bytes say so to whoever parses
/// them, this path or hyper after a hand-over (`HTTP/1.2` was hyper's `400`). Versions are
/// one digit each (RFC 9112 2.3's grammar), so `HTTP/1.10` stays invalid.
fn other_version(buf: &mut BytesMut) -> OtherVersion {
    if buf.starts_with(PREFACE_LINE) {
        return OtherVersion::Invalid;
    }
    // The request line, whole or as far as it came (httparse refuses the version as soon as
    // its bytes are there).
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(version) = line
        .len()
        .checked_sub(9)
        .and_then(|at| line[at..].strip_prefix(b" HTTP/"))
    else {
        return OtherVersion::Invalid;
    };
    // The minor digit ends the line.
    let minor = line.len() - 1;
    match *version {
        [b'1', b'.', b'2'..=b'9'] => {
            buf[minor] = b'1';
            OtherVersion::Rewritten
        }
        [b'2'..=b'9', b'.', b'0'..=b'9'] => OtherVersion::Unsupported,
        _ => OtherVersion::Invalid,
    }
}

/// Whether a request target is absolute-form without a path or a query (`http://host:port`).
/// `http` reads it as `http://host:port/`; for an `OPTIONS` the two differ (RFC 9112 3.2.4).
fn has_no_path(target: &[u8]) -> bool {
    target
        .windows(3)
        .position(|w| w == b"://")
        .is_some_and(|at| !target[at + 3..].iter().any(|b| b"/?#".contains(b)))
}

/// `uri` with the path `*`: an `OPTIONS` about the server as a whole, which the last proxy on
/// its way sends in asterisk-form (RFC 9112 3.2.4). An HTTP/2 `OPTIONS` with `:path *` comes
/// as the same URI, and rama's clients write it as `OPTIONS *`.
fn asterisk(uri: Uri) -> Option<Uri> {
    let mut parts = uri.into_parts();
    parts.path_and_query = Some(PathAndQuery::from_static("*"));
    Uri::from_parts(parts).ok()
}

/// How a response the server's own path writes is framed, and what it says about the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseFraming {
    /// How the body goes (`Empty`: none is written, and the head's own `Content-Length`, a
    /// `HEAD` or `304` answer's, stays).
    pub(crate) body: Framing,
    /// `Connection: close` is added (unless the response says it already).
    pub(crate) close: bool,
    /// `Connection: keep-alive` is added (an HTTP/1.0 client that asked for it).
    pub(crate) keep_alive: bool,
}

/// Appends a response head to `out`: `HTTP/1.1 status reason`, `headers` (but the framing
/// ones where this head sets its own), the framing, the connection's fate, and `date` when the
/// response has no `Date` (`None`: an informational head, which needs none).
pub(crate) fn encode_response_head(
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    date: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A bodiless answer keeps the length a `HEAD` or `304` names, but a `1xx` or `204` may
    // name none (RFC 9110 8.6).
    let drop_framing = framing.body != Framing::Empty || status_has_no_length(status);
    let mut says_close = false;
    for (name, value) in headers {
        if drop_framing && (name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING) {
            continue;
        }
        if name == header::CONNECTION {
            says_close |= value.as_bytes().eq_ignore_ascii_case(b"close");
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing.body {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    if framing.close && !says_close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if framing.keep_alive && !framing.close {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if let Some(date) = date
        && !headers.contains_key(header::DATE)
    {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a response with `status` must not carry `Content-Length` or `Transfer-Encoding`
/// (RFC 9110 8.6, RFC 9112 6.1): an origin that sends them on a `204` anyway would have an
/// HTTP/2 client reset the stream for a length its empty body does not have.
pub(crate) fn status_has_no_length(status: StatusCode) -> bool {
    status == StatusCode::NO_CONTENT || status.is_informational()
}

/// How the body of a response to a `method` request is delimited (RFC 9112 section 6.3).
pub(crate) fn response_framing(
    method: &Method,
    head: &ResponseHead,
) -> Result<Framing, ParseError> {
    let status = head.status;
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    match head.hop.transfer_coding {
        // `Content-Length` beside it is ignored (RFC 9112 6.3; the exchange removes it).
        headers::TransferCoding::Chunked => return Ok(Framing::Chunked),
        // The body's length would be known (chunks, or the close), its bytes not: they are in
        // a coding the client never asked for and rama does not undo, which forwarding
        // without the field would pass off as the content (nginx answers `502` to it too).
        headers::TransferCoding::Unsupported => return Err(ParseError::TransferCoding),
        headers::TransferCoding::Absent => {}
    }
    let mut length = None;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        // `Content-Length: 5, 5` and repeated equal fields are one length; any other is not.
        for item in value.as_bytes().split(|&b| b == b',') {
            let n = parse_digits(item.trim_ascii()).ok_or(ParseError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether a request asks `Expect: 100-continue` (RFC 9110 10.1.1; the only expectation
/// there is, matched without regard to case).
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether the connection can carry another exchange after this response, as far as its head
/// says.
pub(crate) fn keeps_alive(head: &ResponseHead) -> bool {
    match head.version {
        Version::HTTP_11 => !head.hop.close,
        // `Transfer-Encoding` in an HTTP/1.0 message is faulty framing, and the connection
        // closes after it whatever it says (RFC 9112 6.1): its next bytes may be anything.
        // `close` beside `keep-alive` wins (RFC 9112 9.3), as in HTTP/1.1.
        _ => {
            head.hop.keep_alive
                && !head.hop.close
                && head.hop.transfer_coding == headers::TransferCoding::Absent
        }
    }
}

/// Whether a message of `version` with `headers` leaves the connection open after it, as far
/// as it says: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`
/// and without `close` (which wins where both are said, RFC 9112 9.3). Read as hyper reads
/// them, so that the server's own path keeps a connection exactly when hyper would: a value
/// with a byte past ASCII says nothing.
pub(crate) fn connection_persists(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &[u8]| {
        headers.get_all(header::CONNECTION).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|t| t.trim().as_bytes().eq_ignore_ascii_case(token))
            })
        })
    };
    match version {
        Version::HTTP_11 => !has(b"close"),
        _ => has(b"keep-alive") && !has(b"close"),
    }
}

fn parse_length(value: &HeaderValue) -> Option<u64> {
    parse_digits(value.as_bytes())
}

/// A decimal number of at most 19 digits (no sign, no space).
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Decodes a chunked body (RFC 9112 section 7.1) as its bytes arrive; chunk extensions are
/// read past, the trailer fields a next hop may get are handed out.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// The fields the head's `Connection` named: this hop's, kept out of the trailers too.
    named: Option<Box<[HeaderName]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// In the trailer section, after the last chunk.
    Trailer,
    /// The body has ended.
    Done,
}

/// One step of [`ChunkedDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section's fields (those a next hop may get, at least one); the body has
    /// ended.
    Trailers(HeaderMap),
    /// `buf` holds no complete next step: read more.
    NeedMore,
    /// The body (trailer section included) has ended.
    Done,
}

impl ChunkedDecoder {
    /// A decoder for the body of a response whose hop-by-hop fields said `hop` (the fields its
    /// `Connection` named are taken along, to be left out of its trailers too).
    pub(crate) fn new(hop: &mut Hop) -> Self {
        Self {
            state: ChunkState::Size,
            named: hop.named.take(),
        }
    }

    /// Takes the next piece of the body off the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ParseError::Chunk("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let named = self.named.as_deref().unwrap_or_default();
                    let Some(trailers) = parse_trailers(buf, named)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.state = ChunkState::Done;
                    if !trailers.is_empty() {
                        return Ok(Decoded::Trailers(trailers));
                    }
                }
                ChunkState::Done => return Ok(Decoded::Done),
            }
        }
    }
}

/// Takes the trailer section (the field lines after the last chunk, and the empty line that
/// ends them) off the front of `buf`: `None` while incomplete, an error once it is larger
/// than a head may be ([`MAX_HEAD`], [`MAX_HEADERS`] fields: the limit that answers an
/// oversized head, as hyper bounds trailers by its head's). The fields no trailer may carry
/// ([`headers::allowed_in_trailers`]) and those `named` are left out. Values are copied: a
/// trailer section is rare, and small.
fn parse_trailers(
    buf: &mut BytesMut,
    named: &[HeaderName],
) -> Result<Option<HeaderMap>, ParseError> {
    // Most trailer sections are empty: no field slots to set up for those.
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Some(HeaderMap::new()));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((len, fields))) if len <= MAX_HEAD => (len, fields),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TrailersTooLarge),
        Err(error) => return Err(ParseError::Trailers(error)),
    };
    let mut trailers = HeaderMap::new();
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| ParseError::Trailers(httparse::Error::HeaderName))?;
        if !headers::allowed_in_trailers(&name) || named.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| ParseError::Trailers(httparse::Error::HeaderValue))?;
        // By reference: `append` with an owned name is the heads' (`Spans::header_map`), and a
        // second caller of that instance had it no longer inlined there (300 instructions per
        // proxied request).
        trailers.append(&name, value);
    }
    buf.advance(len);
    Ok(Some(trailers))
}

/// The line at the front of `buf` without its CRLF, taken off `buf`; `None` while incomplete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ParseError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_HEAD => Err(ParseError::Chunk("chunk line too long")),
        None => Ok(None),
    }
}

/// The size a chunk-size line gives: hex digits, then blanks and extensions (RFC 9112 7.1.1).
/// Only spaces and tabs may stand between the size and its extensions, and no CR or LF in
/// those: hyper refuses them, and a hop that ends the line at such a byte reads the rest of
/// the body differently (request smuggling's way in).
fn chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let blanks = line[digits..]
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let extensions = &line[digits + blanks..];
    if digits == 0
        || digits > 16
        || !matches!(extensions.first(), None | Some(b';'))
        || extensions.iter().any(|&b| b == b'\r' || b == b'\n')
    {
        return Err(ParseError::Chunk("invalid chunk size"));
    }
    line[..digits].iter().try_fold(0u64, |n, &d| {
        let d = (d as char)
            .to_digit(16)
            .ok_or(ParseError::Chunk("invalid chunk size"))?;
        Ok((n << 4) | u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &str) -> ResponseHead {
        let mut buf = BytesMut::from(bytes);
        parse_response_head(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn a_request_head_says_its_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("origin:8080"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        let framing = encode_request_head(
            &Method::GET,
            "/p?q",
            &headers,
            &SizeHint::with_exact(0),
            &mut out,
        );
        assert_eq!(framing, Framing::Empty);
        assert_eq!(
            out,
            b"GET /p?q HTTP/1.1\r\nhost: origin:8080\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );

        out.clear();
        let framing = encode_request_head(
            &Method::POST,
            "/",
            &HeaderMap::new(),
            &SizeHint::with_exact(0),
            &mut out,
        );
        assert_eq!(framing, Framing::Length(0));
        assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");

        // The body's exact size wins over a Content-Length header that says otherwise.
        out.clear();
        headers.clear();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        let framing = encode_request_head(
            &Method::PUT,
            "/",
            &headers,
            &SizeHint::with_exact(3),
            &mut out,
        );
        assert_eq!(framing, Framing::Length(3));
        assert_eq!(out, b"PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\n");

        // A stream: its Content-Length if it has one, else chunked.
        out.clear();
        let framing = encode_request_head(&Method::PUT, "/", &headers, &SizeHint::new(), &mut out);
        assert_eq!(framing, Framing::Length(9));
        out.clear();
        let framing = encode_request_head(
            &Method::PUT,
            "/",
            &HeaderMap::new(),
            &SizeHint::new(),
            &mut out,
        );
        assert_eq!(framing, Framing::Chunked);
        assert_eq!(out, b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");

        // Cookies split over lines (as HTTP/2 may) go on one; other repeated names stay apart.
        out.clear();
        headers.clear();
        for (name, value) in [
            ("cookie", "a=1"),
            ("x-a", "1"),
            ("cookie", "b=2; c=3"),
            ("x-a", "2"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        encode_request_head(
            &Method::GET,
            "/",
            &headers,
            &SizeHint::with_exact(0),
            &mut out,
        );
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\ncookie: a=1; b=2; c=3\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );

        out.clear();
        encode_chunk_start(255, &mut out);
        assert_eq!(out, b"ff\r\n");
    }

    #[test]
    fn a_response_head_is_parsed_in_pieces_and_leaves_the_body() {
        let whole =
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nok";
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let parsed = parse_response_head(&mut buf).unwrap();
            if i + 3 < whole.len() {
                assert!(parsed.is_none(), "complete at {i}");
                continue;
            }
            let head = parsed.unwrap();
            assert_eq!(head.status, StatusCode::OK);
            assert_eq!(head.version, Version::HTTP_11);
            assert_eq!(head.headers["server"], "nginx");
            let a: Vec<_> = head.headers.get_all("x-a").iter().collect();
            assert_eq!(a, ["1", "2"]);
            assert_eq!(
                response_framing(&Method::GET, &head).unwrap(),
                Framing::Length(2)
            );
            assert!(keeps_alive(&head));
            // The head went; the body bytes stay.
            assert!(buf.is_empty());
            buf.extend_from_slice(&whole[i + 1..]);
            break;
        }
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn bad_response_heads_are_errors() {
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx: a\x01b\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(parse_response_head(&mut buf).is_err(), "{bad:?}");
        }
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("x-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        let mut buf = BytesMut::from(many.as_str());
        assert!(matches!(
            parse_response_head(&mut buf),
            Err(ParseError::TooManyHeaders)
        ));
        // A head that never ends is refused once it outgrows the limit.
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\n");
        buf.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert!(matches!(
            parse_response_head(&mut buf),
            Err(ParseError::HeadTooLarge)
        ));
    }

    /// What `header_map`'s unchecked values rest on: for every byte, a head with it inside a
    /// value parses exactly when `HeaderValue` takes that value, and the value is kept as sent.
    #[test]
    fn bad_bytes_in_values_fail_the_parse() {
        for byte in 0..=u8::MAX {
            let value = [b'a', byte, b'b'];
            let valid = HeaderValue::from_bytes(&value).is_ok();
            let mut response = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nx: "[..]);
            response.extend_from_slice(&value);
            response.extend_from_slice(b"\r\n\r\n");
            let parsed = parse_response_head(&mut response);
            assert_eq!(parsed.is_ok(), valid, "response, byte {byte:#04x}");
            if let Ok(Some(head)) = parsed {
                assert_eq!(head.headers["x"].as_bytes(), value);
            }
            let mut request = BytesMut::from(&b"GET / HTTP/1.1\r\nx: "[..]);
            request.extend_from_slice(&value);
            request.extend_from_slice(b"\r\n\r\n");
            let parsed = parse_request(&mut request, MAX_HEAD);
            assert_eq!(parsed.is_ok(), valid, "request, byte {byte:#04x}");
            if let Ok(Parsed::Request(head)) = parsed {
                assert_eq!(head.headers["x"].as_bytes(), value);
            }
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let get = Method::GET;
        let framing = |m: &Method, h: &str| response_framing(m, &head(h));
        assert_eq!(
            framing(
                &Method::HEAD,
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            Framing::Empty
        );
        assert_eq!(
            framing(&get, "HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            Framing::Empty
        );
        assert_eq!(
            framing(
                &get,
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            Framing::Empty
        );
        assert_eq!(
            framing(&get, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap(),
            Framing::Empty
        );
        assert_eq!(
            framing(&get, "HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            Framing::Close
        );
        assert_eq!(
            framing(
                &get,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            Framing::Chunked
        );
        // Any other coding, in one field line or over several, is one rama cannot undo.
        for codings in [
            "gzip, chunked",
            "gzip\r\ntransfer-encoding: chunked",
            "chunked, gzip",
            "gzip",
            "chunked\r\ntransfer-encoding: chunked",
        ] {
            let h = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: {codings}\r\n\r\n");
            assert!(
                matches!(framing(&get, &h), Err(ParseError::TransferCoding)),
                "{codings}"
            );
        }
        assert_eq!(
            framing(
                &get,
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            Framing::Length(5)
        );
        for bad in ["5, 6", "-1", "five", "", "99999999999999999999"] {
            let h = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(framing(&get, &h).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hop_by_hop_fields_stay_out_of_a_response_and_still_frame_it() {
        let head = head(
            "HTTP/1.1 200 OK\r\nx-secret: 1\r\nConnection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\
             Proxy-Connection: close\r\nUpgrade: h2c\r\n\r\n",
        );
        let names: Vec<_> = head.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["server"]);
        assert_eq!(
            response_framing(&Method::GET, &head).unwrap(),
            Framing::Chunked
        );
        assert!(keeps_alive(&head));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(keeps_alive(&head("HTTP/1.1 200 OK\r\n\r\n")));
        assert!(!keeps_alive(&head(
            "HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\n\r\n"
        )));
        assert!(!keeps_alive(&head("HTTP/1.0 200 OK\r\n\r\n")));
        assert!(keeps_alive(&head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n"
        )));
        assert!(!keeps_alive(&head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n"
        )));
        // `close` wins over `keep-alive`, in one field line or two.
        assert!(!keeps_alive(&head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\nconnection: close\r\n\r\n"
        )));
        let mut fields = HeaderMap::new();
        fields.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(connection_persists(Version::HTTP_10, &fields));
        fields.append(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(!connection_persists(Version::HTTP_10, &fields));
        assert!(!connection_persists(Version::HTTP_11, &fields));
        // A value with a byte past ASCII says nothing (hyper's reading).
        let mut fields = HeaderMap::new();
        let odd = |token: &str| HeaderValue::from_bytes(format!("{token},\u{e9}").as_bytes());
        fields.insert(header::CONNECTION, odd("keep-alive").unwrap());
        assert!(!connection_persists(Version::HTTP_10, &fields));
        fields.insert(header::CONNECTION, odd("close").unwrap());
        assert!(connection_persists(Version::HTTP_11, &fields));
    }

    /// `Connection` naming `Content-Length` takes it out of nothing: the body is still framed
    /// by it (before, it was removed first, and the body read until a close that never came).
    #[test]
    fn a_length_connection_names_still_frames_the_body() {
        let head = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length, x-a\r\n\
             x-a: 1\r\n\r\n",
        );
        assert_eq!(
            response_framing(&Method::GET, &head).unwrap(),
            Framing::Length(2)
        );
        assert!(!head.headers.contains_key("x-a"));
    }

    /// The request `parsed` took.
    fn taken(parsed: Result<Parsed, NotOwn>) -> RequestHead {
        match parsed {
            Ok(Parsed::Request(head)) => head,
            _ => panic!("no whole request"),
        }
    }

    #[test]
    fn a_request_is_taken_whole_with_its_body_and_the_next_one_stays() {
        let whole = b"POST /a?b HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhelloGET / HTTP/1.0\r\n\r\n";
        let first = whole.len() - b"GET / HTTP/1.0\r\n\r\n".len();
        let head_len = first - b"hello".len();
        let mut buf = BytesMut::new();
        for (i, &byte) in whole[..first - 1].iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let parsed = parse_request(&mut buf, MAX_HEAD).unwrap();
            match parsed {
                Parsed::Head => assert!(i + 1 < head_len, "byte {i}: the head is whole"),
                Parsed::Body => assert!(i + 1 >= head_len, "byte {i}: the head is not whole"),
                Parsed::Request(_) => panic!("byte {i}: a request before its body came"),
            }
        }
        buf.extend_from_slice(&whole[first - 1..]);
        let head = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(
            (head.method, head.uri.to_string()),
            (Method::POST, "/a?b".to_owned())
        );
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers["host"], "x");
        assert_eq!(&head.body[..], b"hello");
        // Room for what a proxy adds, without growing the map.
        assert!(head.headers.capacity() >= head.headers.len() + ROOM_IN_REQUEST);
        let next = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!((next.method, next.version), (Method::GET, Version::HTTP_10));
        assert!(next.body.is_empty() && buf.is_empty());
    }

    /// A chunked request whose body is all there with its head is taken whole, its chunks
    /// joined and its trailer fields kept; one not all there is left to hyper untouched.
    #[test]
    fn a_chunked_request_all_there_is_taken_whole() {
        let whole = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                     Connection: keep-alive, x-hop\r\n\r\n\
                     5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\nx-hop: 1\r\n\
                     content-length: 11\r\n\r\n";
        let next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        let head_len = whole.find("\r\n\r\n").unwrap() + 4;
        for end in 1..whole.len() {
            let mut buf = BytesMut::from(&whole.as_bytes()[..end]);
            match parse_request(&mut buf, MAX_HEAD) {
                Ok(Parsed::Head) => assert!(end < head_len, "{end}: the head is whole"),
                Err(NotOwn::Leave) => {
                    assert!(end >= head_len, "{end}: the head is not whole");
                    assert_eq!(&buf[..], &whole.as_bytes()[..end], "{end}: buffer touched");
                }
                _ => panic!("{end}: taken before its body was all there"),
            }
        }
        let mut buf = BytesMut::from(format!("{whole}{next}").as_str());
        let head = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!((head.method, head.uri.path()), (Method::POST, "/up"));
        assert_eq!(&head.body[..], b"hello world");
        assert_eq!(head.headers[header::TRANSFER_ENCODING], "chunked");
        // Without the fields `Connection` named, and those no trailer may carry.
        let trailers = head.trailers.as_deref().unwrap();
        assert_eq!(
            (trailers.len(), trailers["x-sum"].as_bytes()),
            (1, &b"1"[..])
        );
        assert_eq!(&buf[..], next.as_bytes());
        let next = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(next.uri.path(), "/next");
        // One chunk, no trailers: the chunk as it came.
        let mut buf = BytesMut::from(
            "PUT / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let head = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(
            (&head.body[..], head.trailers.is_none()),
            (&b"abc"[..], true)
        );
        assert!(buf.is_empty());
    }

    /// A bare LF ends a trailer line, as nginx and HAProxy read it (RFC 9112 2.2), so the
    /// request behind is the next request: hyper reads on to the next CRLF and takes the
    /// request behind for trailer fields.
    #[test]
    fn a_bare_lf_ends_a_trailer_line() {
        let mut buf = BytesMut::from(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nhi\r\n0\r\nx-a: 1\n\r\nGET /behind HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let head = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(&head.body[..], b"hi");
        assert_eq!(head.trailers.as_deref().unwrap()["x-a"], "1");
        let behind = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(behind.uri.path(), "/behind");
        assert!(buf.is_empty());
    }

    /// A chunked body all there that breaks the framing is left to hyper, whose body fails at
    /// the error (the proxies answer `400` naming it).
    #[test]
    fn a_malformed_chunked_body_is_left_to_hyper() {
        for body in [
            "zz\r\nhello\r\n0\r\n\r\n",
            "5\r\nhelloX\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
            "-5\r\nhello\r\n0\r\n\r\n",
            "11111111111111111\r\n",
        ] {
            let whole = format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let mut buf = BytesMut::from(whole.as_str());
            assert_eq!(
                parse_request(&mut buf, MAX_HEAD).err(),
                Some(NotOwn::Leave),
                "{body:?}"
            );
            assert_eq!(&buf[..], whole.as_bytes(), "{body:?}");
        }
    }

    /// `OPTIONS http://host:port` asks about the server: its URI has the path `*`; with a path
    /// or a query, and for any other method, the target is what `http` reads.
    #[test]
    fn an_options_without_a_path_is_about_the_server() {
        for (request, uri) in [
            ("OPTIONS http://a.test:8080 HTTP/1.1", "http://a.test:8080*"),
            (
                "OPTIONS http://a.test:8080/ HTTP/1.1",
                "http://a.test:8080/",
            ),
            (
                "OPTIONS http://a.test:8080?q HTTP/1.1",
                "http://a.test:8080/?q",
            ),
            ("OPTIONS * HTTP/1.1", "*"),
            ("GET http://a.test:8080 HTTP/1.1", "http://a.test:8080/"),
        ] {
            let mut buf = BytesMut::from(format!("{request}\r\nHost: a.test\r\n\r\n").as_str());
            let head = taken(parse_request(&mut buf, MAX_HEAD));
            assert_eq!(head.uri.to_string(), uri, "{request}");
        }
    }

    /// `HTTP/1.x` above 1.1 is served as HTTP/1.1 (RFC 9112 2.3), whatever the pieces it comes
    /// in, and left to hyper as HTTP/1.1 when it is not the own path's; a major above 1 is
    /// `505` (nginx's answer), but HTTP/2's preface; a version off the grammar is hyper's `400`.
    #[test]
    fn a_higher_minor_version_is_http_1_1_and_a_higher_major_505() {
        for version in ["HTTP/1.2", "HTTP/1.9"] {
            let whole = format!("GET /a {version}\r\nHost: a\r\n\r\n");
            let mut buf = BytesMut::new();
            for (i, &byte) in whole.as_bytes().iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                match parse_request(&mut buf, MAX_HEAD) {
                    Ok(Parsed::Head) => assert!(i + 1 < whole.len(), "{version}: byte {i}"),
                    Ok(Parsed::Request(head)) => {
                        assert_eq!(i + 1, whole.len(), "{version}");
                        assert_eq!(head.version, Version::HTTP_11, "{version}");
                        assert_eq!(head.uri, "/a");
                    }
                    _ => panic!("{version}: byte {i}"),
                }
            }
            assert!(buf.is_empty());
        }
        let mut buf =
            BytesMut::from("POST / HTTP/1.5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        assert_eq!(parse_request(&mut buf, MAX_HEAD).err(), Some(NotOwn::Leave));
        assert!(buf.starts_with(b"POST / HTTP/1.1\r\n"));
        for unsupported in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/3.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.1",
        ] {
            let mut buf = BytesMut::from(unsupported);
            assert_eq!(
                parse_request(&mut buf, MAX_HEAD).err(),
                Some(NotOwn::VersionNotSupported),
                "{unsupported:?}"
            );
        }
        for invalid in [
            "GET / HTTP/1.10\r\n\r\n",
            "GET / HTTP/10.0\r\n\r\n",
            "GET / HTTP/1.x\r\n\r\n",
            "GET / HTTP/0.9\r\n\r\n",
            "GET / HTTP/1.2 \r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(invalid);
            assert_eq!(
                parse_request(&mut buf, MAX_HEAD).err(),
                Some(NotOwn::Leave),
                "{invalid:?}"
            );
            assert_eq!(&buf[..], invalid.as_bytes());
        }
    }

    #[test]
    fn requests_the_own_path_does_not_serve_are_left_untouched() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(2000));
        let large_body = format!("PUT / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1);
        let large_chunk = format!(
            "PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            MAX_BODY + 1,
            "a".repeat(MAX_BODY + 1)
        );
        for leave in [
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
            // Chunked, not all there (no empty line after the last chunk): hyper streams it.
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &large_chunk,
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
            "POST / HTTP/1.1\r\ncontent-length: five\r\n\r\n",
            &large_body,
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GARBAGE\r\n\r\n",
            &format!("GET / HTTP/1.1\r\n{many}\r\n"),
        ] {
            let mut buf = BytesMut::from(leave);
            assert_eq!(
                parse_request(&mut buf, MAX_HEAD).err(),
                Some(NotOwn::Leave),
                "{leave:?}"
            );
            assert_eq!(&buf[..], leave.as_bytes(), "{leave:?}");
        }
        // Larger than the server's limit, whole or not: hyper answers 431.
        let mut buf = BytesMut::from(big.as_str());
        assert_eq!(parse_request(&mut buf, 1024).err(), Some(NotOwn::Leave));
        let mut buf = BytesMut::from(&big.as_bytes()[..1500]);
        assert_eq!(parse_request(&mut buf, 1024).err(), Some(NotOwn::Leave));
        // A request line that alone is over the limit: 414, whatever the rest would be.
        let long = format!("GET /{} HTTP/1.1", "a".repeat(1100));
        let mut buf = BytesMut::from(long.as_str());
        assert_eq!(
            parse_request(&mut buf, 1024).err(),
            Some(NotOwn::TargetTooLong)
        );
        let mut buf = BytesMut::from(format!("{long}\r\nHost: a\r\n\r\n").as_str());
        assert_eq!(
            parse_request(&mut buf, 1024).err(),
            Some(NotOwn::TargetTooLong)
        );
        let mut buf = BytesMut::from(&long.as_bytes()[..1000]);
        assert!(matches!(parse_request(&mut buf, 1024), Ok(Parsed::Head)));
        // Equal lengths are one length, in one field (an HTTP/2 upstream refuses two).
        let mut buf =
            BytesMut::from("PUT / HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok");
        let head = taken(parse_request(&mut buf, MAX_HEAD));
        assert_eq!(&head.body[..], b"ok");
        let lengths: Vec<_> = head
            .headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .collect();
        assert_eq!(lengths, ["2"]);
    }

    #[test]
    fn a_target_http_does_not_take_is_a_400() {
        let mut buf = BytesMut::from("GET http://[::1/ HTTP/1.1\r\n\r\n");
        assert_eq!(
            parse_request(&mut buf, MAX_HEAD).err(),
            Some(NotOwn::Bad("invalid request target"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn a_response_head_carries_its_framing_its_fate_and_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("rama"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let date = b"Thu, 26 Nov 2026 23:00:00 GMT";
        let encode = |status, headers: &HeaderMap, body, close, keep_alive| {
            let mut out = Vec::new();
            let framing = ResponseFraming {
                body,
                close,
                keep_alive,
            };
            encode_response_head(status, headers, framing, Some(date), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            encode(StatusCode::OK, &headers, Framing::Length(2), false, false),
            "HTTP/1.1 200 OK\r\nserver: rama\r\ncontent-length: 2\r\ndate: Thu, 26 Nov 2026 23:00:00 GMT\r\n\r\n"
        );
        // No body written (a HEAD answer): the head's own length stays.
        assert_eq!(
            encode(StatusCode::OK, &headers, Framing::Empty, true, false),
            "HTTP/1.1 200 OK\r\nserver: rama\r\ncontent-length: 99\r\nconnection: close\r\ndate: Thu, 26 Nov 2026 23:00:00 GMT\r\n\r\n"
        );
        headers.clear();
        headers.insert(header::DATE, HeaderValue::from_static("earlier"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert_eq!(
            encode(
                StatusCode::BAD_GATEWAY,
                &headers,
                Framing::Chunked,
                true,
                false
            ),
            "HTTP/1.1 502 Bad Gateway\r\ndate: earlier\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        headers.clear();
        assert_eq!(
            encode(
                StatusCode::from_u16(599).unwrap(),
                &headers,
                Framing::Length(0),
                false,
                true
            ),
            "HTTP/1.1 599 \r\ncontent-length: 0\r\nconnection: keep-alive\r\ndate: Thu, 26 Nov 2026 23:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn a_recycled_map_comes_back_empty_and_a_large_one_is_not_kept() {
        // On a thread of its own: the spare list is per thread.
        std::thread::spawn(|| {
            let mut map = HeaderMap::with_capacity(8);
            map.insert(header::HOST, HeaderValue::from_static("a"));
            let capacity = map.capacity();
            recycle_map(map);
            let again = spare_map(4);
            assert!(again.is_empty());
            assert_eq!(again.capacity(), capacity);
            recycle_map(HeaderMap::with_capacity(SPARE_MAP_MAX * 2));
            assert!(SPARE.with(|spare| spare.borrow().is_empty()));
            // A head parsed with a spare map has all its fields, and nothing from before.
            let mut map = HeaderMap::with_capacity(8);
            map.insert("x-old", HeaderValue::from_static("1"));
            recycle_map(map);
            let head = head("HTTP/1.1 200 OK\r\nserver: a\r\n\r\n");
            let names: Vec<_> = head.headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(names, ["server"]);
        })
        .join()
        .unwrap();
    }

    /// Heads whose names are taken from the ones seen before them parse as they would alone:
    /// the same names at the same places, a name changed at one place (to one of the same
    /// length, to the same in another case), a hop-by-hop field where a plain one was and the
    /// other way round, and heads longer than what is kept.
    #[test]
    fn names_seen_before_make_the_same_maps() {
        /// The fields of the response head `text`, as text, and whether it keeps alive.
        fn fields(text: &str) -> (Vec<String>, bool) {
            let head = head(text);
            let fields = head.headers.iter();
            let fields = fields.map(|(name, value)| format!("{name}={}", value.to_str().unwrap()));
            (fields.collect(), keeps_alive(&head))
        }
        // On a thread of its own: what was seen is per thread.
        std::thread::spawn(|| {
            let first = "HTTP/1.1 200 OK\r\nServer: a\r\nX-Id: 1\r\nContent-Length: 0\r\n\
                         Connection: close\r\n\r\n";
            let second = first.replace("a\r\nX-Id: 1", "b\r\nX-Id: 2");
            let expected = |server, id| {
                let fields = [format!("server={server}"), format!("x-id={id}")];
                ([&fields[..], &["content-length=0".into()]].concat(), false)
            };
            assert_eq!(fields(first), expected("a", "1"));
            assert_eq!(fields(&second), expected("b", "2"));
            let other = "HTTP/1.1 200 OK\r\nSERVER: c\r\nX-Ab: 3\r\n\
                         Transfer-Encoding: chunked\r\nx-last: 4\r\n\r\n";
            let (other_fields, keeps) = fields(other);
            assert_eq!(other_fields, ["server=c", "x-ab=3", "x-last=4"]);
            assert!(keeps);
            assert_eq!(
                response_framing(&Method::GET, &head(other)).unwrap(),
                Framing::Chunked
            );
            assert_eq!(fields(&second), expected("b", "2"));
            let long = "x-".repeat(SEEN_NAME_MAX);
            let many: String = (0..SEEN_FIELDS + 4)
                .map(|i| format!("x-{i}: {i}\r\n"))
                .collect();
            let text = format!("HTTP/1.1 200 OK\r\n{long}: l\r\n{many}\r\n");
            for _ in 0..2 {
                let many = head(&text);
                assert_eq!(many.headers.len(), SEEN_FIELDS + 5);
                assert_eq!(many.headers[long.as_str()], "l");
                for i in 0..SEEN_FIELDS + 4 {
                    let name = format!("x-{i}");
                    assert_eq!(many.headers[name.as_str()], i.to_string().as_str());
                }
            }
            let seen = RESPONSE_NAMES.take();
            assert_eq!(seen.seen.len(), SEEN_FIELDS);
            assert_eq!(seen.seen[1].name, "x-0");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_recycled_extension_set_comes_back_empty() {
        std::thread::spawn(|| {
            let mut extensions = Extensions::new();
            extensions.insert(7u8);
            recycle_extensions(extensions);
            let mut again = spare_extensions();
            assert!(again.is_empty());
            assert_eq!(again.insert(8u8), None);
            // An empty set (no allocation to save) and a large one are not kept.
            recycle_extensions(Extensions::new());
            // One value of each of 9 types: more than a set kept may have held.
            let mut large = Extensions::new();
            large.insert(1u16);
            large.insert(1u32);
            large.insert(1u64);
            large.insert(1u128);
            large.insert(1i8);
            large.insert(1i16);
            large.insert(1i32);
            large.insert(1i64);
            large.insert(1i128);
            assert!(large.len() > SPARE_EXTENSIONS_MAX);
            recycle_extensions(large);
            assert!(SPARE_EXTENSIONS.with(|spare| spare.borrow().is_empty()));
        })
        .join()
        .unwrap();
    }

    /// What [`decode_all`] got: the body, its trailers, and what was left behind it.
    struct Whole {
        body: Vec<u8>,
        trailers: Option<HeaderMap>,
        rest: Vec<u8>,
    }

    /// Decodes `input` fed in pieces of `step` bytes, as the body of a response with `head`.
    fn decode_with(input: &[u8], step: usize, head: &str) -> Result<Whole, ParseError> {
        let mut decoder = ChunkedDecoder::new(&mut self::head(head).hop);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut pieces = input.chunks(step);
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(fields) => {
                    assert!(trailers.replace(fields).is_none(), "trailers twice");
                }
                Decoded::NeedMore => match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return Err(ParseError::Chunk("ended early")),
                },
                Decoded::Done => {
                    // Done stays done.
                    assert_eq!(decoder.decode(&mut buf)?, Decoded::Done);
                    return Ok(Whole {
                        body,
                        trailers,
                        rest: buf.to_vec(),
                    });
                }
            }
        }
    }

    /// [`decode_with`] for a head without `Connection`: the body and what was left behind it.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), ParseError> {
        let whole = decode_with(input, step, "HTTP/1.1 200 OK\r\n\r\n")?;
        Ok((whole.body, whole.rest))
    }

    /// The trailer fields a next hop may get are handed out after the body, whatever the
    /// pieces; framing, routing and authentication fields, the hop-by-hop ones and those the
    /// head's `Connection` named are left out (RFC 9110 6.5.1, 7.6.1).
    #[test]
    fn trailers_come_after_the_body_without_the_forbidden_fields() {
        let input = b"5\r\nhello\r\n0\r\ngrpc-status: 0\r\nContent-Length: 99\r\n\
                      Host: evil.test\r\nTransfer-Encoding: chunked\r\nConnection: x-a\r\n\
                      x-hop: 1\r\nAuthorization: Basic eA==\r\nTrailer: x\r\n\
                      Set-Cookie: a=1\r\nx-checksum: abc\r\nx-checksum: def\r\n\r\nNEXT";
        let head = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\n\r\n";
        for step in 1..input.len() {
            let whole = decode_with(input, step, head).unwrap();
            assert_eq!(whole.body, b"hello", "step {step}");
            let trailers = whole.trailers.expect("trailers");
            let fields: Vec<_> = trailers
                .iter()
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
                .collect();
            assert_eq!(
                fields,
                ["grpc-status: 0", "x-checksum: abc", "x-checksum: def"],
                "step {step}"
            );
            assert!(b"NEXT".starts_with(&whole.rest), "step {step}");
        }
        // A section with only forbidden fields, and an empty one, give no trailers at all.
        for input in [&b"0\r\ncontent-length: 1\r\n\r\n"[..], b"0\r\n\r\n"] {
            let whole = decode_with(input, 64, "HTTP/1.1 200 OK\r\n\r\n").unwrap();
            assert!(whole.trailers.is_none(), "{input:?}");
        }
    }

    /// A trailer section is bounded as a head is: more than [`MAX_HEAD`] bytes (whole or not)
    /// or [`MAX_HEADERS`] fields is an error, as is a malformed field.
    #[test]
    fn oversized_or_malformed_trailers_are_errors() {
        let mut long = b"0\r\nx-big: ".to_vec();
        long.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        for step in [1000, long.len()] {
            assert!(matches!(
                decode_all(&long, step),
                Err(ParseError::TrailersTooLarge)
            ));
        }
        let mut many = b"0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            decode_all(&many, many.len()),
            Err(ParseError::TrailersTooLarge)
        ));
        // Just under the limit is fine.
        let mut fits = b"0\r\nx-big: ".to_vec();
        fits.extend_from_slice(&vec![b'a'; MAX_HEAD - 20]);
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode_all(&fits, 4096).unwrap().0, b"");
        for bad in [&b"0\r\nbad name: 1\r\n\r\n"[..], b"0\r\nx: a\x01b\r\n\r\n"] {
            assert!(
                matches!(decode_all(bad, 64), Err(ParseError::Trailers(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_last_chunk_carries_the_trailers_a_next_hop_may_get() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        trailers.insert(header::HOST, HeaderValue::from_static("evil.test"));
        trailers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        trailers.append("x-sum", HeaderValue::from_static("1"));
        trailers.append("x-sum", HeaderValue::from_static("2"));
        let mut out = b"ab".to_vec();
        encode_last_chunk(Some(&trailers), &mut out);
        assert_eq!(
            out,
            b"ab0\r\ngrpc-status: 0\r\nx-sum: 1\r\nx-sum: 2\r\n\r\n"
        );
        out.clear();
        encode_last_chunk(Some(&HeaderMap::new()), &mut out);
        assert_eq!(out, LAST_CHUNK);
        out.clear();
        encode_last_chunk(None, &mut out);
        assert_eq!(out, LAST_CHUNK);
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_pieces() {
        let input = b"5;ext=1\r\nhello\r\nA \r\n, world!!!\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (body, rest) = decode_all(input, step).unwrap();
            assert_eq!(body, b"hello, world!!!", "step {step}");
            // What follows the body stays for the next response.
            assert!(b"NEXT".starts_with(&rest), "step {step}");
        }
    }

    #[test]
    fn bad_chunked_bodies_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXY0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            // A CR, LF or another control byte in a chunk-size line (hyper refuses each).
            b"2\r\r\nde\r\n0\r\n\r\n",
            b"2\x0c\r\nde\r\n0\r\n\r\n",
            b"2;a\rb\r\nde\r\n0\r\n\r\n",
            b"2;a\nb\r\nde\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(decode_all(bad, 64), Err(ParseError::Chunk(m)) if m != "ended early"),
                "{bad:?}"
            );
        }
        let mut long = vec![b'1'; MAX_HEAD + 1];
        long.insert(0, b'0');
        assert!(decode_all(&long, MAX_HEAD + 2).is_err());
    }
}
