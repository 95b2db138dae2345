//! The HTTP reverse proxy (`target("http://..")`, `examples/reverse_proxy`) with real curl
//! over 127.0.0.1: HTTP/1.1 and HTTP/2 prior knowledge, the forwarded headers as the origin
//! sees them, 100 MiB streamed up and down (checksummed, with the proxy's memory staying flat),
//! an upgrade carried end to end, a real WebSocket session (Python's `websockets` on both ends),
//! tower-http's compression in the diagram, `--sched-batch`'s scheduling policy on the
//! server threads, an upstream that breaks HTTP/1.1 (`502`, a cut-short body cut short for
//! the client, no answer left behind on a pooled connection), trailers both ways (raw sockets
//! and HTTP/2), and `103 Early Hints` relayed ahead of the final response.

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use rama::{BoxError, http as rama_http, tcp, tls};
use rama_e2e::{
    PATIENCE, Running, accepted, closed_port, origin_certificate, origin_thread, payload, plain,
    python::{PythonServer, run_script},
    rama_origin, raw, read_head, sha256, until, vm_rss,
    ws::{ECHO_ORIGIN, SESSION_CLIENT},
};
use std::{
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::Command,
    time::timeout,
};
use tower::Layer;

const MIB: usize = 1024 * 1024;

/// What the origin streams from `/download`: 100 MiB, made once.
fn download() -> &'static Bytes {
    static DATA: OnceLock<Bytes> = OnceLock::new();
    DATA.get_or_init(|| Bytes::from(payload(100 * MIB, 7)))
}

/// A body that hands out `data` in 64 KiB slices (no copies); then ends, or, `stall`, never
/// says another word.
struct Chunks {
    data: Bytes,
    stall: bool,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return if self.stall {
                Poll::Pending
            } else {
                Poll::Ready(None)
            };
        }
        let n = self.data.len().min(64 * 1024);
        Poll::Ready(Some(Ok(Frame::data(self.data.split_to(n)))))
    }
}

/// The origin's answers: `/upload` hashes the body as it streams in (`LEN HEX`), `/download`
/// streams [`download`], `/stall` sends `first` and then nothing, `/204-body` is a `204`
/// with content it may not have (over HTTP/2 it goes out as DATA), anything else echoes the
/// request line and headers.
async fn answer(
    request: http::Request<rama_http::Body>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    let path = request.uri().path().to_owned();
    if path == "/upload" {
        use sha2::{Digest, Sha256};
        let mut body = request.into_body();
        let mut hasher = Sha256::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                len += data.len();
                hasher.update(&data);
            }
        }
        let hex = hasher.finalize().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        return Ok(http::Response::new(format!("{len} {hex}").into()));
    }
    if path == "/download" {
        let body = rama_http::Body::new(Chunks {
            data: download().clone(),
            stall: false,
        });
        return Ok(http::Response::new(body));
    }
    if path == "/204-body" {
        let mut response = http::Response::new("oops".into());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        return Ok(response);
    }
    if path == "/stall" {
        let body = rama_http::Body::new(Chunks {
            data: Bytes::from_static(b"first"),
            stall: true,
        });
        return Ok(http::Response::new(body));
    }
    let mut text = rama_e2e::request_text(&request);
    // Long enough for the compression layer to bother.
    text.push_str(&"padding ".repeat(200));
    let mut response = http::Response::new(text.into());
    if path == "/text" {
        let etag = http::HeaderValue::from_static("\"text-v1\"");
        response.headers_mut().insert(http::header::ETAG, etag);
    }
    Ok(response)
}

/// An HTTP/1.1 + HTTP/2 origin built with rama itself, on its own thread, with [`answer`].
fn origin() -> SocketAddr {
    origin_with(answer)
}

/// An HTTP/1.1 + HTTP/2 origin built with rama itself, on its own thread, with `answer`.
fn origin_with<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(http::Request<rama_http::Body>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<http::Response<rama_http::Body>, BoxError>> + 'static,
{
    origin_thread(|listener| async move {
        let server = tcp::Server::from_std(listener)
            .serve(rama_http::Server::new().layer(tower::service_fn(answer)));
        let _ = server.await;
    })
}

/// An HTTPS origin (HTTP/1.1 over TLS, for `localhost`) with [`answer`] behind it, and the PEM
/// of the CA that issued its certificate.
fn https_origin() -> (SocketAddr, std::path::PathBuf) {
    let dir = origin_certificate("reverse-https");
    let acceptor =
        tls::Acceptor::from_pem_files(dir.join("origin.pem"), dir.join("origin.key")).unwrap();
    let addr = origin_thread(|listener| async move {
        let stack = acceptor.layer(rama_http::Server::new().layer(tower::service_fn(answer)));
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    });
    (addr, dir.join("ca.pem"))
}

/// An origin on 127.0.0.1 that reads each connection's first request head and hands the
/// stream and the head (lowercase) to `serve`.
async fn head_origin<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move {
                if let Ok(Some(head)) = read_head(&mut stream).await {
                    serve(stream, head.to_ascii_lowercase()).await;
                }
            });
        }
    });
    addr
}

/// An origin that answers any request with `101` (`Upgrade: echo`) and then echoes bytes.
async fn upgrade_origin() -> SocketAddr {
    head_origin(|mut stream, head| async move {
        if !head.contains("upgrade: echo") {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let _ = stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
            )
            .await;
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

fn reverse_proxy(upstream: SocketAddr, args: &[&str]) -> Running {
    let upstream = format!("http://{upstream}");
    Running::start_local(
        "reverse_proxy",
        &[&["--upstream", &upstream][..], args].concat(),
    )
}

/// Runs curl (bounded); stdout, and the `-w` line's fields after a final newline.
async fn curl(args: &[&str]) -> (String, String) {
    let output = timeout(
        PATIENCE * 4,
        Command::new("curl")
            .args(["-sS", "--max-time", "100"])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(args)
            .output(),
    )
    .await
    .expect("curl took too long")
    .expect("run curl");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, codes) = stdout.rsplit_once('\n').expect("curl's -w line");
    (body.to_owned(), codes.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_prior_knowledge_reach_the_origin_with_forwarded_headers() {
    let origin = origin();
    let proxy = reverse_proxy(origin, &[]);
    let url = format!("http://{}/hello?x=1", proxy.addr);

    // Two `X-Forwarded-For` lines (a hop in front added one of its own): both are kept.
    let (body, codes) = curl(&[
        "-H",
        "X-Forwarded-For: 10.9.8.7",
        "-H",
        "X-Forwarded-For: 10.0.0.2",
        &url,
    ])
    .await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.starts_with("get /hello?x=1 http/1.1"), "{seen}");
    assert!(seen.contains(&format!("host: {origin}\n")), "{seen}");
    assert!(
        seen.contains(&format!("x-forwarded-host: {}\n", proxy.addr)),
        "{seen}"
    );
    assert!(
        seen.contains("x-forwarded-for: 10.9.8.7, 10.0.0.2, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains(&format!(
            "forwarded: for=127.0.0.1;host=\"{}\";proto=http\n",
            proxy.addr
        )),
        "{seen}"
    );
    assert!(seen.contains("via: 1.1 rama\n"), "{seen}");

    // An `https://` target over plain text is the client's claim, not the connection's
    // scheme: the forwarding headers say `http`.
    let (body, codes) = curl(&["--request-target", "https://front.example/hello?x=1", &url]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains("host=\"front.example\";proto=http\n"),
        "{seen}"
    );

    // The response's `Via` names the version it came in: HTTP/1.1 from this origin, though
    // the client spoke HTTP/2.
    let (body, codes) = curl(&["--http2-prior-knowledge", "-D", "/dev/stdout", &url]).await;
    assert_eq!(codes, "200 2", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains("\nvia: 1.1 rama\r\n"), "{seen}");
    assert!(seen.contains("get /hello?x=1 http/1.1"), "{seen}");
    assert!(seen.contains("via: 2 rama\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    proxy.wait_for_log("reverse proxy: forwarding").await;
    // The access log names the target as the client sent it, path and query, whatever
    // the version (HTTP/2's URI carries the scheme and authority too).
    let logged = || plain(&proxy.stderr());
    rama_e2e::until("the HTTP/2 request's access line", || {
        logged().matches("rama::access").count() == 3
    })
    .await;
    let log = logged();
    let answered: Vec<_> = log.lines().filter(|l| l.contains("rama::access")).collect();
    assert_eq!(answered.len(), 3, "{answered:?}");
    assert!(
        answered.iter().all(|l| l.contains("uri=/hello?x=1 ")),
        "{answered:?}"
    );

    // An HTTP/2 upstream (prior knowledge) gets `:authority` and no `Host` beside it.
    let h2 = reverse_proxy(origin, &["--http2-upstream"]);
    let url = format!("http://{}/hello?x=1", h2.addr);
    let (body, codes) = curl(&["-D", "/dev/stdout", &url]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains("\nvia: 2 rama\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("get http://{origin}/hello?x=1 http/2.0")),
        "{seen}"
    );
    assert!(!seen.contains("\nhost:"), "{seen}");
    assert!(seen.contains("via: 1.1 rama\n"), "{seen}");
    // Content an HTTP/2 upstream sent after a `204` does not reach an HTTP/2 client, which
    // would reset the stream for it.
    let url = format!("http://{}/204-body", h2.addr);
    let (body, codes) = curl(&["--http2-prior-knowledge", &url]).await;
    assert_eq!((body.as_str(), codes.as_str()), ("", "204 2"));
}

/// curl's `--http2` on `http://` offers an upgrade of its own connection to h2c: the proxy
/// does not pass it on (an origin that took it would speak HTTP/2 past the proxy, "h2c
/// smuggling"), and answers in its own version, HTTP/1.1, though the origin's answer was
/// HTTP/1.0 (the upgrade offer puts the connection on hyper's path, which wrote `HTTP/1.0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_offer_stays_here_and_the_answer_is_in_the_proxys_version() {
    let origin = head_origin(|mut stream, head| async move {
        let answer = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
            head.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await;
    let proxy = reverse_proxy(origin, &[]);
    let url = format!("http://{}/old", proxy.addr);
    let (seen, codes) = curl(&["--http2", &url]).await;
    assert_eq!(codes, "200 1.1", "{seen}");
    assert!(seen.starts_with("get /old http/1.1"), "{seen}");
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
}

/// Sends `request` to `proxy` over a new HTTP/2 connection (hyper's client, prior knowledge):
/// the status, and the whole body with its trailers.
async fn h2_exchange<B>(
    proxy: SocketAddr,
    request: http::Request<B>,
) -> (u16, http_body_util::Collected<Bytes>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut send, _connection) =
        rama_e2e::h2_handshake_for(TcpStream::connect(proxy).await.unwrap()).await;
    let response = timeout(PATIENCE, send.send_request(request))
        .await
        .expect("an answer in time")
        .expect("a response");
    let status = response.status().as_u16();
    let collected = timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("the body in time")
        .expect("the body");
    (status, collected)
}

/// Cookies an HTTP/2 client split over several lines (RFC 9113 8.2.3; hyper's client keeps
/// them as given) reach the HTTP/1.1 origin on one line, as HTTP/1.1 has them: on the
/// client's own path (`http://`) and on hyper's (`https://`, HTTP/1.1 by ALPN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_split_over_http2_lines_reach_an_http1_origin_joined() {
    let (https, ca) = https_origin();
    let ca = ca.to_str().unwrap().to_owned();
    let https = format!("https://localhost:{}", https.port());
    let proxies = [
        reverse_proxy(origin(), &[]),
        Running::start_local(
            "reverse_proxy",
            &["--upstream", &https, "--upstream-ca", &ca],
        ),
    ];
    for proxy in &proxies {
        let request = http::Request::get(format!("http://{}/cookies", proxy.addr))
            .header("cookie", "a=1")
            .header("cookie", "b=2; c=3")
            .body(http_body_util::Empty::new())
            .unwrap();
        let (_, collected) = h2_exchange(proxy.addr, request).await;
        let body = collected.to_bytes();
        let seen = String::from_utf8_lossy(&body);
        assert!(seen.starts_with("GET /cookies HTTP/1.1\n"), "{seen}");
        let cookies: Vec<&str> = seen.lines().filter(|l| l.starts_with("cookie:")).collect();
        assert_eq!(cookies, ["cookie: a=1; b=2; c=3"], "{seen}");
    }
}

/// gRPC's shape over an HTTP/2 upstream (`--http2-upstream`, or TLS with h2 by ALPN): the
/// client's `te: trailers` reaches the origin (the one `TE` HTTP/2 allows, which gRPC servers
/// look for), and the origin's trailers (`grpc-status`) reach the client after the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn te_trailers_and_trailers_pass_over_http2_upstreams() {
    async fn grpc_like(
        request: http::Request<rama_http::Body>,
    ) -> Result<http::Response<rama_http::Body>, BoxError> {
        let te = request
            .headers()
            .get("te")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let body = http_body_util::Full::new(Bytes::from(format!("te={te}")))
            .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailers))));
        Ok(http::Response::new(rama_http::Body::new(body)))
    }
    let origin = origin_with(grpc_like);
    // The same origin over TLS, HTTP/2 chosen by ALPN: the proxy learns it at the handshake.
    let (tls_origin, ca) = rama_e2e::h2_https_origin("reverse-grpc", grpc_like);
    let https = format!("https://localhost:{}", tls_origin.port());
    let ca = ca.to_str().unwrap();
    let by_alpn = [
        "--upstream",
        &https,
        "--upstream-ca",
        ca,
        "--upstream-alpn",
        "h2",
    ];
    // Over an HTTP/1.1 upstream `TE` stays a hop-by-hop field: not forwarded.
    let cases = [
        (
            "h2 prior knowledge",
            reverse_proxy(origin, &["--http2-upstream"]),
            "trailers",
        ),
        (
            "h2 by ALPN",
            Running::start_local("reverse_proxy", &by_alpn),
            "trailers",
        ),
        ("HTTP/1.1", reverse_proxy(origin, &[]), "none"),
    ];
    for (upstream, proxy, te) in &cases {
        let request = http::Request::post(format!("http://{}/pkg.Service/Call", proxy.addr))
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .body(http_body_util::Empty::new())
            .unwrap();
        let (status, collected) = h2_exchange(proxy.addr, request).await;
        assert_eq!(status, 200);
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), format!("te={te}"), "{upstream}");
        if *te == "trailers" {
            let status = trailers.as_ref().and_then(|t| t.get("grpc-status"));
            assert_eq!(
                status.map(|v| v.as_bytes()),
                Some(&b"0"[..]),
                "{trailers:?}"
            );
        }
    }
}

/// Trailers pass the proxy both ways over HTTP/1.1 (the server's own path for the `GET` and a
/// small chunked upload, hyper's once a large one handed the connection over; the client's
/// own path to the origin), and the origin's reach an HTTP/2 client as a trailing HEADERS frame, each without
/// the fields no trailer may carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_both_ways_without_the_fields_no_trailer_may_carry() {
    let (origin, seen) = rama_e2e::trailer_origin(rama_e2e::ORIGIN_TRAILERS);
    let proxy = reverse_proxy(origin, &[]);
    rama_e2e::assert_trailers_pass(proxy.addr, "", &seen).await;
    let request = http::Request::get(format!("http://{}/h2", proxy.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    let (status, collected) = h2_exchange(proxy.addr, request).await;
    assert_eq!(status, 200);
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(collected.to_bytes(), "hello");
    let fields: Vec<_> = trailers.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(fields, ["grpc-status", "x-checksum"], "{trailers:?}");
}

/// A trailer field value that starts or ends with white space, which HTTP/2 carries and
/// HTTP/1.1's parsers strip (RFC 9113 8.2.1: the message is malformed), is passed on neither
/// way: an HTTP/2 client's upload gets `400` and its trailer section never reaches the
/// HTTP/1.1 origin (the same upload with a clean value, sent next, is the first the origin
/// sees whole); an HTTP/2 origin's answer reaches the client as a reset stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_trailer_values_from_http2_are_passed_on_neither_way() {
    /// Its frames one by one, with no length known: the upload goes upstream chunked.
    struct Frames(std::vec::IntoIter<Frame<Bytes>>);
    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.next().map(Ok))
        }
    }
    async fn upload(proxy: SocketAddr, sum: &'static str) -> (u16, String) {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-upload-sum", http::HeaderValue::from_static(sum));
        let body = Frames(
            vec![
                Frame::data(Bytes::from_static(b"hello")),
                Frame::trailers(trailers),
            ]
            .into_iter(),
        );
        let request = http::Request::post(format!("http://{proxy}/upload"))
            .body(body)
            .unwrap();
        let (status, body) = h2_exchange(proxy, request).await;
        (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    }
    let (origin, seen) = rama_e2e::trailer_origin(rama_e2e::ORIGIN_TRAILERS);
    let proxy = reverse_proxy(origin, &[]);
    for padded in [" 123", "123\t"] {
        let (status, body) = upload(proxy.addr, padded).await;
        assert_eq!(status, 400, "{padded:?}: {body}");
        assert!(body.contains("whitespace"), "{padded:?}: {body}");
        let (status, body) = upload(proxy.addr, "123").await;
        assert_eq!(status, 200, "{body}");
        rama_e2e::assert_upload_trailers(&seen);
    }

    async fn padded(
        _: http::Request<rama_http::Body>,
    ) -> Result<http::Response<rama_http::Body>, BoxError> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0 "));
        let body = http_body_util::Full::new(Bytes::from_static(b"hello"))
            .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(trailers))));
        Ok(http::Response::new(rama_http::Body::new(body)))
    }
    let origin = origin_with(padded);
    let proxy = reverse_proxy(origin, &["--http2-upstream"]);
    let (mut send, _connection) =
        rama_e2e::h2_handshake(TcpStream::connect(proxy.addr).await.unwrap()).await;
    let request = http::Request::get(format!("http://{}/", proxy.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    // The stream is reset, before the head or after it as the frames fall.
    let exchange = async {
        let response = send.send_request(request).await?;
        response.into_body().collect().await
    };
    let outcome = timeout(PATIENCE, exchange).await.expect("an end in time");
    assert!(outcome.is_err(), "the trailers passed: {outcome:?}");
}

/// The origin of [`early_hints_reach_an_http11_client_before_the_final_response`] on one
/// connection: to each request a `103` with a hop-by-hop field, then the response, `ok` once
/// `hinted` says the client has the `103`, `--` if it did not within a second (an HTTP/1.0
/// client never gets to tell).
async fn hint_then_answer<S>(mut stream: S, hinted: std::sync::Arc<tokio::sync::Notify>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Ok(Some(_)) = read_head(&mut stream).await {
        let hints = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\
                     connection: x-hop\r\nx-hop: 1\r\n\r\n";
        stream.write_all(hints.as_bytes()).await.unwrap();
        let seen = timeout(std::time::Duration::from_secs(1), hinted.notified()).await;
        let body = if seen.is_ok() { "ok" } else { "--" };
        let last = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{body}");
        stream.write_all(last.as_bytes()).await.unwrap();
    }
}

/// An upstream's `103 Early Hints` reaches an HTTP/1.1 client as it comes, before the final
/// response (which the origin sends only once the client has the `103`), without its
/// hop-by-hop fields; an HTTP/1.0 client gets the final response alone (RFC 9110 15.2). On
/// the client's own path (`http://`) and on hyper's (`https://`, HTTP/1.1 by ALPN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_an_http11_client_before_the_final_response() {
    let hinted = std::sync::Arc::new(tokio::sync::Notify::new());
    let origin = origin_thread({
        let hinted = hinted.clone();
        |listener| async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(hint_then_answer(stream, hinted.clone()));
            }
        }
    });
    let dir = origin_certificate("reverse-hints");
    let acceptor =
        tls::Acceptor::from_pem_files(dir.join("origin.pem"), dir.join("origin.key")).unwrap();
    let hinting = tower::service_fn({
        let hinted = hinted.clone();
        move |conn: rama::Conn<tls::TlsStream<tcp::Stream>>| {
            let (stream, _) = conn.into_parts();
            let serving = hint_then_answer(stream, hinted.clone());
            async move {
                serving.await;
                Ok::<_, Infallible>(())
            }
        }
    });
    let tls_origin =
        rama_origin(|server| server.serve(acceptor.layer(hinting)).spawn_connections());
    let https = format!("https://localhost:{}", tls_origin.port());
    let ca = dir.join("ca.pem");
    let proxies = [
        reverse_proxy(origin, &[]),
        Running::start_local(
            "reverse_proxy",
            &["--upstream", &https, "--upstream-ca", ca.to_str().unwrap()],
        ),
    ];
    for proxy in &proxies {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        for _ in 0..2 {
            client
                .write_all(b"GET /page HTTP/1.1\r\nhost: rama.test\r\n\r\n")
                .await
                .unwrap();
            let head = timeout(PATIENCE, read_head(&mut client))
                .await
                .expect("the hints in time")
                .unwrap()
                .expect("the hints");
            assert!(head.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{head}");
            assert!(
                head.contains("link: </style.css>; rel=preload\r\n"),
                "{head}"
            );
            assert!(
                !head.contains("x-hop") && !head.contains("connection"),
                "{head}"
            );
            hinted.notify_one();
            let head = read_head(&mut client).await.unwrap().expect("the response");
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            let mut body = [0; 2];
            client.read_exact(&mut body).await.unwrap();
            assert_eq!(&body, b"ok");
        }
        let answer = raw(proxy.addr, b"GET /page HTTP/1.0\r\nhost: rama.test\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n--"), "{answer}");
        assert!(!answer.contains("103"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_100_mib_up_and_down_checksummed_in_flat_memory() {
    /// The proxy's resident memory may never exceed this while 100 MiB pass through it: far
    /// below what buffering a body would take.
    const RSS_BOUND: u64 = 48 * MIB as u64;
    let origin = origin();
    let proxy = reverse_proxy(origin, &[]);
    let baseline = vm_rss(proxy.pid()).expect("the proxy's VmRSS");
    // Sampled every few milliseconds from another thread for as long as the transfers run.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let (pid, sampling) = (proxy.pid(), sampling.clone());
        move || {
            let mut peak = 0;
            let mut samples = 0usize;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(rss) = vm_rss(pid) {
                    peak = peak.max(rss);
                    samples += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            (peak, samples)
        }
    });
    let dir = env!("CARGO_TARGET_TMPDIR");
    let up = format!("{dir}/reverse-up-{}", std::process::id());
    let down = format!("{dir}/reverse-down-{}", std::process::id());
    let data = payload(100 * MIB, 3);
    std::fs::write(&up, &data).unwrap();

    for h2 in [false, true] {
        let mut args = vec!["-H", "Expect:", "--data-binary"];
        let at = format!("@{up}");
        args.push(&at);
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        let url = format!("http://{}/upload", proxy.addr);
        args.push(&url);
        let (body, codes) = curl(&args).await;
        assert!(codes.starts_with("200"), "{codes} {body}");
        let hex: String = sha256(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(body, format!("{} {hex}", 100 * MIB), "h2: {h2}");

        let url = format!("http://{}/download", proxy.addr);
        let mut args = vec!["-o", &down];
        if h2 {
            args.push("--http2-prior-knowledge");
        }
        args.push(&url);
        let (_, codes) = curl(&args).await;
        assert!(codes.starts_with("200"), "{codes}");
        let got = std::fs::read(&down).unwrap();
        assert_eq!(got.len(), 100 * MIB);
        assert_eq!(sha256(&got), sha256(download()), "h2: {h2}");
    }
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let (peak, samples) = sampler.join().unwrap();
    let _ = std::fs::remove_file(&up);
    let _ = std::fs::remove_file(&down);
    let in_mib = |bytes: u64| bytes as f64 / MIB as f64;
    println!(
        "reverse proxy VmRSS while streaming 4 x 100 MiB: {:.1} MiB at start, peak {:.1} MiB \
         ({samples} samples)",
        in_mib(baseline),
        in_mib(peak)
    );
    assert!(samples > 100, "too few RSS samples: {samples}");
    assert!(
        peak < RSS_BOUND,
        "the proxy's memory grew with the body: peak VmRSS {:.1} MiB",
        in_mib(peak)
    );
}

/// Sends a POST of `len` bytes to `/upload` through `proxy`, `piece` bytes every `pause` and
/// no more than `stop_after` of them; the answer (read until the proxy closes).
async fn paced_upload(
    proxy: SocketAddr,
    len: usize,
    piece: usize,
    pause: std::time::Duration,
    stop_after: usize,
) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let body = payload(len, 7);
    for piece in body[..stop_after].chunks(piece) {
        tokio::time::sleep(pause).await;
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answered and closed")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_longer_than_the_upstream_timeout_goes_through_and_stalls_either_way_are_cut() {
    const LEN: usize = 256 * 1024;
    let hex = sha256(&payload(LEN, 7))
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    let origin = origin();
    // rama's own HTTP/1.1 upstream connections, and hyper's HTTP/2 ones.
    for upstream in [&[][..], &["--http2-upstream"][..]] {
        let args = [&["--upstream-timeout", "1"][..], upstream].concat();
        let proxy = reverse_proxy(origin, &args);
        // 256 KiB in 16 KiB pieces, one every 200 ms: over 3 s in all, never 1 s without a
        // move.
        let pause = std::time::Duration::from_millis(200);
        let answer = paced_upload(proxy.addr, LEN, 16 * 1024, pause, LEN).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{upstream:?}: {answer}");
        assert!(
            answer.ends_with(&format!("{LEN} {hex}")),
            "{upstream:?}: {answer}"
        );

        // Half of it, then nothing: the client stalled, not the upstream.
        let answer = paced_upload(proxy.addr, LEN, 64 * 1024, pause, LEN / 2).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{upstream:?}: {answer}");
        assert!(
            answer.contains("no more of the request body"),
            "{upstream:?}: {answer}"
        );

        // A response body that stops coming: cut off a timeout later (no last chunk), not
        // held open for as long as the upstream keeps quiet.
        let get = b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n";
        let answer = raw(proxy.addr, get).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{upstream:?}: {answer}");
        assert!(
            answer.ends_with("\r\n\r\n5\r\nfirst\r\n"),
            "{upstream:?}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upload_is_400_on_both_upstream_paths() {
    let origin = origin();
    // Its first chunk reaches the origin, which reads the body to its end; the second chunk's
    // size line is not hex.
    let upload = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n";
    for upstream in [&[][..], &["--http2-upstream"][..]] {
        let proxy = reverse_proxy(origin, upstream);
        let answer = raw(proxy.addr, upload).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{upstream:?}: {answer}");
        // The cause is the body's, on hyper's path too (its HTTP/2 client says only that the
        // body it sent failed).
        assert!(
            answer.contains("the request body failed: error reading a body")
                && answer.contains("chunk size"),
            "{upstream:?}: {answer}"
        );
        let log = proxy.wait_for_log("answering 400").await;
        assert!(!log.contains("upstream failed"), "{upstream:?}: {log}");
    }
}

/// An origin for `Expect: 100-continue`: `/refuse` answers `401` to the head alone, as an
/// origin that checks credentials first does; `/continue` sends `100 Continue`, then reads
/// the body; `/ignore` reads the body without a word first, as an HTTP/1.0 origin would.
/// Both of the last answer with the number of body bytes they read.
async fn expectation_origin() -> SocketAddr {
    head_origin(|mut stream, head| async move {
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let answer = if head.starts_with("put /refuse ") {
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndenied"
                .to_owned()
        } else {
            if head.starts_with("put /continue ")
                && stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            let mut body = vec![0u8; length];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let count = length.to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{count}",
                count.len()
            )
        };
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await
}

/// `Expect: 100-continue` goes by the upstream's word (RFC 9110 10.1.1): the client's body
/// moves only after the upstream's `100` (which curl sees relayed), an upstream that refuses
/// at once has the refusal relayed before a byte of the body moved (curl, which waits for
/// the `100`, uploads nothing), and an upstream that ignores the expectation still gets the
/// body, after the proxy's wait for the `100`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_waits_for_the_upstreams_word() {
    let proxy = reverse_proxy(expectation_origin().await, &[]);
    let dir = env!("CARGO_TARGET_TMPDIR");
    let up = format!("{dir}/reverse-expect-{}", std::process::id());
    let size = 4 * MIB;
    std::fs::write(&up, payload(size, 5)).unwrap();
    let put = |path: &'static str| {
        let url = format!("http://{}{path}", proxy.addr);
        let at = format!("@{up}");
        async move {
            let output = timeout(
                PATIENCE,
                Command::new("curl")
                    .args(["-sS", "-v", "--max-time", "20", "-X", "PUT"])
                    .args(["-H", "Expect: 100-continue", "--expect100-timeout", "10"])
                    .args(["--data-binary", &at])
                    .args(["-w", "\n%{http_code} %{size_upload}", &url])
                    .output(),
            )
            .await
            .expect("curl took too long")
            .expect("run curl");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (stdout, stderr)
        }
    };
    let (out, verbose) = put("/refuse").await;
    assert_eq!(out, "denied\n401 0", "{verbose}");
    assert!(!verbose.contains("100 Continue"), "{verbose}");

    let (out, verbose) = put("/continue").await;
    assert_eq!(out, format!("{size}\n200 {size}"), "{verbose}");
    assert!(verbose.contains("< HTTP/1.1 100 Continue"), "{verbose}");

    // curl waits up to 10 s for a `100` that only the proxy's own wait makes unnecessary.
    let (out, verbose) = put("/ignore").await;
    assert_eq!(out, format!("{size}\n200 {size}"), "{verbose}");
    let _ = std::fs::remove_file(&up);
}

/// An `Upgrade: echo` over TLS from an origin that offers h2 by ALPN too: `101`, then the
/// upgraded connection echoes; anything else is `400`.
async fn tls_upgrade_echo(
    mut request: http::Request<rama_http::Body>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    if request.headers().get("upgrade").is_none_or(|v| v != "echo") {
        let refusal = format!("no upgrade over {:?}", request.version());
        return Ok(http::Response::builder().status(400).body(refusal.into())?);
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut from, mut to) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut from, &mut to).await;
        }
    });
    Ok(http::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(rama_http::Body::empty())?)
}

/// An upgrade through the proxy, then two messages echoed through it.
async fn upgrade_exchange(proxy: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nhost: front\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await?;
    let head = read_head(&mut stream)
        .await?
        .ok_or(std::io::ErrorKind::UnexpectedEof)?
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for message in ["ping", "a longer message through the upgraded connection"] {
        stream.write_all(message.as_bytes()).await?;
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await?;
        assert_eq!(echoed, message.as_bytes());
    }
    Ok(())
}

/// An upgrade is carried end to end: to a plain origin, and to a TLS one that the proxy
/// offers h2 too (`--upstream-alpn h2,http/1.1`): the upgrade still goes on HTTP/1.1, which
/// is all that can carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_is_carried_end_to_end() {
    let plain = reverse_proxy(upgrade_origin().await, &[]);
    let (tls_origin, ca) = rama_e2e::h2_https_origin("reverse-upgrade", tls_upgrade_echo);
    let https = format!("https://localhost:{}", tls_origin.port());
    let ca = ca.to_str().unwrap();
    let args = ["--upstream", &https, "--upstream-ca", ca];
    let h2_offered = Running::start_local(
        "reverse_proxy",
        &[&args[..], &["--upstream-alpn", "h2,http/1.1"]].concat(),
    );
    for (upstream, proxy) in [("plain", &plain), ("TLS, h2 offered", &h2_offered)] {
        timeout(PATIENCE, upgrade_exchange(proxy.addr))
            .await
            .unwrap_or_else(|_| panic!("{upstream}: the upgrade took too long"))
            .unwrap_or_else(|error| panic!("{upstream}: the upgrade failed: {error}"));
    }
    // Plain requests on the same proxy may still go over HTTP/2.
    let url = format!("http://{}/", h2_offered.addr);
    let (body, codes) = curl(&[&url]).await;
    assert_eq!(
        (body.as_str(), codes.as_str()),
        ("no upgrade over HTTP/2.0", "400 1.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_http_layers_stand_in_the_diagram_when_asked() {
    let origin = origin();
    let proxy = reverse_proxy(origin, &["--gzip", "--trace"]);
    let url = format!("http://{}/text", proxy.addr);
    let headers = format!(
        "{}/reverse-headers-{}",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let (body, codes) = curl(&["--compressed", "-D", &headers, &url]).await;
    assert!(codes.starts_with("200"), "{codes}");
    assert!(
        body.contains("padding padding"),
        "curl decompressed: {body}"
    );
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    let _ = std::fs::remove_file(&headers);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    // Another representation than the origin's: its ETag weak (as nginx's gzip makes it), or a
    // resumed download (`If-Range`) would put identity bytes behind gzip ones.
    assert!(head.contains("etag: w/\"text-v1\"\r\n"), "{head}");

    // Without `--gzip` the layer is not in the diagram: the same request comes back as sent.
    let bare = reverse_proxy(origin, &[]);
    let url = format!("http://{}/text", bare.addr);
    let (body, codes) = curl(&["--compressed", "-D", &headers, &url]).await;
    assert!(codes.starts_with("200"), "{codes}");
    assert!(body.contains("padding padding"), "{body}");
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    let _ = std::fs::remove_file(&headers);
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("etag: \"text-v1\"\r\n"), "{head}");
}

/// What [`hostile_origin`] answers to each path: HTTP/1.1 broken the ways a broken or
/// hostile upstream breaks it.
fn hostile_answer(path: &str) -> &'static [u8] {
    match path {
        "/garbage" => b"HELLO THERE\r\n\r\n",
        "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "/nul" => b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok",
        "/both" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5\r\nhello\r\n0\r\n\r\n"
        }
        // A second response behind the first, unasked for: whoever reads it next is fooled.
        "/smuggle" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
                        HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"
        }
        "/bad-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        // A coding the client never asked for and the proxy does not undo.
        "/gzip" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        }
        // A length a 204 may not have (RFC 9110 8.6), and no body behind it.
        "/204-length" => b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        // Cut short: the origin closes after these bytes.
        "/truncated" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain",
    }
}

/// An origin that answers each request on a kept-alive connection with [`hostile_answer`].
async fn hostile_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                loop {
                    let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut buf = [0u8; 4096];
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&read[..end]).into_owned();
                    read.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/");
                    if stream.write_all(hostile_answer(path)).await.is_err() || path == "/truncated"
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upstream_answer_is_502_cut_short_or_reframed_and_never_answers_another_request() {
    let proxy = reverse_proxy(hostile_origin().await, &[]);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    // A head that is not HTTP, two lengths, a NUL in a value: 502, saying so.
    for path in ["/garbage", "/two-lengths", "/nul", "/gzip"] {
        let answer = raw(proxy.addr, get(path).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{path}: {answer}");
        assert!(
            answer.contains("the upstream's response is not valid"),
            "{path}: {answer}"
        );
    }
    // A first chunk that is not one: nothing had reached the client, so it gets a 502.
    let answer = raw(proxy.addr, get("/bad-chunk").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    // Content-Length and Transfer-Encoding: the chunks count, and the length is not passed on.
    let answer = raw(proxy.addr, get("/both").as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(!answer.contains("content-length: 3"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body == "5\r\nhello\r\n0\r\n\r\n" || body == "hello",
        "{answer}"
    );
    // Over HTTP/2 too, where a length left on would make the client reset the stream.
    let url = format!("http://{}/both", proxy.addr);
    let (body, codes) = curl(&["--http2-prior-knowledge", &url]).await;
    assert_eq!((body.as_str(), codes.as_str()), ("hello", "200 2"));
    // The unasked-for response behind `ok` stays on a connection that is not reused: the
    // request pipelined behind gets its own answer, not `extra`.
    let pipelined = format!("GET /smuggle HTTP/1.1\r\nHost: a\r\n\r\n{}", get("/plain"));
    let answer = raw(proxy.addr, pipelined.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(
        answer.contains("\r\n\r\nok") && answer.ends_with("plain"),
        "{answer}"
    );
    assert!(!answer.contains("extra"), "{answer}");
    // A body cut short is cut short for the client too: its length as sent, fewer bytes, and
    // the connection closed.
    let answer = raw(proxy.addr, get("/truncated").as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(answer.contains("content-length: 100\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nonly this"), "{answer}");
    // Over HTTP/2 the stream is reset (curl fails), and the log says so with the client.
    let url = format!("http://{}/truncated", proxy.addr);
    let cut = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--http2-prior-knowledge", &url])
        .output();
    let cut = timeout(PATIENCE, cut).await.unwrap().unwrap();
    assert!(!cut.status.success(), "a cut body passed as whole");
    let failed = "http2: the response body failed";
    let log = plain(&proxy.wait_for_log(failed).await);
    let line = log.lines().find(|line| line.contains(failed)).unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    // A 204 that names a length goes on without it: over HTTP/2 a length its empty body
    // lacks would have the client reset the stream (curl: "PROTOCOL_ERROR").
    let answer = raw(proxy.addr, get("/204-length").as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 204"), "{answer}");
    assert!(!answer.contains("content-length"), "{answer}");
    assert!(!answer.contains("transfer-encoding"), "{answer}");
    let url = format!("http://{}/204-length", proxy.addr);
    let (body, codes) = curl(&["--http2-prior-knowledge", &url]).await;
    assert_eq!((body.as_str(), codes.as_str()), ("", "204 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_upstream_is_502() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let mut proxy = reverse_proxy(closed, &[]);
    let (body, codes) = curl(&[&format!("http://{}/", proxy.addr)]).await;
    assert!(codes.starts_with("502"), "{codes} {body}");
    assert!(body.contains("cannot connect"), "{body}");
    // The upstream's address and the system's reason are the operator's, for the log: a
    // forward proxy's client named its destination, a reverse proxy's did not.
    assert!(!body.contains(&closed.port().to_string()), "{body}");
    assert!(!body.contains("os error"), "{body}");
    let log = plain(&proxy.wait_for_log("upstream failed").await);
    assert!(log.contains(&closed.to_string()), "{log}");
    assert!(proxy.terminate().await, "exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_verified_against_its_ca() {
    let (origin, ca) = https_origin();
    let upstream = format!("https://localhost:{}", origin.port());
    let ca_arg = ca.to_str().unwrap().to_owned();
    let proxy = Running::start_local(
        "reverse_proxy",
        &["--upstream", &upstream, "--upstream-ca", &ca_arg],
    );
    let (body, codes) = curl(&[&format!("http://{}/secure", proxy.addr)]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.starts_with("get /secure http/1.1"), "{seen}");
    assert!(
        seen.contains(&format!("host: localhost:{}\n", origin.port())),
        "{seen}"
    );

    // The webpki roots do not know the test CA: the upstream is refused, 502.
    let untrusting = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    let (body, codes) = curl(&[&format!("http://{}/secure", untrusting.addr)]).await;
    assert!(codes.starts_with("502"), "{codes} {body}");
    assert!(body.contains("cannot connect"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_session_is_carried_end_to_end() {
    let no_args: &[&str] = &[];
    let mut origin = PythonServer::start(ECHO_ORIGIN, no_args).await;
    let proxy = reverse_proxy(origin.addr, &[]);

    let url = format!("ws://{}/chat?room=1", proxy.addr);
    let lines = run_script(SESSION_CLIENT, &[&url]).await;
    assert_eq!(
        lines,
        [
            "text 'hello \u{2713}'",
            "binary True 1048576 True",
            "pong",
            "close 4001 done here",
        ]
    );

    assert_eq!(origin.next_line().await, "path /chat?room=1");
    assert_eq!(origin.next_line().await, "closed 4001 done here");
    proxy.wait_for_log("reverse proxy: forwarding").await;
}

/// Behind a base path, dot segments are resolved before the base goes in front, and one that
/// climbs above the root is refused: an origin resolved `/base/../admin` to `/admin`, outside
/// the base (nginx refuses it too), over HTTP/1.1 and HTTP/2 alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_path_is_a_boundary_dot_segments_cannot_climb_out_of() {
    let upstream = format!("http://{}/base", origin());
    let proxy = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    let (body, codes) = curl(&["--path-as-is", &url("/a/./b/../c?q=../x")]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    assert!(body.starts_with("GET /base/a/c?q=../x HTTP/1.1"), "{body}");
    for path in [
        "/../admin",
        "/%2e%2e/admin",
        "/a/../../admin",
        "/..%2fadmin",
        // Tomcat, Jetty and Spring cut `;` parameters and read `..;` as `..`.
        "/..;/admin",
    ] {
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let (body, codes) = curl(&[version, "--path-as-is", &url(path)]).await;
            assert!(
                codes.starts_with("400 "),
                "{path} {version}: {codes} {body}"
            );
            assert!(body.contains("climbs above the root"), "{path}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_connection_header_cannot_name_the_forwarding_headers_away() {
    let origin = origin();
    let proxy = reverse_proxy(origin, &[]);
    let url = format!("http://{}/named", proxy.addr);
    let connection = "Connection: keep-alive, X-Forwarded-For, Forwarded, X-Secret";
    let (body, codes) = curl(&["-H", connection, "-H", "X-Secret: 1", &url]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("forwarded: for=127.0.0.1;"), "{seen}");
    assert!(!seen.contains("x-secret"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_invalid_or_missing_host_is_400_and_preserve_host_keeps_a_good_one() {
    let origin = origin();
    let proxy = reverse_proxy(origin, &[]);
    let url = format!("http://{}/host", proxy.addr);
    // curl sends each `-H Host` as given, and none for `-H Host:`.
    let cases = [
        ("Host: a.example/other", "not host[:port]"),
        ("Host:", "needs a Host"),
    ];
    for (host, why) in cases {
        let (body, codes) = curl(&["-H", host, &url]).await;
        assert_eq!(codes, "400 1.1", "{host}: {body}");
        assert!(body.contains(why), "{host}: {body}");
    }
    // Two take a raw client (curl sends one); the answer closes the connection.
    let twice = b"GET /host HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
    let answer = raw(proxy.addr, twice).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("more than one Host"), "{answer}");
    proxy.wait_for_log("bad Host, answering 400").await;

    // HTTP/1.0 needs no `Host`; the upstream gets its own.
    let (body, codes) = curl(&["-0", "-H", "Host:", &url]).await;
    assert!(codes.starts_with("200 "), "{codes}: {body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains(&format!("host: {origin}\n")), "{seen}");
    assert!(!seen.contains("x-forwarded-host"), "{seen}");

    let proxy = reverse_proxy(origin, &["--preserve-host"]);
    let url = format!("http://{}/host", proxy.addr);
    let (body, codes) = curl(&["-H", "Host: site.example:8080", &url]).await;
    assert_eq!(codes, "200 1.1", "{body}");
    let seen = body.to_ascii_lowercase();
    assert!(seen.contains("host: site.example:8080\n"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_or_forwarded_one_way_only() {
    let proxy = reverse_proxy(origin(), &[]);
    // Content-Length and Transfer-Encoding both: the chunks count (RFC 9112 6.3), the upstream
    // gets them without the Content-Length, and the connection closes after the answer, so
    // the request behind it (which a hop reading the Content-Length would have seen
    // elsewhere) is never served.
    let both = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
                 GET /behind HTTP/1.1\r\nHost: a\r\n\r\n";
    let answer = raw(proxy.addr, both).await;
    let hello = sha256(b"hello").iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&format!("5 {hello}")), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert!(!answer.contains("/behind"), "{answer}");

    // `OPTIONS *` asks about the server: forwarded as `*`, not as the resource `/*`.
    let answer = raw(
        proxy.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\r\n\r\nOPTIONS * HTTP/1.1\n"), "{answer}");
    // Any other method in asterisk-form is malformed (RFC 9112 3.2.4): it reached the
    // origin as the resource `/*`.
    let answer = raw(
        proxy.addr,
        b"DELETE * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("for OPTIONS only"), "{answer}");

    // CONNECT is no request a reverse proxy forwards (it reached the origin as `CONNECT /`,
    // and the origin's answer broke the connection): 405, naming what it takes.
    let answer = raw(
        proxy.addr,
        b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.contains("allow: GET, HEAD, POST"), "{answer}");
    assert!(!answer.contains("CONNECT /"), "forwarded: {answer}");

    // A transfer coding besides chunked, which the proxy does not undo: 501 (RFC 9112 6.1),
    // before anything is forwarded, and the connection closed.
    for codings in ["gzip, chunked", "gzip\r\nTransfer-Encoding: chunked"] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {codings}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\nGET /behind HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{codings}: {answer}");
        assert!(answer.contains("connection: close"), "{codings}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert!(!answer.contains(&hello), "forwarded: {answer}");
    }

    // Framing that two hops could read two ways: refused before anything is forwarded (the
    // origin would have answered 200).
    let refused: [&[u8]; 6] = [
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for request in refused {
        let answer = raw(proxy.addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_the_proxy_itself_is_502_not_a_loop() {
    // A free port, then a reverse proxy told to forward to the address it listens on: each
    // request would come back to it as a new one, a connection more each time.
    // On rama's own HTTP/1.1 upstream connections and on hyper's HTTP/2 ones (where a loop
    // is one more stream on the proxy's own connection each time, until they run out).
    for upstream_flags in [&[][..], &["--http2-upstream"][..]] {
        let port = closed_port().port();
        let own = format!("127.0.0.1:{port}");
        let upstream = format!("http://{own}");
        let args = [
            &["--listen", &own, "--upstream", &upstream, "--threads", "1"][..],
            upstream_flags,
        ]
        .concat();
        let proxy = Running::start("reverse_proxy", &args);
        let (body, codes) = curl(&[&format!("http://{own}/loop")]).await;
        assert_eq!(codes, "502 1.1", "{upstream_flags:?}: {body}");
        assert!(
            body.contains("cannot connect"),
            "{upstream_flags:?}: {body}"
        );
        // The one request, and no connection to itself left open.
        until("only curl's connection came", || accepted(port) == 0).await;
        let log = proxy.stderr();
        assert!(log.contains("own address"), "{upstream_flags:?}: {log}");
        assert_eq!(
            log.matches("reverse proxy: forwarding").count(),
            1,
            "{upstream_flags:?}: {log}"
        );
    }
}

/// `SCHED_BATCH` in `/proc/PID/task/TID/stat`'s policy field.
const SCHED_BATCH: u32 = 3;

/// The name and scheduling policy of each thread of process `pid`.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads");
    tasks
        .map(|task| {
            let stat = std::fs::read_to_string(task.expect("a thread").path().join("stat"))
                .expect("read a thread's stat");
            // `pid (comm) state ...`: the name may hold spaces, the fields after it do not; the
            // policy is field 41, the 38th after the name.
            let (head, rest) = stat.rsplit_once(')').expect("a stat line");
            let name = head.split_once('(').expect("a stat line").1.to_owned();
            let policy = rest.split_whitespace().nth(38).expect("the policy field");
            (name, policy.parse().expect("a policy number"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sched_batch_puts_the_server_threads_and_only_them_under_sched_batch() {
    let origin = origin();
    let upstream = format!("http://{origin}");
    for batch in [true, false] {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--threads",
            "2",
            "--upstream",
            &upstream,
        ];
        if batch {
            args.push("--sched-batch");
        }
        let mut proxy = Running::start("reverse_proxy", &args);
        let (_, codes) = curl(&[&format!("http://{}/hello", proxy.addr)]).await;
        assert!(codes.starts_with("200"), "{codes}");
        // The port answers as soon as the first server thread runs; a thread takes its name
        // and its policy from inside, just after it starts.
        let pid = proxy.pid();
        let want = if batch { SCHED_BATCH } else { 0 };
        let settled = || {
            let threads = thread_policies(pid);
            let servers = threads
                .iter()
                .filter(|(n, _)| n.starts_with("rama-server-"));
            servers.clone().count() == 2 && servers.clone().all(|(_, policy)| *policy == want)
        };
        until("both server threads named, under their policy", settled).await;
        let threads = thread_policies(proxy.pid());
        let servers: Vec<_> = threads
            .iter()
            .filter(|(name, _)| name.starts_with("rama-server-"))
            .collect();
        assert_eq!(servers.len(), 2, "{threads:?}");
        assert!(
            servers.iter().all(|(_, policy)| *policy == want),
            "batch {batch}: {threads:?}"
        );
        assert!(
            threads
                .iter()
                .filter(|(name, _)| !name.starts_with("rama-server-"))
                .all(|(_, policy)| *policy == 0),
            "other threads keep the default policy: {threads:?}"
        );
        assert!(proxy.terminate().await, "exits cleanly on SIGTERM");
    }
}
