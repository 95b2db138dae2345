//! `http::Server`'s HTTP/2 side under hostile input, in raw frames over 127.0.0.1 (no h2
//! client would send them): malformed streams are reset and an oversized header list gets
//! `431` while the connection serves on; frames that break the protocol, a rapid-reset
//! flood, a `CONTINUATION` flood and an HPACK bomb get `GOAWAY` and a close, and a flood of
//! `PRIORITY` frames a close, touching no other connection; a stream whose client takes
//! nothing of its response is reset after a period; a connection without a stream (half a header block, then nothing) is
//! sent `GOAWAY` after the header-read timeout and dropped one period later, while a stream
//! that runs longer than that period is served to its end; extended `CONNECT` (RFC 8441) is
//! offered, and one for a protocol other than WebSocket is reset; a client that resets its
//! streams once the service has them is sent `GOAWAY`, then closed, while one that cancels a
//! third of its requests is served on; an upload the service does not read leaves room in the
//! connection's window for its others.

use http_body_util::{BodyExt, Empty};
use rama::{BoxError, http as rama_http, tcp};
use rama_e2e::{PATIENCE, h2_handshake, origin_thread, until};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tower::Layer;

/// The servers' header-read timeout, the period of the HTTP/2 idle check.
const PERIOD: Duration = Duration::from_secs(1);

/// What a client opens an HTTP/2 connection with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113 6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

// Error codes (RFC 9113 7).
const NO_ERROR: u32 = 0;
const PROTOCOL_ERROR: u32 = 1;
const ENHANCE_YOUR_CALM: u32 = 11;

/// A server whose service counts its calls: `/slow` answers after three idle-check periods,
/// `/lengths` with the request's `content-length` values (`|` between them), anything else
/// at once, with `ok`. With `idle_check`, its header-read timeout is
/// [`PERIOD`]; else the default, so that a connection the test leaves quiet for a while on a
/// busy machine is not closed under it.
fn server(idle_check: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let addr = origin_thread(move |listener| async move {
        let answer = tower::service_fn(move |request: http::Request<rama_http::Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match request.uri().path() {
                    "/slow" => tokio::time::sleep(PERIOD * 3).await,
                    "/lengths" => {
                        let lengths = request.headers().get_all("content-length").iter();
                        let lengths: Vec<_> = lengths.map(|v| v.to_str().unwrap()).collect();
                        let lengths = lengths.join("|");
                        request.into_body().collect().await?;
                        return Ok(http::Response::new(rama_http::Body::from(lengths)));
                    }
                    _ => {}
                }
                Ok::<_, BoxError>(http::Response::new(rama_http::Body::from("ok")))
            }
        });
        let mut server = rama_http::Server::new();
        if idle_check {
            server = server.header_read_timeout(PERIOD);
        }
        let stack = server.layer(answer);
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    });
    (addr, calls)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut bytes = vec![len[1], len[2], len[3], kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// An HPACK integer with an `n`-bit prefix, `first` holding the bits above it (RFC 7541 5.1).
fn integer(mut value: usize, n: u32, first: u8) -> Vec<u8> {
    let max = (1 << n) - 1;
    if value < max {
        return vec![first | value as u8];
    }
    let mut bytes = vec![first | max as u8];
    value -= max;
    while value >= 128 {
        bytes.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    bytes.push(value as u8);
    bytes
}

/// A literal field, never indexed by the server, with a name from the static table.
fn literal(index: u8, value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![index];
    bytes.extend(integer(value.len(), 7, 0));
    bytes.extend_from_slice(value);
    bytes
}

/// The header block of `GET path` (`:method GET` and `:scheme http` are static-table
/// entries 2 and 6; `:path` and `:authority` literals named by entries 4 and 1).
fn get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    block.extend(literal(4, path.as_bytes()));
    block.extend(literal(1, b"localhost"));
    block
}

/// A connection that has sent the preface and its (empty) settings.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    stream
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// A `GOAWAY`'s or `RST_STREAM`'s error code.
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// The next frame, `None` at EOF (or a reset: the server closed, either way).
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
    let mut head = [0u8; 9];
    timeout(PATIENCE, stream.read_exact(&mut head))
        .await
        .expect("a frame or EOF in time")
        .ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
        payload,
    })
}

/// Reads until the server closes: the `GOAWAY`'s error code, if one came.
async fn goaway_then_eof(stream: &mut (impl AsyncRead + Unpin)) -> Option<u32> {
    let mut code = None;
    while let Some(frame) = read_frame(stream).await {
        if frame.kind == GOAWAY {
            code = Some(frame.code());
        }
    }
    code
}

/// How stream `id` ended: its status and body, or the code of its `RST_STREAM`; with no
/// `GOAWAY` before.
async fn outcome(stream: &mut TcpStream, id: u32) -> Result<(u16, Vec<u8>), u32> {
    let mut status = None;
    let mut body = Vec::new();
    loop {
        let frame = read_frame(stream).await.expect("the stream's end, not EOF");
        assert_ne!(frame.kind, GOAWAY, "GOAWAY before stream {id} ended");
        if frame.stream != id {
            continue;
        }
        match frame.kind {
            RST_STREAM => return Err(frame.code()),
            HEADERS => status = Some(status_of(&frame.payload)),
            DATA => body.extend_from_slice(&frame.payload),
            _ => {}
        }
        if frame.flags & END_STREAM != 0 {
            return Ok((status.expect("HEADERS before the end"), body));
        }
    }
}

/// The `:status` of a response header block, hyper's first field: a static-table entry
/// (8-14) or a literal named by entry 8, plain or Huffman-coded.
fn status_of(block: &[u8]) -> u16 {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    if block[0] & 0x80 != 0 {
        return STATIC[usize::from(block[0] & 0x7f) - 8];
    }
    let name = if block[0] & 0x40 != 0 {
        block[0] & 0x3f
    } else {
        block[0] & 0x0f
    };
    assert_eq!(name, 8, "the first field is :status");
    let len = usize::from(block[1] & 0x7f);
    let value = &block[2..2 + len];
    let digits = if block[1] & 0x80 != 0 {
        huffman_digits(value)
    } else {
        String::from_utf8(value.to_vec()).unwrap()
    };
    digits.parse().unwrap()
}

/// Decodes Huffman-coded digits (RFC 7541 Appendix B: `0`-`2` are the 5-bit codes 0-2, `3`-`9`
/// the 6-bit codes 25-31), as a status is.
fn huffman_digits(bytes: &[u8]) -> String {
    let mut digits = String::new();
    let (mut code, mut len) = (0u8, 0);
    for bit in bytes
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
    {
        code = code << 1 | bit;
        len += 1;
        match (len, code) {
            (5, 0..=2) => digits.push(char::from(b'0' + code)),
            (6, 25..=31) => digits.push(char::from(b'3' + code - 25)),
            _ if len < 6 => continue,
            // The padding: the most significant bits of the end-of-string code, all ones.
            _ => break,
        }
        (code, len) = (0, 0);
    }
    digits
}

#[tokio::test]
async fn the_status_decoder_reads_what_hpack_encodes() {
    // hyper's `431`: literal with incremental indexing, name 8, Huffman "431".
    assert_eq!(status_of(&[0x48, 0x83, 0x69, 0x90, 0xff]), 431);
    assert_eq!(status_of(&[0x88]), 200);
    assert_eq!(status_of(&[0x08, 0x03, b'5', b'0', b'2']), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_reset_and_the_connection_serves_on() {
    let (addr, calls) = server(false);
    let mut stream = open(addr).await;
    // Stream 1 has an authority and no `:path`; stream 3 a header list over the 64 KiB limit,
    // in a HEADERS frame and CONTINUATIONs; stream 5 is a plain GET.
    let mut no_path = vec![0x82, 0x86];
    no_path.extend(literal(1, b"localhost"));
    let mut bytes = frame(HEADERS, END_STREAM | END_HEADERS, 1, &no_path);
    let mut big = get("/big");
    big.extend([0x00, 5]);
    big.extend_from_slice(b"x-big");
    big.extend(integer(70_000, 7, 0));
    big.extend(std::iter::repeat_n(b'a', 70_000));
    let chunks: Vec<&[u8]> = big.chunks(16_384).collect();
    bytes.extend(frame(HEADERS, END_STREAM, 3, chunks[0]));
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let last = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(CONTINUATION, last, 3, chunk));
    }
    bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 5, &get("/")));
    stream.write_all(&bytes).await.unwrap();

    assert_eq!(outcome(&mut stream, 1).await, Err(PROTOCOL_ERROR));
    assert_eq!(outcome(&mut stream, 3).await, Ok((431, Vec::new())));
    assert_eq!(outcome(&mut stream, 5).await, Ok((200, b"ok".to_vec())));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only stream 5 reached the service"
    );
}

/// What `h2` lets through and RFC 9113 does not: userinfo in `:authority` (stream 1), a
/// `:scheme` other than `http` or `https` (stream 3) (8.3.1), and a field value that starts
/// or ends with a space or a tab (streams 5 and 7, 8.2.1) are reset with `PROTOCOL_ERROR`
/// before the service sees them (they were served), and the connection serves on (stream 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_other_schemes_and_padded_values_are_reset_before_the_service() {
    let (addr, calls) = server(false);
    let mut stream = open(addr).await;
    let mut userinfo = vec![0x82, 0x86];
    userinfo.extend(literal(4, b"/"));
    userinfo.extend(literal(1, b"user@localhost"));
    let mut bytes = frame(HEADERS, END_STREAM | END_HEADERS, 1, &userinfo);
    let mut ftp = vec![0x82];
    ftp.extend(literal(6, b"ftp"));
    ftp.extend(literal(4, b"/"));
    ftp.extend(literal(1, b"localhost"));
    bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &ftp));
    for (id, value) in [(5, &b" padded"[..]), (7, &b"padded\t"[..])] {
        // `x-padded: <value>`, a literal with a new name.
        let mut padded = get("/");
        padded.extend([0x00, 8]);
        padded.extend_from_slice(b"x-padded");
        padded.extend(integer(value.len(), 7, 0));
        padded.extend_from_slice(value);
        bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &padded));
    }
    bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 9, &get("/")));
    stream.write_all(&bytes).await.unwrap();

    for id in [1, 3, 5, 7] {
        assert_eq!(outcome(&mut stream, id).await, Err(PROTOCOL_ERROR), "{id}");
    }
    assert_eq!(outcome(&mut stream, 9).await, Ok((200, b"ok".to_vec())));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only stream 9 reached the service"
    );
}

/// Equal repeated `content-length` fields, which `h2` takes as one length, reach the service
/// as one field: forwarded as they came, an HTTP/2 upstream (nginx) refused the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_repeated_lengths_reach_the_service_as_one() {
    let (addr, _) = server(false);
    let mut stream = open(addr).await;
    // `:method POST` is static-table entry 3; `content-length` a literal named by entry 28.
    let mut block = vec![0x83, 0x86];
    block.extend(literal(4, b"/lengths"));
    block.extend(literal(1, b"localhost"));
    for _ in 0..2 {
        block.extend(integer(28, 4, 0));
        block.extend(integer(1, 7, 0));
        block.push(b'2');
    }
    let mut bytes = frame(HEADERS, END_HEADERS, 1, &block);
    bytes.extend(frame(DATA, END_STREAM, 1, b"ok"));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(outcome(&mut stream, 1).await, Ok((200, b"2".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_and_floods_get_goaway_and_touch_no_other_connection() {
    let (addr, calls) = server(false);
    let mut bystander = open(addr).await;

    // HEADERS on stream 0, which is the connection's.
    let mut zero = open(addr).await;
    zero.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 0, &get("/")))
        .await
        .unwrap();
    assert_eq!(goaway_then_eof(&mut zero).await, Some(PROTOCOL_ERROR));

    // Rapid reset: 5,000 streams opened and reset at once.
    let mut reset = open(addr).await;
    let mut flood = Vec::new();
    for id in (1..10_000).step_by(2) {
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get("/")));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    // The server may close before it has read it all.
    let _ = reset.write_all(&flood).await;
    assert_eq!(goaway_then_eof(&mut reset).await, Some(ENHANCE_YOUR_CALM));
    let served = calls.load(Ordering::SeqCst);
    assert!(
        served < 100,
        "{served} of 5000 reset streams reached the service"
    );

    // A header block that never ends: empty CONTINUATIONs, up to 10,000 of them.
    let mut endless = open(addr).await;
    let mut flood = frame(HEADERS, END_STREAM, 1, &get("/"));
    for _ in 0..10_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let _ = endless.write_all(&flood).await;
    assert_eq!(goaway_then_eof(&mut endless).await, Some(ENHANCE_YOUR_CALM));

    // An HPACK bomb: a 4,000-byte field put in the dynamic table, then named by its index
    // (62, the table's first entry) 100 times, a byte each: 400 KB decoded from 4 KB sent.
    let mut bomb_connection = open(addr).await;
    let mut bomb = get("/bomb");
    bomb.extend([0x40, 6]);
    bomb.extend_from_slice(b"x-bomb");
    bomb.extend(integer(4_000, 7, 0));
    bomb.extend(std::iter::repeat_n(b'b', 4_000));
    bomb.extend([0x80 | 62; 100]);
    bomb_connection
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &bomb))
        .await
        .unwrap();
    assert_eq!(
        goaway_then_eof(&mut bomb_connection).await,
        Some(ENHANCE_YOUR_CALM)
    );

    // A flood of frames that ask for nothing: 10 MiB of PRIORITY, past eight times what the
    // connection's requests carried (none) and 1 MiB. Closed (the h2 crate would have read
    // them for ever, a core's worth of work).
    let mut priorities = open(addr).await;
    let mut flood = Vec::new();
    for id in (1..2_000).step_by(2) {
        flood.extend(frame(PRIORITY, 0, id, &[0, 0, 0, 0, 16]));
    }
    let flood = flood.repeat(10 * 1024 * 1024 / flood.len());
    let (mut read, mut write) = priorities.split();
    let (_, ended) = tokio::join!(write.write_all(&flood), async {
        let mut byte = [0u8; 4096];
        loop {
            match timeout(PATIENCE, read.read(&mut byte)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(_)) => {}
                Err(_) => break false,
            }
        }
    });
    assert!(ended, "the flooding connection was still open");

    // The connection opened before all that is served as if nothing happened.
    let before = calls.load(Ordering::SeqCst);
    bystander
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get("/")))
        .await
        .unwrap();
    assert_eq!(outcome(&mut bystander, 1).await, Ok((200, b"ok".to_vec())));
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_stream_gets_goaway_then_is_dropped_and_a_long_stream_is_not() {
    let (addr, calls) = server(true);

    // Half a header block, then nothing: GOAWAY after one quiet period, dropped after the
    // next (this client answers nothing, so hyper's graceful close never completes).
    let started = Instant::now();
    let mut half = open(addr).await;
    half.write_all(&frame(HEADERS, END_STREAM, 1, &get("/")))
        .await
        .unwrap();
    let mut goaway = None;
    while let Some(frame) = read_frame(&mut half).await {
        if frame.kind == GOAWAY {
            assert!(
                started.elapsed() >= PERIOD,
                "GOAWAY after {:?}",
                started.elapsed()
            );
            goaway = Some(frame.code());
        }
    }
    assert_eq!(goaway, Some(NO_ERROR));
    assert!(
        started.elapsed() >= PERIOD * 2,
        "dropped after {:?}",
        started.elapsed()
    );

    // A client that reads (hyper's) closes on the GOAWAY of an idle connection: its
    // connection task ends without an error.
    let (mut send, connection) = h2_handshake(TcpStream::connect(addr).await.unwrap()).await;
    // A stream of three periods on it is served to its end: the connection was busy.
    let request = http::Request::get(format!("http://{addr}/slow"))
        .body(Empty::new())
        .unwrap();
    let response = timeout(PATIENCE, send.send_request(request))
        .await
        .expect("the slow answer in time")
        .expect("the slow answer");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    let idle = Instant::now();
    timeout(PATIENCE, connection)
        .await
        .expect("the idle connection closed in time")
        .unwrap()
        .expect("a clean close");
    assert!(
        idle.elapsed() >= PERIOD,
        "closed after {:?}",
        idle.elapsed()
    );
    drop(send);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A body that never ends, 16 KiB a frame; `dropped` is told when it is dropped.
struct Endless {
    dropped: Arc<tokio::sync::Notify>,
}

impl http_body::Body for Endless {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let chunk = bytes::Bytes::from_static(&[b'x'; 16 * 1024]);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        self.dropped.notify_one();
    }
}

/// The send timeout: a stream whose client takes nothing of its response (its window left
/// shut) through a whole period is reset, and its response body, with what it holds
/// upstream, dropped; the client's other streams, before and after, are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_takes_nothing_of_its_response_is_reset_after_a_period() {
    let dropped = Arc::new(tokio::sync::Notify::new());
    let told = dropped.clone();
    let addr = origin_thread(move |listener| async move {
        let answer = tower::service_fn(move |request: http::Request<rama_http::Body>| {
            let dropped = told.clone();
            async move {
                let body = match request.uri().path() {
                    "/endless" => rama_http::Body::new(Endless { dropped }),
                    _ => rama_http::Body::from("ok"),
                };
                Ok::<_, BoxError>(http::Response::new(body))
            }
        });
        let stack = rama_http::Server::new()
            .header_read_timeout(PERIOD)
            .layer(answer);
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    });
    // A stream window of the protocol's default, never released for the endless body (it is
    // not read), and room in the connection's for the rest.
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Empty<bytes::Bytes>>(io)
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap()
    };
    let started = Instant::now();
    let stalled = timeout(PATIENCE, send.send_request(get("/endless")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stalled.status(), 200);
    let ok = send.send_request(get("/small")).await.unwrap();
    let body = ok.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");

    timeout(PATIENCE, dropped.notified())
        .await
        .expect("the stalled stream's body dropped");
    assert!(
        started.elapsed() >= PERIOD,
        "reset after {:?}",
        started.elapsed()
    );
    // What came before the reset is there, then the stream's end is an error, not a clean one.
    let mut body = stalled.into_body();
    let ended = timeout(PATIENCE, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => {}
                Some(Err(error)) => break Err(error),
                None => break Ok(()),
            }
        }
    })
    .await
    .unwrap();
    assert!(ended.is_err(), "the stalled stream ended cleanly");
    // The connection serves on.
    let ok = send.send_request(get("/after")).await.unwrap();
    let body = ok.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_connect_is_offered_for_websockets_and_another_protocol_is_reset() {
    // SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3): WebSockets on HTTP/2 streams reach the
    // service as upgrades (`tests/ws.rs` runs them); any other `:protocol` is not carried.
    const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
    const INTERNAL_ERROR: u32 = 2;
    let (addr, calls) = server(false);
    let mut stream = open(addr).await;
    let settings = loop {
        let frame = read_frame(&mut stream)
            .await
            .expect("the server's SETTINGS");
        if frame.kind == SETTINGS && frame.flags & 0x1 == 0 {
            break frame.payload;
        }
    };
    let offered = settings.chunks(6).any(|setting| {
        u16::from_be_bytes([setting[0], setting[1]]) == ENABLE_CONNECT_PROTOCOL
            && setting[2..] == [0, 0, 0, 1]
    });
    assert!(offered, "settings: {settings:?}");

    // `:method CONNECT` (a literal named by entry 2), `:protocol connect-udp` (a literal with
    // its name), `:scheme`, `:path`, `:authority`.
    let mut block = literal(2, b"CONNECT");
    block.extend([0x00, 9]);
    block.extend_from_slice(b":protocol");
    block.extend(integer(11, 7, 0));
    block.extend_from_slice(b"connect-udp");
    block.push(0x86);
    block.extend(literal(4, b"/masque"));
    block.extend(literal(1, b"localhost"));
    let mut bytes = frame(SETTINGS, 0x1, 0, &[]);
    bytes.extend(frame(HEADERS, END_HEADERS, 1, &block));
    bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &get("/after")));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(outcome(&mut stream, 1).await, Err(INTERNAL_ERROR));
    assert_eq!(outcome(&mut stream, 3).await, Ok((200, b"ok".to_vec())));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the GET reached the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cancels_most_of_its_requests_after_they_reached_the_service_is_sent_away() {
    // Rapid reset paced to pass `h2`'s own count, which sees only streams reset before they
    // are accepted: each batch is reset once the service has it (behind a proxy, an upstream
    // exchange begun and thrown away: a connection to the origin churned per stream).
    const BATCH: u32 = 50;
    let (addr, calls) = server(false);
    let mut bystander = open(addr).await;
    let (mut read, mut write) = open(addr).await.into_split();
    let ended = tokio::spawn(async move { goaway_then_eof(&mut read).await });
    for batch in 0..20 {
        let ids: Vec<u32> = (0..BATCH).map(|n| 1 + 2 * (batch * BATCH + n)).collect();
        let before = calls.load(Ordering::SeqCst);
        let opened: Vec<u8> = ids
            .iter()
            .flat_map(|&id| frame(HEADERS, END_STREAM | END_HEADERS, id, &get("/slow")))
            .collect();
        if write.write_all(&opened).await.is_err() {
            break;
        }
        until(
            "the batch reached the service, or the connection closed",
            || calls.load(Ordering::SeqCst) >= before + BATCH as usize || ended.is_finished(),
        )
        .await;
        let resets: Vec<u8> = ids
            .iter()
            .flat_map(|&id| frame(RST_STREAM, 0, id, &8u32.to_be_bytes()))
            .collect();
        if ended.is_finished() || write.write_all(&resets).await.is_err() {
            break;
        }
    }
    let code = timeout(PATIENCE, ended)
        .await
        .expect("the cancelling client's connection closed")
        .unwrap();
    assert_eq!(code, Some(NO_ERROR), "sent GOAWAY before the close");
    let served = calls.load(Ordering::SeqCst);
    assert!(
        served < 600,
        "{served} cancelled requests reached the service"
    );

    // A client that cancels some of its requests (a browser leaving pages) is served on:
    // 250 cancelled among 750.
    let mut browsing = open(addr).await;
    let mut id = 1;
    for round in 0..250 {
        let before = calls.load(Ordering::SeqCst);
        browsing
            .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, id, &get("/slow")))
            .await
            .unwrap();
        until("the service has the request", || {
            calls.load(Ordering::SeqCst) > before
        })
        .await;
        browsing
            .write_all(&frame(RST_STREAM, 0, id, &8u32.to_be_bytes()))
            .await
            .unwrap();
        for _ in 0..2 {
            id += 2;
            browsing
                .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, id, &get("/")))
                .await
                .unwrap();
            assert_eq!(
                outcome(&mut browsing, id).await,
                Ok((200, b"ok".to_vec())),
                "round {round}"
            );
        }
        id += 2;
    }

    // And the connection opened before it all.
    bystander
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get("/")))
        .await
        .unwrap();
    assert_eq!(outcome(&mut bystander, 1).await, Ok((200, b"ok".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_service_does_not_read_leaves_room_for_the_connections_others() {
    // An upload stalled behind it (an upstream that does not read) holds a stream window of
    // data; the connection's window has room for more than one such stream, so the client's
    // other uploads go on.
    let addr = origin_thread(move |listener| async move {
        let answer = tower::service_fn(|request: http::Request<rama_http::Body>| async move {
            if request.uri().path() == "/stall" {
                // Held, unread, for as long as the client keeps the stream.
                std::future::pending::<()>().await;
            }
            let length = request.into_body().collect().await?.to_bytes().len();
            Ok::<_, BoxError>(http::Response::new(rama_http::Body::from(
                length.to_string(),
            )))
        });
        let stack = rama_http::Server::new().layer(answer);
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    });
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut send, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(io)
            .await
            .unwrap();
    tokio::spawn(connection);
    let post = |path: &str, len: usize| {
        http::Request::post(format!("http://{addr}{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                len
            ])))
            .unwrap()
    };
    // Eight: a browser's uploads through an HTTP/2 proxy, to slow servers.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(tokio::spawn(send.send_request(post("/stall", 1 << 20))));
    }
    for len in [1 << 20, 3 << 20] {
        let answer = timeout(PATIENCE, send.send_request(post("/count", len)))
            .await
            .expect("the upload beside the stalled ones went through")
            .unwrap();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, len.to_string());
    }
    assert!(stalled.iter().all(|upload| !upload.is_finished()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_client_with_nothing_in_flight_is_closed_before_the_drain_deadline() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = origin_thread(move |listener| async move {
        let answer = tower::service_fn(|_: http::Request<rama_http::Body>| async {
            Ok::<_, BoxError>(http::Response::new(rama_http::Body::from("ok")))
        });
        let stack = rama_http::Server::new().layer(answer);
        let _ = tcp::Server::from_std(listener)
            .serve(stack)
            .drain_timeout(PATIENCE)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    // Served once, then kept open; it answers no PING (Python's `h2` stops at GOAWAY), so
    // hyper's graceful shutdown never completes on its own.
    let mut kept = open(addr).await;
    kept.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get("/")))
        .await
        .unwrap();
    assert_eq!(outcome(&mut kept, 1).await, Ok((200, b"ok".to_vec())));
    let started = Instant::now();
    stop.send(()).unwrap();
    assert_eq!(goaway_then_eof(&mut kept).await, Some(NO_ERROR));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}
