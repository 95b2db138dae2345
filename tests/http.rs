//! HTTP: the forward proxy (`examples/http_proxy`) with real curl over 127.0.0.1:
//! absolute-form and `CONNECT` (a failed one the last answer on its connection, a target
//! checked), trailers both ways, `OPTIONS *`, a WebSocket upgrade in absolute-form (to `ws_echo`, raw frames),
//! `--proxy-user`, egress rules, upstream failures, bad input, the
//! header-read and upstream timeouts on kept-alive connections, and graceful shutdown with a
//! request in flight, and under load (HTTP/1.1 keep-alive clients and HTTP/2 connections with
//! streams side by side); and `CONNECT` over HTTP/2 with hyper's HTTP/2 client (curl 7.88
//! cannot send it).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use rama::target::Target;
use rama_e2e::{
    EchoOrigin, PATIENCE, Running, assert_access_line, bind_origin, closed_by_peer, closed_port,
    deaf_upstream, digest_origin, echo_line, h2_handshake, origin_thread, payload, plain, raw,
    read_head, send_until_stalled, sha256, spawn_origin, until,
    ws::{CLOSE, FIN, PING, PONG, RawWs},
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::Command,
    sync::{Notify, watch},
    time::timeout,
};
use tower::Layer;

/// What an origin does with each request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers 200 with the request head it received as the body.
    EchoHead,
    /// Reads the request and never answers.
    Silent,
    /// Closes the connection as soon as the request arrived.
    Close,
    /// Answers like `EchoHead`, one second after the request arrived.
    Slow,
}

/// An HTTP origin on 127.0.0.1; `arrived` is notified for each request head.
async fn origin(behaviour: Behaviour) -> (SocketAddr, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(Notify::new());
    let notify = arrived.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let notify = notify.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                notify.notify_one();
                match behaviour {
                    Behaviour::Silent => {
                        let _ = stream.read(&mut buf).await;
                        return;
                    }
                    Behaviour::Close => return,
                    Behaviour::Slow => tokio::time::sleep(Duration::from_secs(1)).await,
                    Behaviour::EchoHead => {}
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    head.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&head).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, arrived)
}

/// What curl saw: the status of the final response, the proxy's answer to `CONNECT` (0 when
/// there was none), the body, and the response headers.
#[derive(Debug)]
struct Curl {
    status: u16,
    connect: u16,
    body: String,
    headers: String,
}

async fn curl(args: &[&str]) -> Curl {
    let headers_file = tempfile_path();
    let options = ["-s", "--max-time", "20", "-D", &headers_file];
    let written = ["-w", "\n%{http_code} %{http_connect}"];
    let output = rama_e2e::curl(&[&options[..], &written, args].concat()).await;
    let [status, connect] = output.codes();
    let headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
    let _ = std::fs::remove_file(&headers_file);
    Curl {
        status,
        connect,
        body: output.body,
        headers: headers.to_ascii_lowercase(),
    }
}

fn tempfile_path() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}/curl-headers-{}-{n}",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    )
}

fn proxy(args: &[&str]) -> Running {
    Running::start_local("http_proxy", args)
}

/// Trailers pass the forward proxy both ways in absolute-form requests (the server's own path,
/// then hyper's after a large chunked upload; the client's own path to the origin), without
/// the fields no trailer may carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways_without_the_fields_no_trailer_may_carry() {
    let (origin, seen) = rama_e2e::trailer_origin(rama_e2e::ORIGIN_TRAILERS);
    let proxy = proxy(&[]);
    rama_e2e::assert_trailers_pass(proxy.addr, &format!("http://{origin}"), &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_and_connect_through_curl() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/hello");

    let got = curl(&[
        "-x",
        &x,
        "-H",
        "Connection: x-private",
        "-H",
        "X-Private: 1",
        &url,
    ])
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = got.body.to_ascii_lowercase();
    assert!(
        seen.starts_with("get /hello http/1.1"),
        "origin-form upstream: {seen}"
    );
    assert!(seen.contains("via: 1.1 rama"), "{seen}");
    assert!(
        !seen.contains("x-private"),
        "headers named by Connection go: {seen}"
    );
    assert!(!seen.contains("proxy-connection"), "{seen}");
    assert!(got.headers.contains("via: 1.1 rama"), "{}", got.headers);

    let got = curl(&["-p", "-x", &x, &url]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");
    assert!(
        !got.body.to_ascii_lowercase().contains("via:"),
        "a tunnel is bytes: {got:?}"
    );
    proxy.wait_for_log("http proxy: CONNECT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_gets_the_targets_host_and_a_bad_host_is_400() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/host");

    // curl puts its `-H Host` into the absolute-form request as given: the origin must still
    // get the target's (RFC 9112 3.2.2), the one the egress rules judged.
    let got = curl(&["-x", &x, "-H", "Host: other.example", &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = got.body.to_ascii_lowercase();
    let hosts: Vec<&str> = seen
        .lines()
        .filter(|line| line.starts_with("host:"))
        .map(str::trim_end)
        .collect();
    assert_eq!(hosts, [format!("host: {origin}")], "{seen}");

    // Without `Host` at all, the target's too.
    let got = curl(&["-x", &x, "-H", "Host:", &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        got.body
            .to_ascii_lowercase()
            .contains(&format!("host: {origin}\r\n")),
        "{got:?}"
    );

    let got = curl(&["-x", &x, "-H", "Host: a.example@other.example", &url]).await;
    assert_eq!(got.status, 400, "{got:?}");
    assert!(got.body.contains("not host[:port]"), "{got:?}");
    // curl sends one `Host` only; two take a raw client. The answer closes the connection.
    let twice = format!("GET {url} HTTP/1.1\r\nHost: {origin}\r\nHost: other.example\r\n\r\n");
    let answer = raw(proxy.addr, twice.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("more than one Host"), "{answer}");
    let log = plain(&proxy.wait_for_log("bad Host, answering 400").await);
    let line = log.lines().find(|l| l.contains("bad Host")).unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

/// A forward proxy (on a thread of its own) whose rules deny 10.0.0.0/8: a name has to be
/// resolved to be judged.
fn proxy_judging_addresses() -> SocketAddr {
    use rama::egress::{Cidr, Match, Rules};
    origin_thread(|listener| async move {
        let private = Cidr::new("10.0.0.0".parse().unwrap(), 8).unwrap();
        let rules = Rules::allow_by_default().deny(Match::cidr(private));
        let forward = rama::http::ForwardProxy::new().rules(rules);
        let stack = rama::http::Server::new().layer(forward.layer(Target::requested()));
        let _ = rama::tcp::Server::from_std(listener).serve(stack).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_rules_resolved_is_dialed_on_the_addresses_they_judged() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let x = format!("http://{}", proxy_judging_addresses());
    // The rules resolve `localhost` to judge it, and the client dials only what they judged
    // (in turn: where `localhost` is ::1 first, the origin listens on 127.0.0.1 only;
    // `tcp::connect_any`'s unit test covers the turn). The origin still gets the name.
    let url = format!("http://localhost:{}/judged", origin.port());
    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    let seen = got.body.to_ascii_lowercase();
    assert!(seen.starts_with("get /judged http/1.1"), "{seen}");
    assert!(
        seen.contains(&format!("host: localhost:{}\r\n", origin.port())),
        "the origin gets the name: {seen}"
    );
    let got = curl(&["-x", &x, "http://10.1.2.3/"]).await;
    assert_eq!(got.status, 403, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_user_is_checked_with_407() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&["--user", "alice:s3cret"]);
    let url = format!("http://{origin}/");
    let good = format!("http://alice:s3cret@{}", proxy.addr);
    let bad = format!("http://alice:wrong@{}", proxy.addr);
    let none = format!("http://{}", proxy.addr);

    let got = curl(&["-x", &good, &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        !got.body
            .to_ascii_lowercase()
            .contains("proxy-authorization"),
        "{got:?}"
    );
    let got = curl(&["-x", &good, "-p", &url]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");

    for x in [&bad, &none] {
        let got = curl(&["-x", x, &url]).await;
        assert_eq!(got.status, 407, "{got:?}");
        assert!(
            got.headers
                .contains("proxy-authenticate: basic realm=\"rama\""),
            "{got:?}"
        );
        let got = curl(&["-x", x, "-p", &url]).await;
        assert_eq!(got.connect, 407, "{got:?}");
    }
    let log = plain(&proxy.wait_for_log("authentication failed").await);
    assert!(log.contains("peer=127.0.0.1:"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_refused_closed_and_silent_upstreams() {
    let (denied, _) = origin(Behaviour::EchoHead).await;
    let (silent, _) = origin(Behaviour::Silent).await;
    let (closing, _) = origin(Behaviour::Close).await;
    let refused = closed_port();
    let deny = denied.port().to_string();
    let proxy = proxy(&["--deny-port", &deny, "--upstream-timeout", "1"]);
    let x = format!("http://{}", proxy.addr);

    let url = format!("http://{denied}/");
    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 403, "{got:?}");
    assert!(got.body.contains("denied"), "{got:?}");
    let got = curl(&["-x", &x, "-p", &url]).await;
    assert_eq!(got.connect, 403, "{got:?}");

    let url = format!("http://{refused}/");
    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 502, "{got:?}");
    assert!(got.body.contains("cannot connect"), "{got:?}");
    let got = curl(&["-x", &x, "-p", &url]).await;
    assert_eq!(got.connect, 502, "{got:?}");

    let got = curl(&["-x", &x, &format!("http://{closing}/")]).await;
    assert_eq!(got.status, 502, "{got:?}");

    let started = std::time::Instant::now();
    let got = curl(&["-x", &x, &format!("http://{silent}/")]).await;
    assert_eq!(got.status, 504, "{got:?}");
    assert!(got.body.contains("timed out"), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A client that closes while its request is in flight takes the upstream exchange with it,
/// as with nginx's and squid's defaults: the upstream connection is closed at once, not held
/// until the upstream answers or the upstream timeout; the access log says `abandoned`, 499.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_mid_request_takes_the_upstream_exchange_with_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        if !matches!(read_head(&mut stream).await, Ok(Some(_))) {
            return;
        }
        let _ = arrived_tx.send(());
        // Silent: the request is in flight until the proxy closes this connection.
        let read = stream.read(&mut [0u8; 64]).await;
        let _ = closed_tx.send(matches!(read, Ok(0) | Err(_)));
    });
    let proxy = proxy(&[]);
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET http://{origin}/wait HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    timeout(PATIENCE, arrived).await.unwrap().unwrap();
    drop(client);
    let closed = timeout(PATIENCE, closed)
        .await
        .expect("the upstream connection closed while the origin was still silent");
    assert!(closed.unwrap());
    let log = plain(&proxy.wait_for_log("abandoned").await);
    assert!(log.contains("status=499"), "{log}");
    assert!(log.contains("/wait"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_touches_no_one_else() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&["--header-read-timeout", "1"]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/");

    // A connection that stays open and well-behaved across all of it: a tunnel, which no
    // header-read timeout closes (a connection that sent nothing would be, a timeout after
    // it opened).
    let echo = EchoOrigin::start().await;
    let mut neighbour = TcpStream::connect(proxy.addr).await.unwrap();
    let connect = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", echo.addr);
    neighbour.write_all(connect.as_bytes()).await.unwrap();
    let head = timeout(PATIENCE, read_head(&mut neighbour)).await.unwrap();
    let head = head.unwrap().expect("the CONNECT answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let answer = raw(proxy.addr, b"GARBAGE\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let huge = format!(
        "GET {url} HTTP/1.1\r\nHost: {origin}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(proxy.addr, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A request line longer than the whole head may be is 414, as nginx and HAProxy answer.
    let long = format!(
        "GET {url}{} HTTP/1.1\r\nHost: {origin}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(proxy.addr, long.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");

    // Over the default count of 100 headers (hyper's own limit, the same number) is 431 too.
    let many: String = (0..101).map(|n| format!("X-H-{n}: 1\r\n")).collect();
    let answer = raw(
        proxy.addr,
        format!("GET {url} HTTP/1.1\r\nHost: {origin}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A body in a transfer coding besides chunked: 501 (RFC 9112 6.1, nginx's answer too),
    // and nothing forwarded; undone of its chunks alone, gzip would pass for the content.
    for codings in ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
        let coded = format!(
            "POST {url} HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: {codings}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = raw(proxy.addr, coded.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
        assert!(
            answer.contains("transfer-encoding is not chunked alone"),
            "{answer}"
        );
        assert!(!answer.contains("POST /"), "forwarded: {answer}");
    }

    let started = std::time::Instant::now();
    let answer = raw(proxy.addr, b"GET http://example.com/ HTTP/1.1\r\nHost: exa").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    proxy.wait_for_log("answering 408").await;
    let log = plain(&proxy.wait_for_log("connection failed").await);
    for error in [
        "invalid HTTP method",
        "message head is too large",
        "request line is longer than the head may be",
        "did not arrive in time",
        "answering 501",
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(error))
            .unwrap_or_else(|| panic!("{error}: {log}"));
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
    }

    let line = "still here\n";
    assert_eq!(echo_line(&mut neighbour, line).await.unwrap(), line);
    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
}

/// `Max-Forwards` (RFC 9110 7.6.2): an `OPTIONS` or `TRACE` that reached 0 is answered by the
/// proxy for the target (the origin never hears of it; a `TRACE` echoes what the proxy got,
/// its credentials and cookies left out), and one above 0 goes on with one hop less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards_0_is_answered_here_and_counted_down_otherwise() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&[]);
    let ask = |method: &str, hops: &str| {
        format!(
            "{method} http://{origin}/probe HTTP/1.1\r\nHost: {origin}\r\nMax-Forwards: {hops}\r\n\
             Cookie: secret=1\r\nX-Probe: yes\r\nConnection: close\r\n\r\n"
        )
    };
    let answer = raw(proxy.addr, ask("OPTIONS", "0").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("allow: get, head, post"),
        "{answer}"
    );
    assert!(!answer.contains("/probe"), "reached the origin: {answer}");

    let answer = raw(proxy.addr, ask("TRACE", "0").as_bytes()).await;
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(lower.contains("content-type: message/http"), "{answer}");
    assert!(
        answer.contains(&format!("TRACE http://{origin}/probe HTTP/1.1\r\n")),
        "{answer}"
    );
    assert!(lower.contains("x-probe: yes\r\n"), "{answer}");
    assert!(!lower.contains("secret"), "{answer}");

    // Above 0: forwarded, one less (the origin echoes the head it got).
    for method in ["TRACE", "OPTIONS"] {
        let answer = raw(proxy.addr, ask(method, "3").as_bytes()).await;
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("{} /probe http/1.1", method.to_ascii_lowercase())),
            "{answer}"
        );
        assert!(lower.contains("max-forwards: 2\r\n"), "{answer}");
    }
    // Other methods carry it untouched.
    let answer = raw(proxy.addr, ask("GET", "0").as_bytes()).await;
    assert!(
        answer.to_ascii_lowercase().contains("max-forwards: 0\r\n"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upload_is_400_and_not_the_upstreams_fault() {
    // The origin never answers, so the body's failure is what ends the request.
    let (silent, arrived) = origin(Behaviour::Silent).await;
    let proxy = proxy(&[]);
    let request = format!(
        "POST http://{silent}/up HTTP/1.1\r\nHost: {silent}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n"
    );
    let answer = raw(proxy.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("the request body failed"), "{answer}");
    // The connection ends after it (the rest of the body cannot be told from a next
    // request), and the answer says so.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert!(answer.contains("chunk"), "the cause is named: {answer}");
    timeout(PATIENCE, arrived.notified()).await.unwrap();
    let log = plain(
        &proxy
            .wait_for_log("the request body failed, answering 400")
            .await,
    );
    let line = log.lines().find(|l| l.contains("answering 400")).unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!log.contains("upstream failed"), "{log}");
}

/// Waits (bounded) until `proxy` logged a line with `needle`, and asserts that the line names
/// the client's address.
async fn assert_logged_with_peer(proxy: &Running, needle: &str) {
    let log = plain(&proxy.wait_for_log(needle).await);
    let line = log.lines().find(|l| l.contains(needle)).unwrap_or_default();
    assert!(line.contains("peer=127.0.0.1:"), "{needle}: {line}");
}

/// The one answer on a connection that must be the last: `status`, `Connection: close`, and
/// nothing after it.
fn assert_last_answer(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
}

/// A `CONNECT` that fails (`403` denied, `502` refused, `400` a target without a port) is
/// answered once, with `Connection: close`, and its connection closes, as squid does: the
/// bytes a client sent right behind it for the tunnel (optimistic data; here a request in
/// absolute-form) are never read as a request of their own, let alone forwarded. A `407`
/// keeps the connection, on which curl's `--proxy-anyauth` asks again with credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_the_last_answer_on_its_connection() {
    let (origin, arrived) = origin(Behaviour::EchoHead).await;
    let refused = closed_port();
    let denied = closed_port();
    let deny = denied.port().to_string();
    // A short header-read timeout: a connection left open fails the test in 2 s, not 30.
    let proxy = proxy(&["--deny-port", &deny, "--header-read-timeout", "2"]);
    for (target, status) in [
        (refused.to_string(), 502),
        (denied.to_string(), 403),
        ("127.0.0.1".to_owned(), 400),
    ] {
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n\
             GET http://{origin}/echo HTTP/1.1\r\nHost: y\r\n\r\n"
        );
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_last_answer(&answer, status);
    }
    let forwarded = timeout(Duration::from_millis(500), arrived.notified()).await;
    assert!(
        forwarded.is_err(),
        "the origin got the bytes behind a failed CONNECT"
    );

    let echo = EchoOrigin::start().await;
    let proxy = self::proxy(&["--user", "alice:s3cret"]);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let connect = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", echo.addr);
    stream
        .write_all(format!("{connect}\r\n").as_bytes())
        .await
        .unwrap();
    let head = timeout(PATIENCE, read_head(&mut stream)).await.unwrap();
    let head = head.unwrap().expect("the 407").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 407 "), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|length| length.trim().parse().ok())
        .expect("the 407's length");
    let mut body = vec![0u8; length];
    timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    // `alice:s3cret`, on the same connection.
    let again = format!("{connect}Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n");
    stream.write_all(again.as_bytes()).await.unwrap();
    let head = timeout(PATIENCE, read_head(&mut stream)).await.unwrap();
    let head = head.unwrap().expect("the answer after the 407");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let line = "through after a 407\n";
    assert_eq!(echo_line(&mut stream, line).await.unwrap(), line);
}

/// A `CONNECT` target is authority-form, `host:port` (RFC 9112 3.2.3), with a port a
/// connection can go to: an absolute URL (which was tunnelled to its authority) and port 0
/// (which was dialed) are `400`s that say what is wrong, nothing is dialed, and the
/// connection closes after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_target_is_host_and_port() {
    let echo = EchoOrigin::start().await;
    let proxy = proxy(&["--header-read-timeout", "2"]);
    for (target, says) in [
        (format!("http://{}/", echo.addr), "authority-form"),
        (format!("http://{}", echo.addr), "authority-form"),
        ("127.0.0.1:0".to_owned(), "port 0"),
    ] {
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_last_answer(&answer, 400);
        assert!(answer.contains(says), "{target}: {answer}");
    }
    assert_eq!(echo.accepted(), 0);
    assert_logged_with_peer(&proxy, "bad CONNECT").await;
}

/// A `CONNECT` has no content (RFC 9110 9.3.6): one whose head announces some (a
/// `Content-Length` but `0`, a `Transfer-Encoding`) is `400`, nothing dialed, the connection
/// closed after it; hyper read that many of the tunnel's bytes as a body, which went nowhere.
/// `Content-Length: 0` takes nothing from the tunnel and opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_with_content_is_400() {
    let echo = EchoOrigin::start().await;
    let proxy = proxy(&["--header-read-timeout", "2"]);
    let tunnelled = "hello through\n";
    for framing in [
        format!("Content-Length: {}", tunnelled.len()),
        "Transfer-Encoding: chunked".to_owned(),
    ] {
        let request = format!(
            "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n{framing}\r\n\r\n{tunnelled}",
            echo.addr
        );
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_last_answer(&answer, 400);
        assert!(answer.contains("no content"), "{framing}: {answer}");
    }
    assert_eq!(echo.accepted(), 0);
    assert_logged_with_peer(&proxy, "bad CONNECT").await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let connect = format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nContent-Length: 0\r\n\r\n",
        echo.addr
    );
    stream.write_all(connect.as_bytes()).await.unwrap();
    let head = timeout(PATIENCE, read_head(&mut stream)).await.unwrap();
    let head = head.unwrap().expect("the 200");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(echo_line(&mut stream, tunnelled).await.unwrap(), tunnelled);
}

/// `OPTIONS http://host:port`, absolute-form with no path, asks about the server: the origin
/// gets it in asterisk-form, `OPTIONS *` (RFC 9112 3.2.4: the last proxy sends it so). With a
/// path or a query it is about a resource and keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_without_a_path_reaches_the_origin_as_asterisk_form() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let proxy = proxy(&[]);
    for (target, sent) in [
        (format!("http://{origin}"), "OPTIONS * HTTP/1.1\r\n"),
        (format!("http://{origin}/"), "OPTIONS / HTTP/1.1\r\n"),
        (format!("http://{origin}?q"), "OPTIONS /?q HTTP/1.1\r\n"),
    ] {
        let request =
            format!("OPTIONS {target} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(sent), "{target}: {answer}");
    }
}

/// A WebSocket opened with an upgrade request in absolute-form through the forward proxy
/// (`GET http://origin/raw`, `Connection: Upgrade`, `Upgrade: websocket`) reaches the origin
/// with its upgrade headers (without them `ws_echo` answers `426`), and once the origin
/// switched, frames go both ways until the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_in_absolute_form_is_relayed() {
    let echo = Running::start_local("ws_echo", &[]);
    let proxy = proxy(&[]);
    let mut ws = RawWs::through_proxy(proxy.addr, echo.addr).await;
    assert_eq!(
        ws.echo("hello through the forward proxy").await,
        "hello through the forward proxy"
    );
    let large = "x".repeat(100_000);
    assert_eq!(ws.echo(&large).await, large);
    ws.send(FIN | PING, b"still there?", true).await;
    assert_eq!(ws.recv().await, (PONG, b"still there?".to_vec()));
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    ws.send(FIN | CLOSE, &close, true).await;
    assert_eq!(ws.close_code().await, 4000);
    // The relay ends once both sides closed.
    drop(ws);
    assert_logged_with_peer(&proxy, "upgraded connection closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_and_upstream_timeouts_restart_with_each_request_on_kept_alive_connections() {
    // A keep-alive origin and an upstream timeout as short: the requests share one pooled
    // upstream connection, whose response timer must move the same way.
    let (origin, accepted) = counting_origin(false).await;
    let proxy = proxy(&["--header-read-timeout", "1", "--upstream-timeout", "1"]);
    let request = format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    let mut stream = BufReader::new(TcpStream::connect(proxy.addr).await.unwrap());
    // Ten requests 300 ms apart: the connection lives three timeouts long, never waiting for a
    // head as long as one (the delays are what is tested, not a wait for readiness).
    for n in 0..10 {
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let answer = timeout(PATIENCE, read_response(&mut stream)).await.unwrap();
        assert_eq!(answer.map(|(status, _)| status), Ok(200), "request {n}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection for all"
    );
    // Then idle: a timeout after the last answer (300 ms of it passed already) the connection
    // closes without a word, as nginx's and HAProxy's do: a 408 could cross a request sent at
    // that moment and pass for its answer.
    let waited = closed_without_a_word(stream.get_mut()).await;
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A new connection that never sends a byte is closed a timeout after it opened, not held
    // until the transport's idle timeout (5 minutes in the example).
    let mut unused = TcpStream::connect(proxy.addr).await.unwrap();
    let waited = closed_without_a_word(&mut unused).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The same on a connection hyper serves: idle, a bare close; half a next head, the 408.
    // A chunked upload whose body is not all there with its head hands the connection over
    // from the own path (one that came whole in a single read would stay there, and end the
    // same). Small: a large one's body would still be read after the answer (this origin
    // does not wait for it), and a read after the answer tells of a next request.
    let upload = format!(
        "POST http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: chunked\r\n\r\n\
         2\r\nhi\r\n0\r\n"
    );
    for half in [&b""[..], b"GET / HTTP/1.1\r\nHo"] {
        let mut stream = BufReader::new(TcpStream::connect(proxy.addr).await.unwrap());
        stream.get_mut().write_all(upload.as_bytes()).await.unwrap();
        stream.get_mut().write_all(b"\r\n").await.unwrap();
        let answer = timeout(PATIENCE, read_response(&mut stream)).await.unwrap();
        assert_eq!(answer.map(|(status, _)| status), Ok(200));
        stream.get_mut().write_all(half).await.unwrap();
        if half.is_empty() {
            closed_without_a_word(stream.get_mut()).await;
            continue;
        }
        let answer = timeout(PATIENCE, read_response(&mut stream)).await.unwrap();
        assert_eq!(answer.map(|(status, _)| status), Ok(408));
    }
    // An idle connection is not a slow client: no warning, no failure; half a head is.
    let log = proxy.wait_for_log("answering 408").await;
    let (idle, _) = log.split_once("did not arrive in time").unwrap();
    assert_eq!(
        idle.matches("idle past the header-read timeout").count(),
        3,
        "{log}"
    );
    assert!(!idle.contains("connection failed"), "{log}");
}

/// Waits for the proxy to close `stream` and says how long that took; fails if it wrote
/// anything first.
async fn closed_without_a_word(stream: &mut TcpStream) -> Duration {
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert_eq!(
        read.unwrap().unwrap(),
        0,
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_the_request_in_flight_finish() {
    let (origin, arrived) = origin(Behaviour::Slow).await;
    let mut proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/slow");
    let in_flight = tokio::spawn(async move { curl(&["-x", &x, &url]).await });
    timeout(PATIENCE, arrived.notified())
        .await
        .expect("request reached the origin");
    assert!(proxy.terminate().await, "the proxy exits cleanly");
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200, "{got:?}");
    assert!(got.body.starts_with("GET /slow"), "{got:?}");
}

/// The body the load origin answers for `path`: the path, then 16 KiB of padding, so that a
/// cut-short answer cannot pass for a full one.
fn load_body(path: &str) -> Vec<u8> {
    let mut body = format!("{path}\n").into_bytes();
    body.resize(body.len() + 16 * 1024, b'x');
    body
}

/// A keep-alive HTTP/1.1 origin on the support runtime: each answer (200, [`load_body`]) comes
/// `delay` after its request, and never while held.
struct LoadOrigin {
    addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    /// Answers let through; `hold` changes under its lock.
    released: Arc<std::sync::Mutex<usize>>,
    hold: watch::Sender<bool>,
}

impl LoadOrigin {
    fn start(delay: Duration) -> Self {
        let (listener, addr) = bind_origin();
        let arrived = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(std::sync::Mutex::new(0));
        let (hold, _) = watch::channel(false);
        let (count, releases, held) = (arrived.clone(), released.clone(), hold.clone());
        spawn_origin(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (count, released, mut held) =
                    (count.clone(), releases.clone(), held.subscribe());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let path = line.split(' ').nth(1).unwrap_or("?").to_owned();
                        loop {
                            let mut header = String::new();
                            match stream.read_line(&mut header).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) if header == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        loop {
                            if held.wait_for(|held| !*held).await.is_err() {
                                return;
                            }
                            // Counted under the lock `hold` takes: once `hold(true)` returns,
                            // no answer goes out uncounted.
                            let mut released = released.lock().unwrap();
                            if !*held.borrow() {
                                *released += 1;
                                break;
                            }
                        }
                        let body = load_body(&path);
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        let stream = stream.get_mut();
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            arrived,
            released,
            hold,
        }
    }

    /// Requests that reached the origin so far.
    fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Answers the origin let through so far (written, or being written).
    fn released(&self) -> usize {
        *self.released.lock().unwrap()
    }

    fn hold(&self, hold: bool) {
        let _released = self.released.lock().unwrap();
        self.hold.send_replace(hold);
    }
}

/// Reads one response (status line, headers, `content-length` body) off `stream`.
async fn read_response(stream: &mut BufReader<TcpStream>) -> Result<(u16, Vec<u8>), String> {
    let mut line = String::new();
    stream
        .read_line(&mut line)
        .await
        .map_err(|e| format!("status line: {e}"))?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line: {line:?}"))?;
    let mut length = None;
    loop {
        let mut header = String::new();
        match stream.read_line(&mut header).await {
            Ok(0) => return Err("the proxy closed mid-head".into()),
            Err(e) => return Err(format!("head: {e}")),
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0u8; length.ok_or("no content-length")?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("body cut short: {e}"))?;
    Ok((status, body))
}

/// What the clients of the load share: where they send, and the counts the test watches.
#[derive(Clone)]
struct Load {
    proxy: SocketAddr,
    origin: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

impl Load {
    /// Counts a request about to be sent; `false` (and no count) once the test said stop.
    /// Counted before looking at `stop`: once the test sets `stop` and then reads `sent`,
    /// every request it does not see is one that is never sent.
    fn one_more(&self) -> bool {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.stop.load(Ordering::SeqCst) {
            self.sent.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Checks the answer to `path` (200 and the whole [`load_body`]) and counts it.
    fn answer(&self, path: &str, status: u16, body: &[u8]) -> Result<(), String> {
        if status != 200 || body != load_body(path) {
            return Err(format!("{path}: {status}, {} body bytes", body.len()));
        }
        self.answered.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One client of the load: absolute-form requests, one after the other on one keep-alive
/// connection, until `stop`; then it expects the proxy to close the idle connection (it does
/// so only when shutting down). Returns how many full 200 answers it got; any other outcome
/// is an error.
async fn load_client(load: Load, id: usize) -> Result<usize, String> {
    let stream = TcpStream::connect(load.proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream = BufReader::new(stream);
    let origin = load.origin;
    let mut done = 0;
    while load.one_more() {
        let path = format!("/load/{id}/{done}");
        let request = format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{path}: send: {e}"))?;
        let (status, body) = timeout(PATIENCE, read_response(&mut stream))
            .await
            .map_err(|_| format!("{path}: no answer in time"))?
            .map_err(|e| format!("{path}: {e}"))?;
        load.answer(&path, status, &body)?;
        done += 1;
    }
    let mut rest = Vec::new();
    match timeout(PATIENCE, stream.read_to_end(&mut rest)).await {
        Ok(Ok(0)) => Ok(done),
        Ok(Ok(n)) => Err(format!("{n} stray bytes after the last answer")),
        Ok(Err(e)) => Err(format!("the idle connection did not close cleanly: {e}")),
        Err(_) => Err("the idle connection was never closed".into()),
    }
}

/// [`load_client`] over HTTP/2 (prior knowledge): `streams` such loops side by side on one
/// connection, each with its own paths. After the last answer it expects the proxy to end the
/// connection cleanly (`GOAWAY`, then the close) while the client still holds it.
async fn load_client_h2(load: Load, id: usize, streams: usize) -> Result<usize, String> {
    let stream = TcpStream::connect(load.proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (send, connection) = h2_handshake(stream).await;
    let loops: Vec<_> = (0..streams)
        .map(|s| {
            let (mut send, load) = (send.clone(), load.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while load.one_more() {
                    let path = format!("/load/h2-{id}-{s}/{done}");
                    let request = http::Request::get(format!("http://{}{path}", load.origin))
                        .body(Empty::new())
                        .unwrap();
                    let response = timeout(PATIENCE, send.send_request(request))
                        .await
                        .map_err(|_| format!("{path}: no answer in time"))?
                        .map_err(|e| format!("{path}: {e}"))?;
                    let status = response.status().as_u16();
                    let body = timeout(PATIENCE, response.into_body().collect())
                        .await
                        .map_err(|_| format!("{path}: no body in time"))?
                        .map_err(|e| format!("{path}: body: {e}"))?
                        .to_bytes();
                    load.answer(&path, status, &body)?;
                    done += 1;
                }
                Ok::<_, String>(done)
            })
        })
        .collect();
    let mut done = 0;
    for stream in loops {
        done += stream
            .await
            .map_err(|e| format!("a stream's task: {e}"))??;
    }
    let ended = timeout(PATIENCE, connection)
        .await
        .map_err(|_| "the proxy never ended the HTTP/2 connection".to_owned())?;
    drop(send);
    match ended {
        Ok(Ok(())) => Ok(done),
        Ok(Err(e)) => Err(format!("the HTTP/2 connection did not end cleanly: {e}")),
        Err(e) => Err(format!("the connection task: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_fails_no_request() {
    const CLIENTS: usize = 48;
    // Besides the HTTP/1.1 clients: HTTP/2 connections with this many streams in flight each.
    const H2_CLIENTS: usize = 4;
    const H2_STREAMS: usize = 8;
    let origin = LoadOrigin::start(Duration::from_millis(100));
    let mut proxy = proxy(&[]);
    let load = Load {
        proxy: proxy.addr,
        origin: origin.addr,
        stop: Arc::new(AtomicBool::new(false)),
        sent: Arc::new(AtomicUsize::new(0)),
        answered: Arc::new(AtomicUsize::new(0)),
    };
    let (stop, sent, answered) = (&load.stop, &load.sent, &load.answered);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(load_client(load.clone(), id)))
        .chain((0..H2_CLIENTS).map(|id| tokio::spawn(load_client_h2(load.clone(), id, H2_STREAMS))))
        .collect();

    // A stream of requests: a few rounds of every client answered.
    until("three rounds of load answered", || {
        answered.load(Ordering::SeqCst) >= 3 * (CLIENTS + H2_CLIENTS * H2_STREAMS)
    })
    .await;
    // Freeze the origin, stop sending, and wait until every request sent is at the origin and
    // every answer let through before the hold has reached its client: all the others are in
    // flight through the proxy when the signal comes, and none is answered until the release.
    origin.hold(true);
    stop.store(true, Ordering::SeqCst);
    until("every request sent reached the origin", || {
        origin.arrived() == sent.load(Ordering::SeqCst)
            && answered.load(Ordering::SeqCst) == origin.released()
    })
    .await;
    let in_flight = sent.load(Ordering::SeqCst) - answered.load(Ordering::SeqCst);
    println!(
        "SIGTERM with {in_flight} requests in flight ({} answered before)",
        answered.load(Ordering::SeqCst)
    );
    assert!(
        in_flight >= (CLIENTS + H2_CLIENTS * H2_STREAMS) / 2,
        "only {in_flight} in flight"
    );

    proxy.send_sigterm();
    // New connections are refused while the held requests keep the proxy draining.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(proxy.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Racing the listener's close: accepted just before, or reset with it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(_) => {}
            Err(e) => panic!("connecting after the signal: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy kept accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        proxy.is_running(),
        "the proxy exited with requests in flight"
    );
    assert_eq!(
        answered.load(Ordering::SeqCst) + in_flight,
        sent.load(Ordering::SeqCst)
    );

    origin.hold(false);
    let mut failures = Vec::new();
    let mut completed = 0;
    for client in clients {
        match timeout(PATIENCE, client)
            .await
            .expect("a client hung")
            .unwrap()
        {
            Ok(n) => completed += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "failed: {failures:#?}");
    assert_eq!(completed, sent.load(Ordering::SeqCst));
    assert!(proxy.wait_exit().await, "the proxy exits cleanly");
    // No line at level ERROR (h2's debug lines name `NO_ERROR` frames).
    let log = plain(&proxy.stderr());
    assert!(!log.lines().any(|l| l.contains(" ERROR ")), "{log}");
}

/// What [`echo_three_lines`] sends, and an echo gives back.
const THREE_LINES: [&str; 3] = [
    "line 0 through h2\n",
    "line 1 through h2\n",
    "line 2 through h2\n",
];

/// Sends [`THREE_LINES`] one at a time through `tunnel` to an echo origin and reads each back,
/// then half-closes and expects the origin's close; what came back.
async fn echo_three_lines(mut tunnel: TokioIo<hyper::upgrade::Upgraded>) -> Vec<String> {
    let mut lines = Vec::new();
    for line in THREE_LINES {
        tunnel.write_all(line.as_bytes()).await.unwrap();
        let mut back = vec![0u8; line.len()];
        timeout(PATIENCE, tunnel.read_exact(&mut back))
            .await
            .expect("the echo in time")
            .unwrap();
        lines.push(String::from_utf8(back).unwrap());
    }
    tunnel.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(PATIENCE, tunnel.read_to_end(&mut rest))
        .await
        .expect("the echo origin closed after the half-close")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    lines
}

/// Opens a tunnel to `to` with `CONNECT` on one stream of an HTTP/2 connection: the tunnel,
/// or the status the proxy answered instead.
async fn h2_connect(
    send: &mut SendRequest<Empty<Bytes>>,
    to: SocketAddr,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, (u16, String)> {
    let request = http::Request::connect(to.to_string())
        .body(Empty::new())
        .unwrap();
    let response = timeout(PATIENCE, send.send_request(request))
        .await
        .expect("the proxy answered CONNECT in time")
        .expect("the CONNECT stream");
    let status = response.status().as_u16();
    if status != 200 {
        let body = timeout(PATIENCE, response.into_body().collect())
            .await
            .expect("the answer's body in time")
            .expect("the answer's body")
            .to_bytes();
        return Err((status, String::from_utf8_lossy(&body).into_owned()));
    }
    let upgraded = timeout(PATIENCE, hyper::upgrade::on(response))
        .await
        .expect("the tunnel opened in time")
        .expect("the tunnel");
    Ok(TokioIo::new(upgraded))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_http2_carries_tunnels_side_by_side() {
    let echo = EchoOrigin::start().await;
    const REPLY: usize = 1 << 20;
    let digest = digest_origin(REPLY).await;
    let (head_origin, _) = origin(Behaviour::EchoHead).await;
    let (denied, _) = origin(Behaviour::EchoHead).await;
    let deny = denied.port().to_string();
    let proxy = proxy(&["--deny-port", &deny]);

    // HTTP/2 with prior knowledge over plain TCP: http::Server tells it by the preface.
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (send, connection) = h2_handshake(stream).await;

    // Two tunnels at once on the one connection: an echo, and 4 MiB up then 1 MiB down,
    // checksummed, ended by the client's half-close (END_STREAM on its stream).
    let up = payload(4 << 20, 11);
    let (echoed, digested) = tokio::join!(
        async {
            let tunnel = h2_connect(&mut send.clone(), echo.addr)
                .await
                .expect("CONNECT to the echo origin");
            echo_three_lines(tunnel).await
        },
        async {
            let mut tunnel = h2_connect(&mut send.clone(), digest)
                .await
                .expect("CONNECT to the digest origin");
            let (mut read, mut write) = tokio::io::split(&mut tunnel);
            let (written, got) = tokio::join!(
                async {
                    write.write_all(&up).await?;
                    write.shutdown().await
                },
                async {
                    let mut got = Vec::new();
                    timeout(PATIENCE, read.read_to_end(&mut got))
                        .await
                        .expect("the digest origin answered in time")
                        .map(|_| got)
                }
            );
            written.expect("the upload");
            got.expect("the download")
        }
    );
    assert_eq!(echoed, THREE_LINES);
    assert_eq!(digested.len(), 32 + REPLY);
    assert_eq!(
        digested[..32],
        sha256(&up),
        "the origin got every byte sent"
    );
    assert!(
        digested[32..] == payload(REPLY, 7)[..],
        "the reply came back intact"
    );

    // A denied destination is 403 on its stream, and the connection carries on: a third tunnel
    // and a plain request (every HTTP/2 request names its authority, like absolute-form).
    let (status, body) = h2_connect(&mut send.clone(), denied)
        .await
        .expect_err("CONNECT to a denied port fails");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("denied"), "{body}");
    let mut tunnel = h2_connect(&mut send.clone(), echo.addr)
        .await
        .expect("a tunnel after the refusal");
    let mut stream = TcpStream::connect(echo.addr).await.unwrap();
    assert_eq!(
        echo_line(&mut stream, "direct\n").await.unwrap(),
        "direct\n"
    );
    tunnel.write_all(b"again\n").await.unwrap();
    let mut back = [0u8; 6];
    timeout(PATIENCE, tunnel.read_exact(&mut back))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(&back, b"again\n");
    let request = http::Request::get(format!("http://{head_origin}/over-h2"))
        .body(Empty::new())
        .unwrap();
    let response = timeout(PATIENCE, send.clone().send_request(request))
        .await
        .expect("an answer in time")
        .expect("the GET stream");
    assert_eq!(response.status(), 200);
    let head = response.into_body().collect().await.unwrap().to_bytes();
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("get /over-h2 http/1.1"), "{head}");
    assert!(head.contains("via: 2 rama"), "{head}");
    drop((tunnel, send));
    timeout(PATIENCE, connection)
        .await
        .expect("the connection ended once the client let go")
        .unwrap()
        .expect("a clean end");
    assert!(echo.accepted() >= 2);
}

/// A certificate for `http_proxy --tls-cert` on 127.0.0.1, issued by a CA of its own, in a
/// scratch directory removed on drop.
struct ProxyCert {
    ca: rama::tls::dev::Ca,
    dir: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl ProxyCert {
    fn issue() -> Self {
        let ca = rama::tls::dev::Ca::generate("rama test CA").unwrap();
        let dir = std::path::PathBuf::from(tempfile_path());
        let (cert, key) = ca
            .issue_server(&["127.0.0.1"])
            .unwrap()
            .write(&dir, "proxy")
            .unwrap();
        Self { ca, dir, cert, key }
    }

    /// `http_proxy` serving TLS with this certificate, `args` after.
    fn proxy(&self, args: &[&str]) -> Running {
        let tls = [
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ];
        proxy(&[&tls[..], args].concat())
    }

    /// A client that trusts the CA and offers `alpn`.
    fn connector(&self, alpn: &str) -> rama::tls::Connector {
        rama::tls::Connector::builder()
            .ca_pem(self.ca.cert_pem().as_bytes())
            .unwrap()
            .alpn([alpn])
            .build()
            .unwrap()
    }
}

impl Drop for ProxyCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for the proxy's line saying the client at `peer` went away, and asserts that no line
/// calls that connection failed: what clients do to kept-alive connections is no failure.
async fn assert_gone_quietly(proxy: &Running, peer: SocketAddr) {
    let needle = format!("peer={peer}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = plain(&proxy.stderr());
        let mine: Vec<&str> = log.lines().filter(|l| l.contains(&needle)).collect();
        assert!(
            !mine.iter().any(|l| l.contains("connection failed")),
            "{mine:#?}"
        );
        if mine.iter().any(|l| l.contains("the client went away")) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no word of {peer} going away: {mine:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a response, which must be a `200` with a `content-length`, to its last byte.
async fn assert_answered<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    let head = timeout(PATIENCE, read_head(stream))
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = (head.lines())
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|value| value.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0; length];
    timeout(PATIENCE, stream.read_exact(&mut body))
        .await
        .expect("the body in time")
        .unwrap();
}

/// A client that resets its kept-alive connection after its answer (HTTP/1.1 on the server's
/// own path, HTTP/2 on hyper's), or closes TLS without `close_notify` (as browsers and most
/// clients do), is logged as gone at `debug`, not as a failed connection at `warn`, as nginx
/// logs it at `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_drop_kept_alive_connections_are_no_failure() {
    let (origin, _) = origin(Behaviour::EchoHead).await;
    let request = format!("GET http://{origin}/kept HTTP/1.1\r\nhost: {origin}\r\n\r\n");
    let proxy = proxy(&[]);

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_answered(&mut stream).await;
    let me = stream.local_addr().unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    assert_gone_quietly(&proxy, me).await;

    // h2's own client, whose connection future owns the socket: dropping it resets the
    // connection there and then (hyper's drives the socket from a task of its own, and ends
    // it with a GOAWAY).
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    stream.set_zero_linger().unwrap();
    let (send, connection) = timeout(PATIENCE, h2::client::handshake(stream))
        .await
        .expect("the HTTP/2 handshake in time")
        .unwrap();
    let driving = tokio::spawn(connection);
    let h2_request = http::Request::get(format!("http://{origin}/kept-h2"))
        .body(())
        .unwrap();
    let mut send = send.ready().await.unwrap();
    let (response, _) = send.send_request(h2_request, true).unwrap();
    let response = timeout(PATIENCE, response)
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    driving.abort();
    let _ = driving.await;
    assert_gone_quietly(&proxy, me).await;

    let cert = ProxyCert::issue();
    let tls_proxy = cert.proxy(&[]);
    let tcp = TcpStream::connect(tls_proxy.addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let host = rama::Host::Ip(tls_proxy.addr.ip());
    let mut tls = timeout(PATIENCE, cert.connector("http/1.1").connect(&host, tcp))
        .await
        .expect("the TLS handshake in time")
        .expect("the TLS handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    assert_answered(&mut tls).await;
    // Dropped without `shutdown`: no `close_notify`, the TCP connection just closes.
    drop(tls);
    assert_gone_quietly(&tls_proxy, me).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_http2_on_tls_chosen_by_alpn() {
    let echo = EchoOrigin::start().await;
    let (head_origin, _) = origin(Behaviour::EchoHead).await;
    let cert = ProxyCert::issue();
    let ca_file = cert.dir.join("ca.pem");
    std::fs::write(&ca_file, cert.ca.cert_pem()).unwrap();
    let proxy = cert.proxy(&[]);

    // h2 over TLS: the client offers only h2, the proxy's ALPN picks it, and http::Server
    // serves HTTP/2 because of the ALPN fact (no preface sniffing on TLS).
    let connector = cert.connector("h2");
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let tls = timeout(
        PATIENCE,
        connector.connect(&rama::Host::Ip(proxy.addr.ip()), tcp),
    )
    .await
    .expect("the TLS handshake in time")
    .expect("the TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, connection) = h2_handshake(tls).await;
    let tunnel = h2_connect(&mut send, echo.addr)
        .await
        .expect("CONNECT over h2 on TLS");
    assert_eq!(echo_three_lines(tunnel).await, THREE_LINES);
    drop(send);
    timeout(PATIENCE, connection)
        .await
        .expect("the connection ended once the client let go")
        .unwrap()
        .expect("a clean end");

    // The same port speaks HTTP/1.1 over TLS to a client that offers only that (curl's
    // HTTPS proxy support), CONNECT and absolute-form alike.
    let x = format!("https://{}", proxy.addr);
    let ca_arg = ca_file.to_str().unwrap();
    let url = format!("http://{head_origin}/over-tls");
    let got = curl(&["--proxy-cacert", ca_arg, "-x", &x, "-p", &url]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");
    assert!(got.body.starts_with("GET /over-tls"), "{got:?}");
    let got = curl(&["--proxy-cacert", ca_arg, "-x", &x, &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        got.body.to_ascii_lowercase().contains("via: 1.1 rama"),
        "{got:?}"
    );

    // A client that picks h2 and then sends nothing, not even the preface, is closed by the
    // idle check a timeout later, without a word, as an idle HTTP/1.1 connection is; not held
    // until the transport's idle timeout (5 minutes in the example).
    let idle_proxy = cert.proxy(&["--header-read-timeout", "1"]);
    let tcp = TcpStream::connect(idle_proxy.addr).await.unwrap();
    let host = rama::Host::Ip(idle_proxy.addr.ip());
    let mut tls = timeout(PATIENCE, connector.connect(&host, tcp))
        .await
        .expect("the TLS handshake in time")
        .expect("the TLS handshake");
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    // The drop comes without TLS's close_notify: an error or the end, either way in time.
    let _ = timeout(PATIENCE, tls.read_to_end(&mut sink))
        .await
        .expect("closed in time");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let log = idle_proxy
        .wait_for_log("idle past the header-read timeout")
        .await;
    assert!(!log.contains("connection failed"), "{log}");
}

/// How the client ends a tunnel the upstream stopped reading.
#[derive(Debug, Clone, Copy)]
enum ClientEnd {
    /// `RST_STREAM` on the tunnel's stream; the connection stays.
    ResetStream,
    /// The whole HTTP/2 connection goes (its TCP connection closed).
    CloseConnection,
}

/// A tunnel opened over HTTP/2 with the `h2` crate (raw streams, resets), answered `200`.
struct H2Tunnel {
    /// The client's address, as the proxy's log names it.
    me: SocketAddr,
    /// The connection's task.
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
    /// The connection's handle (dropping every handle ends the connection).
    client: h2::client::SendRequest<Bytes>,
    /// The proxy's answer; its body is what the upstream sends.
    response: http::Response<h2::RecvStream>,
    /// The stream's sending half: what goes to the upstream.
    send: h2::SendStream<Bytes>,
}

/// Opens a `CONNECT` to `upstream` through the proxy at `proxy` over HTTP/2.
async fn h2_tunnel(proxy: SocketAddr, upstream: SocketAddr) -> H2Tunnel {
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let (client, connection) = timeout(PATIENCE, h2::client::handshake(tcp))
        .await
        .expect("the HTTP/2 handshake in time")
        .expect("the HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = timeout(PATIENCE, client.ready())
        .await
        .expect("the connection ready in time")
        .unwrap();
    let request = http::Request::connect(upstream.to_string())
        .body(())
        .unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    let response = timeout(PATIENCE, response)
        .await
        .expect("the proxy answered CONNECT in time")
        .expect("the CONNECT stream");
    assert_eq!(response.status(), 200);
    H2Tunnel {
        me,
        connection,
        client,
        response,
        send,
    }
}

/// Opens a tunnel through the proxy over HTTP/2 (the `h2` crate: raw streams, resets) to an
/// upstream that never reads, sends until the proxy takes no more (the upstream's buffer, the
/// proxy's send buffer, the relay's buffer and the stream's window all full), then ends the
/// tunnel as `end` says; the upstream must see its connection closed within seconds, well
/// before the proxy's idle timeout (5 minutes).
async fn a_stalled_h2_tunnel_ended_by_the_client_closes_its_upstream(end: ClientEnd) {
    let (upstream, accepted) = deaf_upstream().await;
    let proxy = proxy(&[]);
    let H2Tunnel {
        me,
        connection,
        client,
        response: _,
        send: mut tunnel,
    } = h2_tunnel(proxy.addr, upstream).await;
    let upstream_side = timeout(PATIENCE, accepted)
        .await
        .expect("the proxy dialed the upstream")
        .unwrap();

    let sent = send_until_stalled(&mut tunnel, Bytes::from(vec![b'x'; 64 << 10])).await;

    match end {
        ClientEnd::ResetStream => tunnel.send_reset(h2::Reason::CANCEL),
        ClientEnd::CloseConnection => {
            connection.abort();
            let _ = connection.await;
            drop((tunnel, client));
        }
    }
    timeout(Duration::from_secs(3), closed_by_peer(&upstream_side))
        .await
        .unwrap_or_else(|_| {
            // The proxy's own lines, without h2's line per frame.
            let log = plain(&proxy.stderr());
            let log: Vec<&str> = log.lines().filter(|l| !l.contains("h2::")).collect();
            panic!(
                "{end:?}: the upstream's connection still open 3 s after {sent} bytes:\n{}",
                log.join("\n")
            )
        });
    // With a RST (RFC 9113 8.5), not a FIN waiting behind the bytes the upstream never read.
    assert_eq!(
        upstream_side
            .take_error()
            .unwrap()
            .map(|error| error.kind()),
        Some(std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    let line = proxy.wait_for_line("relay reset by the client").await;
    assert_access_line(&line, me, upstream);
    let log = proxy.stderr();
    assert!(!log.contains("tunnel failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_tunnel_reset_by_its_client_closes_its_stalled_upstream_at_once() {
    a_stalled_h2_tunnel_ended_by_the_client_closes_its_upstream(ClientEnd::ResetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_tunnel_whose_client_connection_goes_closes_its_stalled_upstream_at_once() {
    a_stalled_h2_tunnel_ended_by_the_client_closes_its_upstream(ClientEnd::CloseConnection).await;
}

/// An upstream on 127.0.0.1 that sends `hello` on the one connection it accepts, then, once
/// told (the client has the bytes), closes it with a RST, not a FIN.
async fn hello_then_reset() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (got_hello, hello_arrived) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let _ = hello_arrived.await;
        stream.set_zero_linger().unwrap();
    });
    (upstream, got_hello)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_resets_its_h2_tunnel_has_the_stream_reset_not_ended() {
    // RFC 9113 8.5: a TCP connection to the target that fails resets the `CONNECT` stream.
    // Ended with `END_STREAM` (as a FIN is passed on) the client took a cut tunnel for a
    // finished one.
    let (upstream, got_hello) = hello_then_reset().await;
    let proxy = proxy(&[]);
    let tunnel = h2_tunnel(proxy.addr, upstream).await;
    let me = tunnel.me;
    let mut body = tunnel.response.into_body();
    let hello = timeout(PATIENCE, body.data())
        .await
        .expect("the upstream's bytes in time")
        .expect("the upstream's bytes")
        .expect("the upstream's bytes");
    assert_eq!(&hello[..], b"hello");
    got_hello.send(()).unwrap();
    let end = timeout(PATIENCE, body.data())
        .await
        .expect("the tunnel's end in time");
    let error = match end {
        Some(Err(error)) => error,
        other => panic!("the stream ended without a reset: {other:?}"),
    };
    assert!(error.is_reset(), "{error}");
    assert_eq!(error.reason(), Some(h2::Reason::CANCEL), "{error}");
    // The upstream's reset, no failure of the proxy's: the tunnel's access line says it.
    let line = proxy.wait_for_line("relay reset").await;
    assert!(line.contains(&format!("peer={me}")), "{line}");
    let line = proxy.wait_for_line("tunnel reset").await;
    assert!(line.contains(&format!("peer={me}")), "{line}");
}

/// The HTTP/1.1 side of the tunnels above: a client that gives up with a TCP `RST` while the
/// relay waits to write to an upstream that stopped reading and to read from it (so reads and
/// writes the client no more, and hyper's upgraded stream over the client's socket says
/// nothing) has the upstream reset at once. Before, the relay was held until the idle timeout
/// (5 minutes in the examples), with its upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h1_tunnel_reset_by_its_client_resets_its_stalled_upstream_at_once() {
    rama_e2e::assert_h1_tunnel_reset_passes_on(&proxy(&[]), None).await;
}

/// The same with the tunnel's client over TLS (`http_proxy --tls-cert`, what curl's
/// `https://` proxies speak): the relay's client side is the TLS stream, whose socket the
/// server found under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h1_tunnel_over_tls_reset_by_its_client_resets_its_stalled_upstream_at_once() {
    let tls = ProxyCert::issue();
    let connector = tls.connector("http/1.1");
    rama_e2e::assert_h1_tunnel_reset_passes_on(&tls.proxy(&[]), Some(&connector)).await;
}

/// An upstream that resets its connection while an HTTP/1.1 tunnel's relay waits to write to
/// a client that stopped reading (and to read from it, which sends nothing) has the client's
/// connection reset at once: the relay watches the upstream's socket while it reads and writes
/// it no more. Before, the tunnel was held until the client moved or the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_towards_a_stalled_h1_tunnel_client_resets_the_client_at_once() {
    rama_e2e::assert_upstream_reset_passes_on(|_| proxy(&[]), true).await;
}

/// The other way round, an upstream that resets an HTTP/1.1 tunnel's connection has the
/// client's reset too, as the spliced relay and HTTP/2's `RST_STREAM` pass it on; before, the
/// client got a FIN and took a cut tunnel for a finished one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_resets_its_h1_tunnel_has_the_client_reset_not_ended() {
    let (upstream, got_hello) = hello_then_reset().await;
    let proxy = proxy(&[]);
    let mut client = rama_e2e::h1_tunnel(proxy.addr, upstream).await;
    let mut hello = [0; 5];
    timeout(PATIENCE, client.read_exact(&mut hello))
        .await
        .expect("the upstream's bytes in time")
        .unwrap();
    assert_eq!(&hello, b"hello");
    got_hello.send(()).unwrap();
    let mut rest = Vec::new();
    let end = timeout(PATIENCE, client.read_to_end(&mut rest))
        .await
        .expect("the tunnel's end in time");
    assert_eq!(
        end.map_err(|error| error.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client's connection ended without a reset, after {rest:?}"
    );
}

/// nginx answering `ok <protocol> <host>` over h2c (prior knowledge) on 127.0.0.1, ending each
/// connection with `GOAWAY` after `keepalive_requests` requests; killed when dropped.
struct Nginx {
    addr: SocketAddr,
    _process: tokio::process::Child,
}

impl Nginx {
    async fn h2c(keepalive_requests: u32) -> Self {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "nginx-h2c-{}-{keepalive_requests}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A free port for nginx to bind (nginx cannot report one it picked).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};\n  \
             uwsgi_temp_path {d}; scgi_temp_path {d};\n  \
             server {{\n    listen 127.0.0.1:{port} http2;\n    \
             keepalive_requests {keepalive_requests};\n    \
             location / {{ return 200 \"ok $server_protocol $host\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let process = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off; master_process off;"])
            .kill_on_drop(true)
            .spawn()
            .expect("run nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            addr,
            _process: process,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_speaks_h2_to_nginx_with_host_and_past_its_goaway() {
    use tower::ServiceExt;
    let nginx = Nginx::h2c(3).await;
    let client = rama::http::Client::builder().http2_only(true).build();
    let host = nginx.addr.to_string();
    let get = |path: &str| {
        http::Request::get(format!("http://{host}{path}"))
            .header(http::header::HOST, &host)
            // Hop-by-hop: nginx refuses an h2 request with `Connection` (and hyper would
            // warn and strip it); the client removes it first.
            .header(http::header::CONNECTION, "keep-alive")
            .body(rama::http::Body::empty())
            .unwrap()
    };
    // One at a time: the 4th, 7th, ... go to a connection nginx has sent GOAWAY on.
    for i in 0..10 {
        let response = client.clone().oneshot(get(&format!("/seq/{i}"))).await;
        let response = response.unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(response.status(), 200, "request {i}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("ok HTTP/2.0 127.0.0.1\n"), "request {i}");
    }
    // Side by side on the pooled connection: all but 3 are above a GOAWAY's last stream id,
    // and go again (to a new connection, where again only 3 are served).
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..9 {
        let request = client.clone().oneshot(get(&format!("/par/{i}")));
        requests.spawn(async move { request.await.map(|r| r.status()) });
    }
    let mut ok = 0;
    while let Some(status) = timeout(PATIENCE, requests.join_next()).await.unwrap() {
        assert_eq!(status.unwrap().unwrap(), 200);
        ok += 1;
    }
    assert_eq!(ok, 9);
}

/// An HTTP/1.1 origin (hyper) that counts the connections it accepted and answers `200`,
/// closing each connection after its response when `close` is set.
async fn counting_origin(close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let (listener, addr) = bind_origin();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    spawn_origin(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(move |_| async move {
                let mut response =
                    http::Response::new(http_body_util::Full::new(Bytes::from("hi")));
                if close {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, "close".parse().unwrap());
                }
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, accepted)
}

// One thread: the client keeps idle connections per thread, so on two a request may find
// its connection parked on the other and dial a second one.
#[tokio::test(flavor = "current_thread")]
async fn the_client_reuses_http1_connections_and_not_closed_ones() {
    use tower::ServiceExt;
    let client = rama::http::Client::new();
    for close in [false, true] {
        let (addr, accepted) = counting_origin(close).await;
        for i in 0..5 {
            let request = http::Request::get(format!("http://{addr}/{i}"))
                .body(rama::http::Body::empty())
                .unwrap();
            let response = timeout(PATIENCE, client.clone().oneshot(request))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("close: {close}, request {i}: {e:?}"));
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "hi");
        }
        // Kept alive: one connection for all; closed by the origin: one each.
        let expected = if close { 5 } else { 1 };
        assert_eq!(accepted.load(Ordering::SeqCst), expected, "close: {close}");
    }
}
