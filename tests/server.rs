//! `http::Server`'s own HTTP/1.1 path, and its hand-over to hyper, over raw sockets on
//! 127.0.0.1: pipelined requests answered in order, HTTP/1.0 and `Connection: close`, a
//! streamed chunked upload and `Expect: 100-continue` in the middle of a connection (hyper's
//! from then on) with the connection serving on, a chunked upload that came whole served on
//! the own path (a bare LF ending a trailer line), responses framed by their bodies (length, chunked,
//! `HEAD`, `204`) and dated, a head sent without waiting for a slow body, a body that fails
//! before its first byte answered `502`, a target `http` does not take answered `400`, and
//! `HTTP/1.2` served as HTTP/1.1 while `HTTP/2.0` and `HTTP/3.0` are `505`.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use rama::{BoxError, http as rama_http, tcp};
use rama_e2e::{PAST_OWN_PATH, PATIENCE, chunked_past_own_path, origin_thread, read_head};
use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
    time::timeout,
};
use tower::Layer;

/// A body of three frames whose length nobody says (so it goes chunked).
struct Unsized(u8);

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 3 {
            return Poll::Ready(None);
        }
        self.0 += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!(
            "part{};",
            self.0
        ))))))
    }
}

/// A body whose first frame never comes, or, `broken`, fails; with an [`OnDrop`], it tells
/// when it is dropped.
struct Stalled {
    broken: bool,
    _dropped: Option<OnDrop>,
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.broken {
            return Poll::Ready(Some(Err("broken before its first byte".into())));
        }
        Poll::Pending
    }
}

/// Told when a `/hang` request reaches the service, and when its future is dropped.
static HANG_CALLED: Notify = Notify::const_new();
static HANG_DROPPED: Notify = Notify::const_new();
/// Told when a `/gate` request reaches the service; the service answers it when opened.
static GATE_CALLED: Notify = Notify::const_new();
static GATE_OPEN: Notify = Notify::const_new();

/// Told when a `/quiet` response's body is dropped.
static QUIET_DROPPED: Notify = Notify::const_new();

/// Tells the `Notify` it names when it is dropped.
struct OnDrop(&'static Notify);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// `/lengths`: the request's `Content-Length` values, `|` between them; `/stream`: an unsized
/// body; `/none`: `204`; `/stalled`: a body that never starts;
/// `/broken`: one that fails at once; `/quiet`: a head and then nothing; `/hang`: no answer ever; `/gate`: an answer once
/// [`GATE_OPEN`]; anything else: `METHOD PATH VERSION BODYLEN`.
async fn answer(
    request: http::Request<rama_http::Body>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    match request.uri().path() {
        "/quiet" => {
            let body = Stalled {
                broken: false,
                _dropped: Some(OnDrop(&QUIET_DROPPED)),
            };
            return Ok(http::Response::new(rama_http::Body::new(body)));
        }
        "/hang" => {
            let _dropped = OnDrop(&HANG_DROPPED);
            HANG_CALLED.notify_one();
            std::future::pending::<()>().await;
        }
        "/gate" => {
            GATE_CALLED.notify_one();
            GATE_OPEN.notified().await;
        }
        "/lengths" => {
            let lengths: Vec<_> = request
                .headers()
                .get_all("content-length")
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            request.into_body().collect().await?;
            return Ok(http::Response::new(lengths.join("|").into()));
        }
        "/stream" => return Ok(http::Response::new(rama_http::Body::new(Unsized(0)))),
        "/stalled" => {
            return Ok(http::Response::new(rama_http::Body::new(Stalled {
                broken: false,
                _dropped: None,
            })));
        }
        "/broken" => {
            return Ok(http::Response::new(rama_http::Body::new(Stalled {
                broken: true,
                _dropped: None,
            })));
        }
        "/none" => {
            let mut response = http::Response::new(rama_http::Body::empty());
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            return Ok(response);
        }
        _ => {}
    }
    let line = format!(
        "{} {} {:?} ",
        request.method(),
        request.uri(),
        request.version()
    );
    let body = request.into_body().collect().await?.to_bytes();
    Ok(http::Response::new(format!("{line}{}", body.len()).into()))
}

fn server() -> SocketAddr {
    server_with(rama_http::Server::new())
}

fn server_with(http: rama_http::Server) -> SocketAddr {
    origin_thread(|listener| async move {
        let stack = http.layer(tower::service_fn(answer));
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    })
}

/// One response read off `stream`: its head (lowercase) and its body (by length, chunks, or
/// none for `HEAD` and `204`).
async fn response(stream: &mut TcpStream, head_request: bool) -> (String, Vec<u8>) {
    let head = timeout(PATIENCE, read_head(stream))
        .await
        .expect("a response in time")
        .unwrap()
        .expect("a response, not EOF")
        .to_ascii_lowercase();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let mut body = Vec::new();
    if head_request || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 100") {
        return (head, body);
    }
    if let Some(length) = field("content-length") {
        body.resize(length.parse().unwrap(), 0);
        stream.read_exact(&mut body).await.unwrap();
    } else if field("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line = read_line(stream).await;
            let size = usize::from_str_radix(&line, 16).unwrap();
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        stream.read_to_end(&mut body).await.unwrap();
    }
    (head, body)
}

async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line[..line.len() - 2].to_vec()).unwrap()
}

/// Whether the server closed `stream` (EOF within the patience).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0];
    matches!(timeout(PATIENCE, stream.read(&mut byte)).await, Ok(Ok(0)))
}

/// Sends `request` on a new connection to `addr`.
async fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Sends `request` on a new connection to `addr`: the connection, and the response's head
/// (lowercase) and body (see [`response`]).
async fn ask(addr: SocketAddr, request: &[u8]) -> (TcpStream, String, Vec<u8>) {
    let mut stream = send(addr, request).await;
    let (head, body) = response(&mut stream, false).await;
    (stream, head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let addr = server();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /2 HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n\r\nhello\
              GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .unwrap();
    for expected in [
        "GET /1 HTTP/1.1 0",
        "POST /2 HTTP/1.1 5",
        "GET /3 HTTP/1.1 0",
    ] {
        let (head, body) = response(&mut stream, false).await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
}

/// While a request is in flight, or a response body is slow to come, the server reads on: a
/// client that closes has its request dropped (what the service does for it ends), and a
/// pipelined next request is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_or_slow_body_in_flight_is_dropped_when_its_client_closes_and_a_pipelined_one_waits()
 {
    let addr = server();
    let stream = send(addr, b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n").await;
    timeout(PATIENCE, HANG_CALLED.notified()).await.unwrap();
    drop(stream);
    timeout(PATIENCE, HANG_DROPPED.notified())
        .await
        .expect("the request's future dropped once its client closed");

    // The same while a response's body is slow to come, after its head went.
    let mut stream = send(addr, b"GET /quiet HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let head = timeout(PATIENCE, read_head(&mut stream)).await.unwrap();
    assert!(head.unwrap().unwrap().starts_with("HTTP/1.1 200"));
    drop(stream);
    timeout(PATIENCE, QUIET_DROPPED.notified())
        .await
        .expect("the response body dropped once its client closed");

    let mut stream = send(addr, b"GET /gate HTTP/1.1\r\nHost: a\r\n\r\n").await;
    timeout(PATIENCE, GATE_CALLED.notified()).await.unwrap();
    stream
        .write_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    GATE_OPEN.notify_one();
    for expected in ["GET /gate HTTP/1.1 0", "GET /next HTTP/1.1 0"] {
        let (head, body) = response(&mut stream, false).await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_and_connection_close_end_the_connection_and_keep_alive_keeps_it() {
    let addr = server();
    let (mut stream, head, body) = ask(addr, b"GET /a HTTP/1.0\r\n\r\n").await;
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"GET /a HTTP/1.0 0");
    assert!(closed(&mut stream).await);

    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        let request = b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        stream.write_all(request).await.unwrap();
        let (head, body) = response(&mut stream, false).await;
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert_eq!(body, b"GET /b HTTP/1.0 0");
    }
    // An HTTP/1.0 client knows no chunks: an unsized body runs until the close.
    let request = b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let (head, body) = response(&mut stream, false).await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(body, b"part1;part2;part3;");

    let request = b"GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let (mut stream, head, _) = ask(addr, request).await;
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_and_expect_mid_connection_go_to_hyper_and_it_serves_on() {
    let addr = server();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /own HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut stream, false).await.1, b"GET /own HTTP/1.1 0");
    // Larger than the own path takes whole: hyper streams it.
    let upload =
        chunked_past_own_path("POST /up HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n");
    stream.write_all(upload.as_bytes()).await.unwrap();
    assert_eq!(
        response(&mut stream, false).await.1,
        format!("POST /up HTTP/1.1 {PAST_OWN_PATH}").as_bytes()
    );
    // `Expect: 100-continue`: `100` first, then the body goes, then the answer.
    let expect =
        b"PUT /put HTTP/1.1\r\nHost: a\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n";
    stream.write_all(expect).await.unwrap();
    let (head, _) = response(&mut stream, false).await;
    assert!(head.starts_with("http/1.1 100 continue"), "{head}");
    stream.write_all(b"abc").await.unwrap();
    assert_eq!(response(&mut stream, false).await.1, b"PUT /put HTTP/1.1 3");
    stream
        .write_all(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        response(&mut stream, false).await.1,
        b"GET /after HTTP/1.1 0"
    );
}

/// A chunked upload that comes whole with its head is the own path's: a bare LF ends a
/// trailer line there, as nginx and HAProxy read it, so the request behind it is the next
/// request (hyper read on to the next CRLF, took that request for trailer fields and never
/// answered it), and the connection stays on the own path (`HTTP/1.2` is served as HTTP/1.1
/// there; hyper answers it `400`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_all_there_stays_on_the_own_path_and_a_bare_lf_ends_a_trailer_line() {
    let addr = server();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let both = b"POST /up HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\n\r\n\
                 GET /behind HTTP/1.2\r\nHost: a\r\n\r\n";
    stream.write_all(both).await.unwrap();
    let answers = async {
        let first = response(&mut stream, false).await.1;
        (first, response(&mut stream, false).await.1)
    };
    let (first, behind) = timeout(PATIENCE, answers)
        .await
        .expect("both requests answered");
    assert_eq!(first, b"POST /up HTTP/1.1 11");
    assert_eq!(behind, b"GET /behind HTTP/1.1 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_framed_by_their_bodies_and_dated() {
    let addr = server();
    let (mut stream, head, body) = ask(addr, b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, b"part1;part2;part3;");

    stream
        .write_all(b"HEAD /text HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut stream, true).await;
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    // The length of what a GET would get (`GET /text HTTP/1.1 0` is 20 bytes; HEAD is 21).
    assert!(head.contains("content-length: 21"), "{head}");

    stream
        .write_all(b"GET /none HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut stream, false).await;
    assert!(head.starts_with("http/1.1 204 no content"), "{head}");
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "{head}"
    );
    assert!(head.contains("\r\ndate: "), "{head}");

    // Still in step: nothing of a body was sent for HEAD or 204.
    stream
        .write_all(b"GET /last HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        response(&mut stream, false).await.1,
        b"GET /last HTTP/1.1 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_does_not_wait_for_a_slow_body_and_a_body_broken_before_it_began_is_502() {
    let addr = server();
    // The head alone, while the body has nothing to give.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /stalled HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let head = timeout(PATIENCE, read_head(&mut stream))
        .await
        .expect("the head before the body")
        .unwrap()
        .expect("a head, not EOF")
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    // Nothing of the response had left when its body failed: a 502, and the close.
    let (mut stream, head, body) = ask(addr, b"GET /broken HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 502"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"the response failed before its first byte");
    assert!(closed(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_http_does_not_take_is_400_and_the_server_serves_on() {
    let addr = server();
    let (mut stream, head, body) = ask(addr, b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert_eq!(body, b"bad request");
    assert!(closed(&mut stream).await);
    let (_, _, body) = ask(addr, b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(body, b"GET /fine HTTP/1.1 0");
}

/// A higher minor version of HTTP/1 is served as HTTP/1.1 (RFC 9112 2.3; nginx does, hyper
/// answered `400`): on the own path, and on hyper's when the request is one it hands over (a
/// chunked upload), the connection kept. A higher major version (`HTTP/2.0` that is not the
/// h2 preface, `HTTP/3.0`) is `505` and the close, nginx's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_minor_version_is_served_as_http_1_1_and_a_higher_major_is_505() {
    let addr = server();
    let (mut stream, head, body) = ask(addr, b"GET /a HTTP/1.2\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"GET /a HTTP/1.1 0");
    let upload =
        chunked_past_own_path("POST /b HTTP/1.9\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(upload.as_bytes()).await.unwrap();
    let (head, body) = response(&mut stream, false).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, format!("POST /b HTTP/1.1 {PAST_OWN_PATH}").as_bytes());
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let request = format!("GET / {version}\r\nHost: a\r\n\r\n");
        let (mut stream, head, body) = ask(addr, request.as_bytes()).await;
        assert!(head.starts_with("http/1.1 505"), "{version}: {head}");
        assert!(head.contains("connection: close"), "{version}: {head}");
        assert_eq!(body, b"the request's HTTP version is not 1.x");
        assert!(closed(&mut stream).await, "{version}");
    }
}

/// A connection that sends nothing is closed a header-read timeout after it opened, without a
/// word, on either path: rama's own HTTP/1.1 one, and hyper's, which serves every connection
/// when the header count limit is not the default and looks at the first bytes for the
/// version without a timer of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    use std::time::{Duration, Instant};
    let period = Duration::from_secs(1);
    for http in [
        rama_http::Server::new(),
        rama_http::Server::new().max_headers(50),
    ] {
        let addr = server_with(http.header_read_timeout(period));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        assert!(closed(&mut stream).await);
        let waited = started.elapsed();
        assert!(
            waited >= period - Duration::from_millis(100) && waited < 3 * period,
            "{waited:?}"
        );
        // The same server answers a client that speaks.
        let (_, head, _) = ask(addr, b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    // The empty line some clients send after a request (RFC 9112 2.2 has servers ignore it)
    // is nothing of a next one: the idle connection closes without a 408.
    let addr = server_with(rama_http::Server::new().header_read_timeout(period));
    let (mut stream, head, _) = ask(
        addr,
        b"POST /fine HTTP/1.1\r\nHost: a\r\ncontent-length: 2\r\n\r\nok\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(closed(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_may_take_longer_than_the_header_timeout_while_it_moves() {
    use std::time::{Duration, Instant};
    let period = Duration::from_secs(1);
    let addr = server_with(rama_http::Server::new().header_read_timeout(period));
    let head = b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 4000\r\n\r\n";
    // 4,000 bytes in ten pieces 250 ms apart: 2.5 s in all, never a period without a move.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stream.write_all(&[b'x'; 400]).await.unwrap();
    }
    let (status, body) = response(&mut stream, false).await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"POST /slow HTTP/1.1 4000");

    // Half of it, then nothing: 408 a period after the last bytes, and the close.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    stream.write_all(&[b'x'; 2000]).await.unwrap();
    let started = Instant::now();
    let (status, _) = response(&mut stream, false).await;
    let waited = started.elapsed();
    assert!(status.starts_with("http/1.1 408"), "{status}");
    assert!(
        waited >= period - Duration::from_millis(100) && waited < 3 * period,
        "{waited:?}"
    );
    assert!(closed(&mut stream).await);
}

/// Equal repeated `Content-Length`s reach the service as one field, on the own path (as they
/// came, they reached an HTTP/2 upstream as two `content-length` fields, which nginx refuses
/// with `400`) as on hyper's (a body past the own path's limit; hyper keeps one itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_repeated_lengths_reach_the_service_as_one() {
    let addr = server();
    let big = 70_000;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (lengths, body) in [
        ("content-length: 2\r\ncontent-length: 2", vec![b'a'; 2]),
        (
            &*format!("content-length: {big}\r\nContent-Length: {big}"),
            vec![b'a'; big],
        ),
    ] {
        let head = format!("PUT /lengths HTTP/1.1\r\nHost: a\r\n{lengths}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let (_, seen) = response(&mut stream, false).await;
        assert_eq!(seen, body.len().to_string().as_bytes(), "{lengths}");
    }
}
