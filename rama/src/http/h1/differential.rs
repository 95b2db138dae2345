//! Differential fuzzing of rama's own HTTP/1.1 parsing against hyper's, on both sides of a
//! proxy: the server's ([`codec::parse_request`], what `server/h1.rs` serves by) against
//! hyper's HTTP/1.1 server, and the upstream client's (`h1::read_final` and the body by its
//! framing) against hyper's HTTP/1.1 client.
//!
//! The own paths are meant to be invisible: a service must be given the requests hyper would
//! have given it (and what the server's path does not take goes to hyper with the bytes
//! untouched), and a response must read as hyper reads it, or fail where it fails. Here
//! well-formed inputs are mutated (bytes replaced, put in and dropped, lines doubled, a CRLF
//! made a bare LF, the input cut short, the fields request smuggling plays with spliced in)
//! and each is given to both, hyper on an in-memory stream whose other end closes after the
//! input (a server told to wait that out).
//!
//! Requests: the own side parses requests off the input as the server does, until one it does
//! not serve; hyper's service writes down each request it gets whole (method, target,
//! version, fields, body, trailers). Then:
//!
//! - every request the own path took is the one hyper's service got at the same place;
//! - where the own path stopped for good (`400`, a request that closes the connection, the
//!   end of the input inside a request), hyper's service got no further request, and where
//!   the own path answered `400` (or `414`, `505`), hyper answered an error too;
//! - where it handed over, nothing more is asked: the rest is hyper's in the server as well.
//!
//! Responses (to a `GET`, or a `HEAD`): status, version, fields, body and trailers as the
//! client hands them on, or no response, or a body that failed, must be the same.
//!
//! The own paths differ from hyper on purpose (ARCHITECTURE.md, HTTP): the server serves
//! `HTTP/1.2`-`1.9` as HTTP/1.1 (hyper: `400`); both collapse equal repeated `Content-Length`
//! fields into one, keep out of trailers the fields no trailer may carry and those the head's
//! `Connection` names, and end a trailer line at a bare LF as nginx and HAProxy do; the client
//! refuses a `101` nobody asked for and a coding other than `chunked` alone, and reads the
//! chunks of an HTTP/1.0 response (hyper refuses it). [`expected_difference`] and
//! [`own_response`] leave out the inputs that reach the versions, the bare LF and the
//! client's three; the rest is written down the own paths' way on both sides, with what
//! rama does to hyper's messages (`headers::remove_hop_by_hop`).
//!
//! The cases are a fixed pseudo-random sequence, so a failure names its case;
//! `RAMA_H1_FUZZ_CASES=N` runs more of them than the default, which takes a few seconds.

use super::{
    ExchangeError, ParseError,
    codec::{self, Decoded, Framing, NotOwn, Parsed},
};
use crate::{
    http::{headers, server::DEFAULT_MAX_HEADER_SIZE},
    mutate::{Rng, mutated},
};
use ::http::{HeaderMap, HeaderName, Method, Request, Response, Version, header};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::{cell::RefCell, convert::Infallible, fmt::Write as _, rc::Rc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the own path stopped parsing an input.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// It handed the rest to hyper.
    Left,
    /// It answered an error and closed (`400`, `414`, `505`).
    Rejected,
    /// A request it served closes the connection.
    Closed,
    /// The input ended inside a request.
    Incomplete,
}

/// The requests the own path takes off `input`, and where it stopped. What it leaves to
/// hyper must be the bytes it did not serve, as they came.
fn own_requests(input: &[u8]) -> (Vec<String>, Stop) {
    let mut buf = BytesMut::from(input);
    let mut requests = Vec::new();
    loop {
        let unserved = &input[input.len() - buf.len()..];
        let head = match codec::parse_request(&mut buf, DEFAULT_MAX_HEADER_SIZE) {
            Ok(Parsed::Request(head)) => head,
            Ok(Parsed::Head | Parsed::Body) => return (requests, Stop::Incomplete),
            Err(NotOwn::Leave) => {
                assert_eq!(buf, unserved, "left to hyper, not as it came");
                return (requests, Stop::Left);
            }
            Err(NotOwn::Bad(_) | NotOwn::TargetTooLong | NotOwn::VersionNotSupported) => {
                return (requests, Stop::Rejected);
            }
        };
        let mut text = format!("{} {} {:?}\n", head.method, head.uri, head.version);
        write_fields(&mut text, &head.headers);
        write_body(&mut text, &head.body, head.trailers.as_deref());
        requests.push(text);
        if !codec::connection_persists(head.version, &head.headers) {
            return (requests, Stop::Closed);
        }
    }
}

/// What hyper's server made of `input`: the requests its service got whole, and the status
/// codes of its responses.
async fn hyper_requests(input: &[u8]) -> (Vec<String>, Vec<u16>) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let mut text = format!("{} {} {:?}\n", parts.method, parts.uri, parts.version);
                let mut headers = parts.headers;
                headers::single_content_length(&mut headers);
                write_fields(&mut text, &headers);
                // A body the end of the input cut short is no request the own path takes.
                if let Ok(collected) = body.collect().await {
                    let trailers = collected.trailers().map(|t| next_hop_trailers(&headers, t));
                    write_body(&mut text, &collected.to_bytes(), trailers.as_ref());
                    seen.borrow_mut().push(text);
                }
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    let serving = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .header_read_timeout(None)
        .max_buf_size(DEFAULT_MAX_HEADER_SIZE)
        .serve_connection(TokioIo::new(server), record);
    let talking = async {
        // hyper may answer and close before it has read the whole input.
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    };
    let (_, answer) = tokio::join!(serving, talking);
    let requests = seen.borrow().clone();
    (requests, statuses(&answer))
}

/// The trailer fields the own paths hand on: those a trailer may carry that the head's
/// `Connection` does not name (hyper hands on every one; the proxies drop the rest when they
/// forward).
fn next_hop_trailers(head: &HeaderMap, trailers: &HeaderMap) -> HeaderMap {
    let named = headers::connection_named(head);
    let mut kept = HeaderMap::new();
    for (name, value) in trailers {
        if headers::allowed_in_trailers(name) && !named.contains(name) {
            kept.append(name, value.clone());
        }
    }
    kept
}

/// The fields by name (a map's order changes when fields are removed from it), each name's
/// values in their order.
fn write_fields(text: &mut String, fields: &HeaderMap) {
    let mut names: Vec<&HeaderName> = fields.keys().collect();
    names.sort_by_key(|name| name.as_str());
    for name in names {
        for value in fields.get_all(name) {
            let _ = writeln!(text, "{name}: {}", value.as_bytes().escape_ascii());
        }
    }
}

fn write_body(text: &mut String, body: &[u8], trailers: Option<&HeaderMap>) {
    let _ = writeln!(text, "body {}", body.escape_ascii());
    if let Some(trailers) = trailers.filter(|t| !t.is_empty()) {
        text.push_str("trailers\n");
        write_fields(text, trailers);
    }
}

/// The status codes of the responses in `answer` (heads with empty bodies, and perhaps an
/// error with a short text): every `HTTP/1.x NNN` at the start of a line.
fn statuses(answer: &[u8]) -> Vec<u16> {
    (0..answer.len())
        .filter(|&at| at == 0 || answer[..at].ends_with(b"\n"))
        .filter_map(|at| {
            let line = answer[at..].strip_prefix(b"HTTP/1.")?;
            if line.get(1) != Some(&b' ') {
                return None;
            }
            std::str::from_utf8(line.get(2..5)?).ok()?.parse().ok()
        })
        .collect()
}

/// Well-formed inputs the mutations start from: what proxies see most, and what framing
/// depends on.
const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
    b"GET http://example.test/p HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: foo\r\nFoo: bar\r\n\r\nabc",
    b"POST /both HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"POST /k HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET /n HTTP/1.1\r\nHost: b\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\nCookie: a=b; c=d\r\n\r\n",
];

/// What the mutations put in: the separators and digits framing is made of, bytes a field
/// value may not hold, and the fields a smuggler sends.
const PIECES: &[&[u8]] = &[
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b":",
    b";",
    b",",
    b"0",
    b"5",
    b"-1",
    b"+3",
    b"0x5",
    b"\0",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"Content-Length: 3\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, x-drop\r\nX-Drop: 1\r\n",
    b"Expect: 100-continue\r\n",
    b"Host: b\r\n",
    b"0\r\n\r\n",
    b"HTTP/1.0",
    b"chunked",
    b"GET / HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"Keep-Alive: timeout=5\r\n",
];

/// Request case `case`.
fn request_case(case: u64) -> Vec<u8> {
    mutated(&mut Rng::seeded(case), SEEDS, PIECES)
}

/// Response case `case`: the response, and the method of the request it answers.
fn response_case(case: u64) -> (Method, Vec<u8>) {
    // A multiplier of its own: response case `n` is not drawn as request case `n` is.
    let mut rng = Rng(case.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let input = mutated(&mut rng, RESPONSE_SEEDS, PIECES);
    let method = if rng.below(5) == 0 {
        Method::HEAD
    } else {
        Method::GET
    };
    (method, input)
}

/// Whether `input` reaches one of the own path's deliberate differences from hyper (see the
/// module's header): a version other than `HTTP/1.0` and `1.1` anywhere, or a bare LF past
/// the first head of an input that says `chunked` (a trailer line, perhaps: telling exactly
/// would take a parser of its own).
fn expected_difference(input: &[u8]) -> bool {
    let other_version = input.windows(8).any(|w| {
        w.starts_with(b"HTTP/")
            && w[5].is_ascii_digit()
            && w[6] == b'.'
            && w[7].is_ascii_digit()
            && !matches!(&w[5..], b"1.0" | b"1.1")
    });
    let chunked = input.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
    let head_end = (1..input.len())
        .find(|&i| input[i] == b'\n' && (input[i - 1] == b'\n' || input[..i].ends_with(b"\n\r")));
    let bare_lf_after_head = head_end.is_some_and(|end| {
        (end + 1..input.len()).any(|i| input[i] == b'\n' && input[i - 1] != b'\r')
    });
    other_version || (chunked && bare_lf_after_head)
}

/// How the requests `input` fail the server's own path's promise, if they do.
async fn request_difference(input: &[u8]) -> Option<String> {
    let (own, stop) = own_requests(input);
    let (hyper, statuses) = hyper_requests(input).await;
    let served = own.len();
    let same_requests = hyper.get(..served) == Some(&own[..]);
    let holds = same_requests
        && match stop {
            Stop::Left => true,
            Stop::Closed | Stop::Incomplete => hyper.len() == served,
            Stop::Rejected => {
                hyper.len() == served && statuses.get(served).is_some_and(|&s| s >= 400)
            }
        };
    (!holds).then(|| {
        format!(
            "{}\n  own path: {own:?}, then {stop:?}\n  hyper:    {hyper:?}, statuses {statuses:?}",
            input.escape_ascii()
        )
    })
}

/// Well-formed responses the mutations start from, for the client's side.
const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nServer: o\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nServer: o\r\n\r\nuntil the close",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nConnection: close, x-a\r\nX-A: 1\r\nContent-Length: 4\r\n\r\ngone",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
];

/// What the client's own HTTP/1.1 path makes of `input` as the answer to a `method` request
/// (`h1::read_final`, then the body by its framing, the input's end the upstream's close);
/// `None` where it differs from hyper on purpose: it refuses a `101` to a request that asked
/// for no upgrade and a transfer coding other than `chunked` alone, and reads the chunks of an
/// HTTP/1.0 response, which hyper refuses.
fn own_response(method: &Method, input: &[u8]) -> Option<String> {
    let mut buf = BytesMut::from(input);
    let answer = loop {
        let head = match codec::parse_response_head(&mut buf) {
            Ok(Some(head)) => head,
            _ => return Some(NO_RESPONSE.to_owned()),
        };
        match super::answer_to(method, head) {
            Ok(Some(answer)) => break answer,
            Ok(None) => {}
            Err(ExchangeError::Parse(ParseError::Upgrade | ParseError::TransferCoding)) => {
                return None;
            }
            Err(_) => return Some(NO_RESPONSE.to_owned()),
        }
    };
    let super::Answer {
        mut head, framing, ..
    } = answer;
    // Chunks in an HTTP/1.0 response are read and the connection closed after them (RFC 9112
    // 6.1's faulty framing); hyper refuses the response.
    if head.version == Version::HTTP_10
        && head.hop.transfer_coding != headers::TransferCoding::Absent
    {
        return None;
    }
    let mut text = format!("{} {:?}\n", head.status, head.version);
    write_fields(&mut text, &head.headers);
    let body = match framing {
        Framing::Empty => Some((Bytes::new(), None)),
        Framing::Length(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= buf.len())
            .map(|n| (buf.split_to(n).freeze(), None)),
        Framing::Close => Some((buf.split().freeze(), None)),
        Framing::Chunked => {
            let mut decoder = codec::ChunkedDecoder::new(&mut head.hop);
            let mut data = Vec::new();
            let mut trailers = None;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(bytes)) => data.extend_from_slice(&bytes),
                    Ok(Decoded::Trailers(fields)) => trailers = Some(fields),
                    Ok(Decoded::Done) => break Some((Bytes::from(data), trailers)),
                    Ok(Decoded::NeedMore) | Err(_) => break None,
                }
            }
        }
    };
    match body {
        Some((data, trailers)) => write_body(&mut text, &data, trailers.as_ref()),
        None => text.push_str(BODY_FAILED),
    }
    Some(text)
}

/// What hyper's HTTP/1.1 client makes of `input` as the answer to a `method` request, the
/// input's end the upstream's close; its fields as rama's hyper path hands them on (the
/// hop-by-hop ones and a length beside chunks removed, the trailers a next hop may get).
async fn hyper_response(method: &Method, input: &[u8]) -> String {
    let (client, mut upstream) = tokio::io::duplex(1 << 20);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .expect("a handshake on an in-memory stream");
    let request = Request::builder()
        .method(method.clone())
        .uri("/")
        .header(header::HOST, "a")
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let exchange = async move {
        let Ok(response) = sender.send_request(request).await else {
            return NO_RESPONSE.to_owned();
        };
        let (parts, body) = response.into_parts();
        let raw = parts.headers.clone();
        let mut fields = parts.headers;
        headers::TransferCoding::of(&fields).drop_length_beside_chunks(&mut fields);
        headers::remove_hop_by_hop(&mut fields);
        let mut text = format!("{} {:?}\n", parts.status, parts.version);
        write_fields(&mut text, &fields);
        match body.collect().await {
            Ok(collected) => {
                let trailers = collected.trailers().map(|t| next_hop_trailers(&raw, t));
                write_body(&mut text, &collected.to_bytes(), trailers.as_ref());
            }
            Err(_) => text.push_str(BODY_FAILED),
        }
        text
    };
    let upstream = async {
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            if upstream.read_buf(&mut request).await.unwrap_or(0) == 0 {
                return;
            }
        }
        let _ = upstream.write_all(input).await;
        let _ = upstream.shutdown().await;
    };
    let (_, text, ()) = tokio::join!(conn, exchange, upstream);
    text
}

/// What the two clients say when no response came (none, or a malformed head).
const NO_RESPONSE: &str = "no response";

/// What the two clients say of a body that broke its framing or was cut short.
const BODY_FAILED: &str = "body failed\n";

/// How the answer `input` to a `method` request fails the client's own path's promise, if it
/// does.
async fn response_difference(method: &Method, input: &[u8]) -> Option<String> {
    if expected_difference(input) {
        return None;
    }
    let own = own_response(method, input)?;
    let hyper = hyper_response(method, input).await;
    (own != hyper).then(|| {
        format!(
            "{method} answered {}\n  own path: {own:?}\n  hyper:    {hyper:?}",
            input.escape_ascii()
        )
    })
}

/// Whether a response record is a whole response.
fn whole(response: &str) -> bool {
    response != NO_RESPONSE && !response.ends_with(BODY_FAILED)
}

#[tokio::test]
async fn the_clients_own_path_reads_responses_as_hyper_reads_them() {
    let cases = fuzz_cases();
    let mut read = 0;
    let mut failures = Vec::new();
    for case in 0..cases {
        let (method, input) = response_case(case);
        read += usize::from(own_response(&method, &input).is_some_and(|own| whole(&own)));
        if let Some(difference) = response_difference(&method, &input).await {
            failures.push(format!("case {case}: {difference}"));
        }
    }
    none_differ(&failures, cases as usize, "responses");
    // As for requests: many cases must still be whole responses (more than half are).
    assert!(
        read * 4 > cases as usize,
        "the own path read only {read} of {cases} responses whole"
    );
}

/// Fails naming every case that differed, if any did, of `compared` `what`.
fn none_differ(failures: &[String], compared: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {compared} {what} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// How many cases each test runs: `RAMA_H1_FUZZ_CASES`, or 20,000.
fn fuzz_cases() -> u64 {
    std::env::var("RAMA_H1_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

#[tokio::test]
async fn the_own_path_takes_what_hyper_takes_and_leaves_the_rest_to_it() {
    let cases = fuzz_cases();
    let mut compared = 0;
    let mut taken = 0;
    let mut failures = Vec::new();
    for case in 0..cases {
        let input = request_case(case);
        if expected_difference(&input) {
            continue;
        }
        compared += 1;
        taken += usize::from(!own_requests(&input).0.is_empty());
        if let Some(difference) = request_difference(&input).await {
            failures.push(format!("case {case}: {difference}"));
        }
    }
    none_differ(&failures, compared, "inputs");
    // Many inputs must still hold a request the own path serves (a third do), or the cases
    // test little but the ways to fail.
    assert!(
        taken * 4 > compared,
        "the own path served a request from only {taken} of {compared} inputs"
    );
}

#[tokio::test]
async fn the_seeds_are_served_alike_and_on_the_own_path_but_for_a_length_beside_chunks() {
    for seed in SEEDS {
        assert_eq!(request_difference(seed).await, None);
        let beside =
            seed.windows(15).any(|w| w == b"Content-Length:") && seed.ends_with(b"0\r\n\r\n");
        assert_eq!(
            own_requests(seed).0.is_empty(),
            beside,
            "{}",
            seed.escape_ascii()
        );
    }
}

#[tokio::test]
async fn the_response_seeds_are_read_alike_and_whole() {
    for seed in RESPONSE_SEEDS {
        for method in [Method::GET, Method::HEAD] {
            assert_eq!(response_difference(&method, seed).await, None);
            let own = own_response(&method, seed).expect("no deliberate difference");
            assert!(whole(&own), "{method} {}: {own}", seed.escape_ascii());
        }
    }
}

/// What the long runs found, each mended since: a CR in a chunk-size line, an empty element
/// in `Transfer-Encoding`, `close` beside `keep-alive` in HTTP/1.0, and `Connection` values
/// with a byte past ASCII (which hyper reads as saying nothing of the connection, and
/// rama's hop-by-hop removal read as naming nothing).
#[tokio::test]
async fn the_differences_long_runs_found_stay_mended() {
    for input in [
        &b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\r\nde\r\n0\r\n\r\n"[..],
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive,\xff\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(request_difference(input).await, None);
    }
    for input in [
        &b"HTTP/1.1 404 Not Found\r\nConnection: \xc1lose, x-a\r\nX-A: 1\r\nContent-Length: 4\r\n\r\ngone"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ex\xff\rt=1\r\nabc\r\n0\r\n\r\n",
    ] {
        assert_eq!(response_difference(&Method::GET, input).await, None);
    }
}

#[test]
fn status_lines_are_found_at_line_starts_only() {
    let answer =
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad\r\n\r\nx HTTP/1.1 500 \r\n";
    assert_eq!(statuses(answer), [200, 400]);
}
