//! WebSocket end to end: `ws_echo` (`ws::Serve`) and `ws_proxy` (`ws::Relay`) as real
//! processes, driven by Python's `websockets` and by a raw-frame client for what a polite
//! client never sends (unmasked and reserved-opcode frames, oversized messages) and for
//! counting pongs.

use bytes::Bytes;
use rama::http::{Body, DialOnly};
use rama_e2e::{
    PATIENCE, Running, bind_origin, closed_by_peer, h2_handshake, origin_certificate,
    origin_thread,
    python::{PythonServer, run_script},
    read_head, send_until_stalled, spawn_origin,
    ws::{
        CLOSE, ECHO_ORIGIN, FIN, PING, PONG, RawWs, SESSION_CLIENT, TEXT, frame, upgrade,
        upgrade_request,
    },
};
use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};
use tower::Layer;

fn ws_echo(args: &[&str]) -> Running {
    Running::start_local("ws_echo", args)
}

/// `ws_proxy` to `upstream` (`HOST:PORT` or a `ws://`/`wss://` URL) with `args`.
fn ws_proxy(upstream: impl ToString, args: &[&str]) -> Running {
    let upstream = upstream.to_string();
    Running::start_local("ws_proxy", &[&["--upstream", &upstream][..], args].concat())
}

/// The status curl gets for `GET http://ADDR/` with `headers`.
async fn curl_status(addr: SocketAddr, headers: &[&str]) -> String {
    let mut args = vec!["-sS", "-o", "/dev/null", "-w", "\n%{http_code}"];
    for header in headers {
        args.extend(["-H", header]);
    }
    let url = format!("http://{addr}/");
    args.push(&url);
    rama_e2e::curl(&args).await.written
}

/// Waits (bounded) for `ws_echo`'s first `closed by the client` log line and asserts it names
/// `code` and `reason`.
async fn assert_echo_saw_the_close(echo: &Running, code: &str, reason: &str) {
    let log = echo.wait_for_log("closed by the client").await;
    let line = log
        .lines()
        .find(|l| l.contains("closed by the client"))
        .unwrap_or_default();
    assert!(line.contains(code) && line.contains(reason), "{line}");
}

/// Runs [`SESSION_CLIENT`]'s two sessions against `url`: each step answered, texts coming back
/// with `tag` in front, and both closes carrying their code and reason.
async fn full_session(url: &str, tag: &str) {
    let lines = run_script(SESSION_CLIENT, &[url, "--server-close"]).await;
    assert_eq!(
        lines,
        [
            format!("text '{tag}hello \u{2713}'"),
            "binary True 1048576 True".to_owned(),
            "pong".to_owned(),
            "close 4001 done here".to_owned(),
            "closed by server 4002 bye now".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_ping_and_closes_through_ws_proxy_to_ws_echo() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(echo.addr, &["--prefix", "[rama] "]);
    // The hook's prefix, on the way back from the echo server.
    full_session(&format!("ws://{}/chat", proxy.addr), "[rama] ").await;
    // The client's close reached the origin with its code and reason.
    assert_echo_saw_the_close(&echo, "4001", "done here").await;
    // Every message is logged with its client, direction and opcode.
    let log = proxy.wait_for_log("client->upstream").await;
    for needle in ["upstream->client", "\"ping\"", "\"binary\"", "\"close\""] {
        assert!(log.contains(needle), "{needle} missing from\n{log}");
    }
    let plain = rama_e2e::plain(&log);
    let message = plain.lines().find(|l| l.contains("ws message")).unwrap();
    assert!(message.contains("peer=127.0.0.1:"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_session_against_ws_echo_directly() {
    let echo = ws_echo(&[]);
    full_session(&format!("ws://{}/", echo.addr), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_ping_gets_exactly_one_pong() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(echo.addr, &[]);
    let mut ws = RawWs::connect(proxy.addr).await;
    ws.send(FIN | PING, b"first", true).await;
    ws.send(FIN | PING, b"second", true).await;
    ws.send(FIN | TEXT, b"after the pings", true).await;
    // The echo server answers the pings before it echoes the text, so a second pong (the
    // relay's own and the origin's) would arrive before the text.
    let mut pongs = Vec::new();
    loop {
        let (opcode, payload) = ws.recv().await;
        match opcode {
            PONG => pongs.push(String::from_utf8(payload).unwrap()),
            TEXT => {
                assert_eq!(payload, b"after the pings");
                break;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert_eq!(pongs, ["first", "second"]);
    let log = proxy.wait_for_log("\"ping\"").await;
    assert!(log.contains("client->upstream"), "{log}");
}

/// Invalid frames get close 1002 and an oversized message 1009, each ending only its own
/// session; `limit` is the server's message size limit.
async fn bad_input_is_answered_and_contained(server: &Running, limit: usize, tag: &str) {
    let mut healthy = RawWs::connect(server.addr).await;
    assert_eq!(healthy.echo("before").await, format!("{tag}before"));

    // A client frame without a mask.
    let mut unmasked = RawWs::connect(server.addr).await;
    unmasked.send(FIN | TEXT, b"no mask", false).await;
    assert_eq!(unmasked.close_code().await, 1002);

    // A reserved data opcode.
    let mut reserved = RawWs::connect(server.addr).await;
    reserved.send(FIN | 0x3, b"what is this", true).await;
    assert_eq!(reserved.close_code().await, 1002);

    // A reserved bit (RSV1: compression nobody negotiated).
    let mut rsv = RawWs::connect(server.addr).await;
    rsv.send(FIN | 0x40 | TEXT, b"deflated?", true).await;
    assert_eq!(rsv.close_code().await, 1002);

    // A message one byte over the limit.
    let mut oversized = RawWs::connect(server.addr).await;
    oversized
        .send(FIN | TEXT, &vec![b'x'; limit + 1], true)
        .await;
    assert_eq!(oversized.close_code().await, 1009);

    // A message at the limit still passes.
    let mut at_limit = RawWs::connect(server.addr).await;
    let full = "y".repeat(limit - tag.len());
    assert_eq!(at_limit.echo(&full).await, format!("{tag}{full}"));

    assert_eq!(healthy.echo("after").await, format!("{tag}after"));
    let log = server.wait_for_log("broke the protocol").await;
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_proxy_answers_bad_frames_with_1002_and_oversized_messages_with_1009() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(
        echo.addr,
        &["--max-message-size", "65536", "--prefix", "> "],
    );
    bad_input_is_answered_and_contained(&proxy, 65536, "> ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_answers_bad_frames_with_1002_and_oversized_messages_with_1009() {
    let echo = ws_echo(&["--max-message-size", "65536"]);
    bad_input_is_answered_and_contained(&echo, 65536, "").await;
}

/// A raw WebSocket origin for one session: it answers the handshake, then runs `script` on the
/// stream and the handshake's head, and reports what the script returns.
fn raw_origin<F, Fut, T>(script: F) -> (SocketAddr, tokio::sync::oneshot::Receiver<T>)
where
    F: FnOnce(TcpStream, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    use rama::ws::tungstenite::handshake::derive_accept_key;

    let (listener, addr) = bind_origin();
    let (report, result) = tokio::sync::oneshot::channel();
    spawn_origin(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let session = async {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                head.push(stream.read_u8().await?);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let key = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, key)| key.trim().to_owned())
                .unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(answer.as_bytes()).await?;
            script(stream, head).await
        };
        if let Ok(Ok(value)) = timeout(PATIENCE, session).await {
            let _ = report.send(value);
        }
    });
    (addr, result)
}

/// The next frame the relay sent an origin (masked, as a client's frames are; short payloads
/// only): its opcode and unmasked payload.
async fn read_client_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let first = stream.read_u8().await?;
    let len = usize::from(stream.read_u8().await? & 0x7F);
    let mut mask = [0; 4];
    stream.read_exact(&mut mask).await?;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok((first & 0x0F, payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_the_protocol_gets_1002_and_the_client_1001() {
    // After the handshake the origin sends a reserved opcode, and reports the close code the
    // relay answers with.
    let (origin, origin_code) = raw_origin(|mut stream, _| async move {
        stream.write_all(&[FIN | 0x3, 2, b'h', b'i']).await?;
        let (opcode, payload) = read_client_frame(&mut stream).await?;
        assert_eq!(opcode, CLOSE);
        Ok(u16::from_be_bytes([payload[0], payload[1]]))
    });
    let proxy = ws_proxy(origin, &[]);
    let mut client = RawWs::connect(proxy.addr).await;
    assert_eq!(client.close_code().await, 1001);
    let code = timeout(PATIENCE, origin_code)
        .await
        .expect("the origin never heard back")
        .expect("the origin failed");
    assert_eq!(code, 1002);
    let log = proxy.wait_for_log("broke the protocol").await;
    assert!(log.contains("upstream"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_ping_reaches_the_client_and_gets_exactly_one_pong() {
    // The origin pings, then counts the pongs it gets before the client's text: the relay's
    // leg answers at once, so the client's own pong must not arrive as a second one.
    let (origin, pongs) = raw_origin(|mut stream, _| async move {
        stream
            .write_all(&[FIN | PING, 6, b'o', b'r', b'i', b'g', b'i', b'n'])
            .await?;
        let mut pongs = Vec::new();
        for _ in 0..10 {
            match read_client_frame(&mut stream).await? {
                (PONG, payload) => pongs.push(String::from_utf8_lossy(&payload).into_owned()),
                (TEXT, payload) => {
                    assert_eq!(payload, b"after the ping");
                    break;
                }
                (other, _) => panic!("unexpected opcode {other:#x}"),
            }
        }
        Ok(pongs)
    });
    let proxy = ws_proxy(origin, &[]);
    let mut client = RawWs::connect(proxy.addr).await;
    let (opcode, payload) = client.recv().await;
    assert_eq!((opcode, payload.as_slice()), (PING, &b"origin"[..]));
    client.send(FIN | PONG, b"origin", true).await;
    client.send(FIN | TEXT, b"after the ping", true).await;
    let pongs = timeout(PATIENCE, pongs)
        .await
        .expect("the origin never heard back")
        .expect("the origin failed");
    assert_eq!(pongs, ["origin"]);
    let log = proxy.wait_for_log("upstream->client").await;
    assert!(log.contains("\"ping\""), "{log}");
}

/// Five texts and a close in one write: every echo the upstream sent before its close reply
/// reaches the client, then that reply (RFC 6455 5.5.1: who sent a close still receives data
/// until the peer's close), over HTTP/1.1 and on an HTTP/2 stream.
async fn echoes_in_flight_come_before_the_close<S>(mut ws: RawWs<S>, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend(frame(FIN | TEXT, format!("message {i}").as_bytes(), true));
    }
    burst.extend(frame(FIN | CLOSE, &[0x0F, 0xA1, b'b', b'y', b'e'], true));
    ws.send_raw(&burst).await;
    for i in 0..5 {
        let (opcode, payload) = ws.recv().await;
        assert_eq!(
            (opcode, String::from_utf8_lossy(&payload)),
            (TEXT, format!("message {i}").into()),
            "{what}"
        );
    }
    // ws_echo answers the close with its code and reason, and the relay passes that on.
    let (opcode, payload) = ws.recv().await;
    assert_eq!(
        (opcode, payload.as_slice()),
        (CLOSE, &[0x0F, 0xA1, b'b', b'y', b'e'][..]),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_messages_in_flight_when_the_client_closes_still_reach_it() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(echo.addr, &[]);
    echoes_in_flight_come_before_the_close(RawWs::connect(proxy.addr).await, "http/1.1").await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, _connection) = h2_handshake(tcp).await;
    let ws = RawWs::h2(&mut send, &format!("http://{}/h2", proxy.addr)).await;
    echoes_in_flight_come_before_the_close(ws, "http/2").await;
    assert_echo_saw_the_close(&echo, "4001", "bye").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_in_flight_when_the_upstream_closes_still_reach_it() {
    // The origin closes first, then reports every frame it gets until the client's close.
    let (origin, frames) = raw_origin(|mut stream, _| async move {
        stream
            .write_all(&[FIN | CLOSE, 4, 0x0F, 0xA2, b'g', b'o'])
            .await?;
        let mut frames = Vec::new();
        loop {
            let (opcode, payload) = read_client_frame(&mut stream).await?;
            frames.push((opcode, payload));
            if opcode == CLOSE {
                return Ok(frames);
            }
        }
    });
    let proxy = ws_proxy(origin, &[]);
    let mut client = RawWs::connect(proxy.addr).await;
    // The client had two texts on their way when the origin's close came.
    client.send(FIN | TEXT, b"late 1", true).await;
    client.send(FIN | TEXT, b"late 2", true).await;
    let (opcode, payload) = client.recv().await;
    assert_eq!(
        (opcode, payload.as_slice()),
        (CLOSE, &[0x0F, 0xA2, b'g', b'o'][..])
    );
    client
        .send(FIN | CLOSE, &[0x0F, 0xA2, b'g', b'o'], true)
        .await;
    let frames = timeout(PATIENCE, frames)
        .await
        .expect("the origin never heard back")
        .expect("the origin failed");
    assert_eq!(
        frames,
        [
            (TEXT, b"late 1".to_vec()),
            (TEXT, b"late 2".to_vec()),
            (CLOSE, vec![0x0F, 0xA2, b'g', b'o']),
        ]
    );
}

/// Every frame the relay sends an origin until it closes the connection.
async fn read_client_frames_to_end(stream: &mut TcpStream) -> std::io::Result<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    loop {
        match read_client_frame(stream).await {
            Ok(frame) => frames.push(frame),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(frames),
            Err(error) => return Err(error),
        }
    }
}

/// The close timeout `ws_proxy` is given in the close-timeout tests: short, so that they are
/// quick, and apart from the 5 s default, so that they show it is the one that counts.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Asserts that the `client`'s connection ends after a close went unanswered (the close at
/// `start`): after the close timeout and before twice that (the closing side's own close
/// handshake may take another timeout, but the silent side is not held open meanwhile); that
/// the origin's connection ends too, having seen that `close` and nothing else (`frames`, what
/// the raw origin read); and that `ws_proxy` logged it, naming the client and the `side` that
/// never answered.
async fn assert_ended_at_the_close_timeout(
    proxy: &Running,
    client: &mut RawWs,
    start: Instant,
    frames: tokio::sync::oneshot::Receiver<Vec<(u8, Vec<u8>)>>,
    close: &[u8],
    side: &str,
) {
    client.closed().await;
    let waited = start.elapsed();
    let frames = timeout(PATIENCE, frames)
        .await
        .expect("the origin's connection never ended")
        .expect("the origin failed");
    assert_eq!(frames, [(CLOSE, close.to_vec())]);
    assert!(
        (CLOSE_TIMEOUT..CLOSE_TIMEOUT * 2).contains(&waited),
        "ended after {waited:?}"
    );
    proxy.wait_for_log("ws relay: session closed").await;
    let line = proxy
        .wait_for_line("no close answered the close in time")
        .await;
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.contains(&format!("side=\"{side}\"")), "{line}");
}

/// The client closes and the origin never answers: once the close timeout has passed, the
/// client gets the echo of its own close and both connections end; the origin got the close
/// and nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_the_upstream_never_answers_ends_the_session_at_the_close_timeout() {
    let (origin, frames) =
        raw_origin(|mut stream, _| async move { read_client_frames_to_end(&mut stream).await });
    let seconds = CLOSE_TIMEOUT.as_secs().to_string();
    let proxy = ws_proxy(origin, &["--close-timeout", &seconds]);
    let mut client = RawWs::connect(proxy.addr).await;
    let close = [0x0F, 0xA1, b'b', b'y', b'e'];
    let start = Instant::now();
    client.send(FIN | CLOSE, &close, true).await;
    assert_eq!(client.recv().await, (CLOSE, close.to_vec()));
    assert_ended_at_the_close_timeout(&proxy, &mut client, start, frames, &close, "upstream").await;
}

/// The origin closes and the client never answers: once the close timeout has passed, the
/// client's connection ends, and the origin gets the echo of its own close and then its
/// connection ends too (after its own close handshake, which the raw origin never finishes:
/// within another close timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_the_client_never_answers_ends_the_session_at_the_close_timeout() {
    let close = [0x0F, 0xA2, b'g', b'o'];
    let (origin, frames) = raw_origin(move |mut stream, _| async move {
        stream
            .write_all(&[&[FIN | CLOSE, 4][..], &close].concat())
            .await?;
        read_client_frames_to_end(&mut stream).await
    });
    let seconds = CLOSE_TIMEOUT.as_secs().to_string();
    let proxy = ws_proxy(origin, &["--close-timeout", &seconds]);
    // Before the handshake: the origin's close may pass the proxy, and start its timer,
    // before the client has read the handshake's answer.
    let start = Instant::now();
    let mut client = RawWs::connect(proxy.addr).await;
    assert_eq!(client.recv().await, (CLOSE, close.to_vec()));
    assert_ended_at_the_close_timeout(&proxy, &mut client, start, frames, &close, "client").await;
}

/// The forwarding headers of the reverse proxy (the fallback of plain requests) reach the
/// origin of a relayed WebSocket too: earlier `X-Forwarded-For` lines joined with the peer
/// after them, the scheme, the host the client asked for, `Forwarded` and `Via`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_handshake_carries_the_forwarding_headers() {
    let (origin, head) = raw_origin(|_, head| async move { Ok(head) });
    let proxy = ws_proxy(origin, &[]);
    let forwarded_for = ["X-Forwarded-For: 10.9.9.9", "X-Forwarded-For: 10.8.8.8"];
    let _client = RawWs::connect_with(proxy.addr, &forwarded_for).await;
    let head = timeout(PATIENCE, head)
        .await
        .expect("the origin never got the handshake")
        .expect("the origin failed");
    let header = |name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned())
            .collect()
    };
    let host = proxy.addr.to_string();
    assert_eq!(
        header("x-forwarded-for"),
        ["10.9.9.9, 10.8.8.8, 127.0.0.1"],
        "{head}"
    );
    assert_eq!(header("x-forwarded-proto"), ["http"], "{head}");
    assert_eq!(header("x-forwarded-host"), [host.as_str()], "{head}");
    assert_eq!(
        header("forwarded"),
        [format!("for=127.0.0.1;host=\"{host}\";proto=http")],
        "{head}"
    );
    assert_eq!(header("via"), ["1.1 rama"], "{head}");
    // The upstream's own `Host`, as the reverse proxy sends it.
    assert_eq!(header("host"), [origin.to_string()], "{head}");
}

/// `relay` behind `http::Server` in this process, with `only` put on every request in front of
/// it, as the egress rules of `http::ForwardProxy` and `http::Mitm` pin the addresses they
/// judged. Plain requests get an empty `200`.
fn relay_here(relay: rama::ws::Relay, only: Option<DialOnly>) -> SocketAddr {
    origin_thread(move |listener| async move {
        let plain = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        let pin = tower::util::MapRequestLayer::new(move |mut request: http::Request<Body>| {
            if let Some(only) = &only {
                request.extensions_mut().insert(only.clone());
            }
            request
        });
        let stack = rama::http::Server::new().layer(pin.layer(relay.layer(plain)));
        let _ = rama::tcp::Server::from_std(listener).serve(stack).await;
    })
}

/// A requested relay dials a request's [`DialOnly`] addresses, in turn, instead of resolving
/// its host again, as `http::Client` does: the egress rules judged those addresses, and a
/// second lookup could answer with one they deny (DNS rebinding). The host is under
/// `.invalid` (RFC 6761), which never resolves: unpinned, the relay cannot reach it (`502`);
/// pinned (a closed port first), the origin gets the handshake, which still names the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_relay_dials_only_the_addresses_a_request_is_pinned_to() {
    let (origin, head) = raw_origin(|_, head| async move { Ok(head) });
    let authority = format!("rebind.invalid:{}", origin.port());
    let target = format!("http://{authority}/pinned");

    let unpinned = relay_here(rama::ws::Relay::requested(), None);
    let (_, answer) = upgrade(unpinned, &target, &authority, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");

    let only = DialOnly::new([rama_e2e::closed_port(), origin]);
    let pinned = relay_here(rama::ws::Relay::requested(), Some(only));
    let (_, answer) = upgrade(pinned, &target, &authority, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let head = timeout(PATIENCE, head)
        .await
        .expect("the origin never got the handshake")
        .expect("the origin failed");
    assert!(head.starts_with("GET /pinned HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("\r\nhost: {authority}\r\n")),
        "{head}"
    );
}

/// A relay whose upstream is its own address refuses to dial it (`502`), as `Target` and
/// `http::Client` do: each upgrade it relayed to itself would come back as a new one, a
/// connection more each time, until the connect timeout or the file descriptors ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_the_relay_itself_is_502_not_a_loop() {
    let port = rama_e2e::closed_port().port();
    let own = format!("127.0.0.1:{port}");
    let proxy = Running::start(
        "ws_proxy",
        &["--listen", &own, "--upstream", &own, "--threads", "1"],
    );
    let start = Instant::now();
    let (client, answer) = upgrade(proxy.addr, "/loop", &own, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        start.elapsed()
    );
    drop(client);
    // The one upgrade, and no connection to itself left open.
    rama_e2e::until("no connection to the relay left", || {
        rama_e2e::accepted(port) == 0
    })
    .await;
    let log = proxy.stderr();
    assert!(log.contains("it is this proxy's own address"), "{log}");
    assert_eq!(log.matches("cannot open the upstream").count(), 1, "{log}");
}

/// A `wss://` upstream that takes the connection and never answers the TLS handshake: the
/// client is answered `504` once the relay's TLS connector gives up, as for a dial that
/// timed out (not `502`, a failed handshake), and long before the relay's own connect
/// timeout would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_upstream_that_never_answers_the_tls_handshake_is_504() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
    // The kernel completes the TCP handshake on its own; nothing ever reads or writes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("wss://{}", silent.local_addr().unwrap());
    let tls = rama::tls::Connector::webpki_roots().handshake_timeout(HANDSHAKE_TIMEOUT);
    let relay = rama::ws::Relay::to(&upstream)
        .unwrap()
        .tls(tls)
        .connect_timeout(CONNECT_TIMEOUT);
    let proxy = relay_here(relay, None);
    let start = Instant::now();
    let (_, answer) = upgrade(proxy, "/chat", &proxy.to_string(), &[]).await;
    let waited = start.elapsed();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        (HANDSHAKE_TIMEOUT..CONNECT_TIMEOUT / 4).contains(&waited),
        "answered after {waited:?}"
    );
}

const HEADER_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect

async def main(url):
    ws = await connect(url, subprotocols=["chat", "superchat"],
                       additional_headers={"Cookie": "session=42", "Authorization": "Bearer t0ken"})
    print("subprotocol", ws.subprotocol, flush=True)
    await ws.send("hi")
    print("text", await ws.recv(), flush=True)
    await ws.close()

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 20))
"#;

/// [`ECHO_ORIGIN`] printing the handshake headers; over TLS with `tls` (a directory of
/// [`origin_certificate`]).
async fn header_origin(tls: Option<&std::path::Path>) -> PythonServer {
    let mut args = vec!["--headers".into()];
    if let Some(dir) = tls {
        args.extend(["--cert".into(), dir.join("origin.pem").into_os_string()]);
        args.extend(["--key".into(), dir.join("origin.key").into_os_string()]);
    }
    PythonServer::start::<std::ffi::OsString>(ECHO_ORIGIN, &args).await
}

/// What [`header_origin`] prints for a session of [`HEADER_CLIENT`].
async fn assert_origin_saw_the_handshake(origin: &mut PythonServer) {
    assert_eq!(origin.next_line().await, "path /");
    assert_eq!(origin.next_line().await, "cookie session=42");
    assert_eq!(origin.next_line().await, "authorization Bearer t0ken");
    // The client offered permessage-deflate; the relay does not pass it on.
    assert_eq!(origin.next_line().await, "extensions None");
    assert_eq!(origin.next_line().await, "subprotocol superchat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_headers_reach_the_origin_and_its_subprotocol_comes_back() {
    let mut origin = header_origin(None).await;
    let proxy = ws_proxy(origin.addr, &["--prefix", "* "]);

    let client = run_script(HEADER_CLIENT, &[&format!("ws://{}/", proxy.addr)]).await;
    assert_eq!(client, ["subprotocol superchat", "text * hi"]);
    assert_origin_saw_the_handshake(&mut origin).await;
}

/// `--upstream-ca` verifies the `wss://` upstream and the `https://` one plain requests go to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_upstream_and_its_https_fallback_are_verified_against_the_given_ca() {
    let dir = origin_certificate("ws-wss");
    let mut origin = header_origin(Some(&dir)).await;
    let upstream = format!("wss://localhost:{}", origin.addr.port());
    let ca_file = dir.join("ca.pem");
    let trusting = ws_proxy(&upstream, &["--upstream-ca", ca_file.to_str().unwrap()]);
    let client = run_script(HEADER_CLIENT, &[&format!("ws://{}/", trusting.addr)]).await;
    assert_eq!(client, ["subprotocol superchat", "text hi"]);
    assert_origin_saw_the_handshake(&mut origin).await;
    // A plain request reached the origin over verified TLS: `websockets` answers it 426 (the
    // fallback without the CA answered 502, unknown issuer).
    assert_eq!(curl_status(trusting.addr, &[]).await, "426");

    // Without the CA the origin's certificate is not trusted: 502, and a log line saying so.
    let untrusting = ws_proxy(&upstream, &[]);
    let upgrade = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    assert_eq!(curl_status(untrusting.addr, &upgrade).await, "502");
    let log = untrusting.wait_for_log("cannot open the upstream").await;
    assert!(log.contains("tls handshake"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_pass_to_the_inner_service() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(echo.addr, &[]);
    for addr in [echo.addr, proxy.addr] {
        // ws_echo answers 426 itself; through ws_proxy the request reached it over HTTP.
        assert_eq!(curl_status(addr, &[]).await, "426", "{addr}");
    }
    proxy.wait_for_log("reverse proxy: forwarding").await;
}

/// A session against `sys.argv[1]` that, once open, sends SIGTERM to the server's process
/// (`sys.argv[2]`) and waits for the server to close it: prints the close and how long it took.
const SHUTDOWN_CLIENT: &str = r#"
import asyncio, os, signal, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url, pid):
    ws = await connect(url)
    await ws.send("before")
    print("echo", await ws.recv(), flush=True)
    start = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    try:
        for _ in range(10):
            print("unexpected", await ws.recv(), flush=True)
    except ConnectionClosed:
        pass
    print("closed", ws.close_code, ws.close_reason, flush=True)
    print(f"after {time.monotonic() - start:.3f}", flush=True)

asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2])), 25))
"#;

/// Runs [`SHUTDOWN_CLIENT`] against `server` and checks that the session was
/// closed with 1001 well before the 30 s drain deadline, and that the server then exited
/// cleanly.
async fn sigterm_closes_the_session_with_1001(server: &mut Running) {
    let url = format!("ws://{}/", server.addr);
    let lines = run_script(SHUTDOWN_CLIENT, &[&url, &server.pid().to_string()]).await;
    assert_eq!(
        lines[..2],
        ["echo before", "closed 1001 the server is shutting down"],
        "{lines:?}"
    );
    let seconds: f64 = lines[2]
        .strip_prefix("after ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    // The close timeout is 5 s and the drain deadline 30 s; the close itself takes a round trip.
    assert!(seconds < 3.0, "the close came after {seconds} s");
    assert!(server.wait_exit().await, "{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_sessions_with_1001_on_both_legs() {
    let mut echo = ws_echo(&[]);
    let mut proxy = ws_proxy(echo.addr, &[]);
    // Through the relay: the client gets 1001, and so does the upstream (ws_echo logs it).
    sigterm_closes_the_session_with_1001(&mut proxy).await;
    assert_echo_saw_the_close(&echo, "1001", "the server is shutting down").await;
    // Against ws::Serve: its handler's `recv` closes with 1001 and ends.
    sigterm_closes_the_session_with_1001(&mut echo).await;
    let log = echo.wait_for_log("server stopped").await;
    let line = log.lines().rfind(|l| l.contains("session ended")).unwrap();
    // The handler learned why: `socket.shutdown().is_triggered()`.
    assert!(line.contains("shutdown") && line.contains("true"), "{line}");
}

/// Shutting down no longer waits for sessions to end on their own (they get 1001), but it
/// still waits for the close handshake, and refuses new connections meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_the_close_reply() {
    let echo = ws_echo(&[]);
    let mut proxy = ws_proxy(echo.addr, &[]);
    let mut ws = RawWs::connect(proxy.addr).await;
    assert_eq!(ws.echo("before").await, "before");
    proxy.send_sigterm();
    assert_eq!(ws.close_code().await, 1001);
    assert!(TcpStream::connect(proxy.addr).await.is_err());
    // The reply is due within the close timeout (5 s); until then the proxy waits for it.
    assert!(proxy.is_running());
    ws.send(FIN | CLOSE, &[0x03, 0xE9], true).await;
    assert!(proxy.wait_exit().await, "{}", proxy.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_on_http2_streams_reach_serve_relay_and_the_reverse_proxy() {
    let echo = ws_echo(&[]);
    let relay = ws_proxy(echo.addr, &["--prefix", "[rama] "]);
    let upstream = format!("http://{}", echo.addr);
    let reverse = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    for (what, addr, tag) in [
        ("ws::Serve", echo.addr, ""),
        ("ws::Relay", relay.addr, "[rama] "),
        ("the reverse proxy", reverse.addr, ""),
    ] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, connection) = h2_handshake(tcp).await;
        // Two WebSockets at once on the one connection, each with its own messages.
        let mut first = RawWs::h2(&mut send, &format!("http://{addr}/one")).await;
        let mut second = RawWs::h2(&mut send, &format!("http://{addr}/two")).await;
        assert_eq!(first.echo("first").await, format!("{tag}first"), "{what}");
        assert_eq!(
            second.echo("second").await,
            format!("{tag}second"),
            "{what}"
        );
        assert_eq!(first.echo("again").await, format!("{tag}again"), "{what}");
        // The close handshake ends one; the other is untouched.
        first
            .send(FIN | CLOSE, &[0x0F, 0xA1, b'b', b'y', b'e'], true)
            .await;
        assert_eq!(first.close_code().await, 4001, "{what}");
        assert_eq!(second.echo("still").await, format!("{tag}still"), "{what}");
        drop((first, second, send));
        let _ = timeout(PATIENCE, connection).await;
    }
    assert_echo_saw_the_close(&echo, "4001", "bye").await;
}

/// A WebSocket opened with the `h2` crate (raw streams, resets) on a new HTTP/2 connection to
/// `addr` (RFC 8441), answered `200`: the connection's handle (kept for the connection to
/// stay), the stream's sending half, and the client's address, as the server's logs name it.
async fn h2_websocket(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::SendStream<Bytes>,
    SocketAddr,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let (client, mut connection) = timeout(PATIENCE, h2::client::handshake(tcp))
        .await
        .expect("the HTTP/2 handshake in time")
        .expect("the HTTP/2 handshake");
    let mut ping = connection
        .ping_pong()
        .expect("the connection's ping handle");
    tokio::spawn(connection);
    // The server's settings, which offer extended CONNECT, come before its answer to a ping.
    timeout(PATIENCE, ping.ping(h2::Ping::opaque()))
        .await
        .expect("the ping answered in time")
        .unwrap();
    let mut client = client.ready().await.unwrap();
    assert!(client.is_extended_connect_protocol_enabled());
    let mut request = http::Request::connect(format!("http://{addr}/chat"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, stream) = client.send_request(request, false).unwrap();
    let response = timeout(PATIENCE, response)
        .await
        .expect("the WebSocket answered in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    (client, stream, me)
}

/// An origin that switches protocols, then reads nothing; reports when its connection was
/// closed, and how (`ConnectionReset` for a RST).
fn deaf_origin() -> (
    SocketAddr,
    tokio::sync::oneshot::Receiver<(Instant, Option<std::io::ErrorKind>)>,
) {
    raw_origin(|stream, _| async move {
        closed_by_peer(&stream).await;
        let error = stream.take_error()?.map(|error| error.kind());
        Ok((Instant::now(), error))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_websocket_reset_by_its_client_closes_its_stalled_upstream_at_once() {
    // RFC 8441 through the reverse proxy (a byte relay) to an origin that reads nothing: once
    // its buffers are full, the relay waits on the upstream and reads no more of the client's
    // stream, so only the stream's signal can tell it of the client's reset.
    let (origin, closed) = deaf_origin();
    let upstream = format!("http://{origin}");
    let mut proxy = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    let (_client, mut stream, me) = h2_websocket(proxy.addr).await;
    let sent = send_until_stalled(&mut stream, Bytes::from(vec![b'x'; 64 << 10])).await;
    let reset = Instant::now();
    stream.send_reset(h2::Reason::CANCEL);
    // With a RST (RFC 8441 5: the stream's reset is the WebSocket's TCP RST), not a FIN
    // waiting behind the bytes the origin never read.
    assert_origin_reset_at_once(closed, reset, sent, &mut proxy, me).await;
}

/// Waits up to 3 s for the deaf origin's connection to close after the client's reset at
/// `reset`, with a `RST`, and for the proxy's line saying so.
async fn assert_origin_reset_at_once(
    closed: tokio::sync::oneshot::Receiver<(Instant, Option<std::io::ErrorKind>)>,
    reset: Instant,
    sent: usize,
    proxy: &mut Running,
    me: SocketAddr,
) {
    let (closed, error) = timeout(Duration::from_secs(3), closed)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the origin's connection still open 3 s after the reset ({sent} bytes sent):\n{}",
                proxy.stderr()
            )
        })
        .expect("the origin's session");
    assert!(
        closed >= reset,
        "closed before the reset ({sent} bytes sent):\n{}",
        proxy.stderr()
    );
    assert_eq!(error, Some(std::io::ErrorKind::ConnectionReset));
    let line = proxy
        .wait_for_line("upgraded stream reset by the client")
        .await;
    assert!(line.contains(&format!("peer={me}")), "{line}");
    assert!(proxy.is_running());
}

/// Asks for a WebSocket over HTTP/1.1 on `client` (to the reverse proxy in front of
/// `origin`), and reads the `101`.
async fn upgrade_h1(client: &mut TcpStream, origin: SocketAddr) {
    let upgrade = format!(
        "GET /chat HTTP/1.1\r\nHost: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    client.write_all(upgrade.as_bytes()).await.unwrap();
    let head = timeout(PATIENCE, read_head(client)).await.unwrap();
    let head = head.unwrap().expect("the upgrade's answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// The other way round: an origin that switched, wrote until the way to a client that reads
/// nothing (and sends nothing) is full, then reset its connection, has the client's reset at
/// once: the relay watches the origin's socket while it neither reads nor writes it. Before,
/// the upgraded connection was held until the client moved or the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_reset_towards_a_stalled_h1_websocket_client_resets_the_client_at_once() {
    let (origin, stalled) = raw_origin(|stream, _| async move {
        let sent = rama_e2e::write_until_stalled(&stream).await;
        stream.set_zero_linger()?;
        Ok(sent)
    });
    let upstream = format!("http://{origin}");
    let proxy = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // The smallest receive buffer the system allows: the origin's bytes soon fill the way.
    socket.set_recv_buffer_size(1).unwrap();
    let mut client = socket.connect(proxy.addr).await.unwrap();
    upgrade_h1(&mut client, origin).await;
    let sent = timeout(PATIENCE, stalled)
        .await
        .expect("the origin stalled and reset in time")
        .expect("the origin's session");
    rama_e2e::assert_reset_at_once(&client, &proxy, || {
        format!("the client's connection, after {sent} bytes and the origin's reset")
    })
    .await;
}

/// The same over HTTP/1.1: a WebSocket upgraded through the reverse proxy, whose client gives
/// up with a TCP `RST` once the origin's buffers are full (the relay then waits on the origin
/// both ways, and hyper's upgraded stream over the client's socket says nothing), has the
/// origin reset at once. Before, the relay was held until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h1_websocket_reset_by_its_client_closes_its_stalled_upstream_at_once() {
    let (origin, closed) = deaf_origin();
    let upstream = format!("http://{origin}");
    let mut proxy = Running::start_local("reverse_proxy", &["--upstream", &upstream]);
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let me = client.local_addr().unwrap();
    upgrade_h1(&mut client, origin).await;
    let sent = rama_e2e::write_until_stalled(&client).await;
    client.set_zero_linger().unwrap();
    // Taken before the close that sends the reset: the proxy may act on it before this
    // thread runs again.
    let reset = Instant::now();
    drop(client);
    assert_origin_reset_at_once(closed, reset, sent, &mut proxy, me).await;
}

/// The same over HTTP/1.1: `ws::Relay` blocked handing a message to an upstream that reads
/// nothing learns of the client's TCP `RST` from the client's socket, and the upstream gets
/// its close. Before, the session stayed blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h1_websocket_reset_by_its_client_ends_a_relay_session_stalled_on_its_upstream() {
    let (origin, _closed) = deaf_origin();
    let proxy = ws_proxy(origin, &["--close-timeout", "1"]);
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let me = client.local_addr().unwrap();
    upgrade_h1(&mut client, origin).await;
    let frames = frame(FIN | TEXT, &[b'x'; 16 << 10], true);
    let mut sent = 0usize;
    while let Ok(written) = timeout(Duration::from_millis(500), client.write_all(&frames)).await {
        written.unwrap();
        sent += frames.len();
        assert!(sent < 256 << 20, "the proxy never stopped taking frames");
    }
    client.set_zero_linger().unwrap();
    drop(client);
    assert_session_ends_at_the_reset(&proxy, "the client reset its connection", sent, me).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_websocket_reset_by_its_client_ends_a_relay_session_stalled_on_its_upstream() {
    // The same through `ws::Relay`, which carries messages: blocked handing one to the
    // upstream, it read no more of the client until the close timeout's clock never started.
    let (origin, _closed) = deaf_origin();
    let proxy = ws_proxy(origin, &["--close-timeout", "1"]);
    let (_client, mut stream, me) = h2_websocket(proxy.addr).await;
    let frames = Bytes::from(frame(FIN | TEXT, &[b'x'; 16 << 10], true));
    let sent = send_until_stalled(&mut stream, frames).await;
    stream.send_reset(h2::Reason::CANCEL);
    assert_session_ends_at_the_reset(&proxy, "the client reset its stream", sent, me).await;
}

/// Waits up to 3 s for `ws_proxy`'s line `reset` about the client at `me` (which reset after
/// `sent` bytes), then for the session's end: the upstream got its close, or its close
/// timeout (1 s) passed.
async fn assert_session_ends_at_the_reset(
    proxy: &Running,
    reset: &str,
    sent: usize,
    me: SocketAddr,
) {
    let line = timeout(Duration::from_secs(3), proxy.wait_for_line(reset))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the session did not end 3 s after the reset ({sent} bytes sent):\n{}",
                proxy.stderr()
            )
        });
    assert!(line.contains(&format!("peer={me}")), "{line}");
    let line = timeout(
        Duration::from_secs(3),
        proxy.wait_for_line("session closed"),
    )
    .await
    .expect("the session closed within the close timeout");
    assert!(line.contains(&format!("peer={me}")), "{line}");
}

/// Pieces the mutations put into WebSocket traffic: frame heads' first and second bytes of
/// every kind (reserved bits and opcodes, continuation, 16- and 64-bit lengths, unmasked),
/// text that is not UTF-8, close codes no one may send, and handshake lines.
const WS_PIECES: &[&[u8]] = &[
    b"\x80",
    b"\x00",
    b"\x01",
    b"\x03",
    b"\x08",
    b"\x0a",
    b"\x0b",
    b"\x41",
    b"\xc1",
    b"\x7e",
    b"\x7f",
    b"\xfe",
    b"\xff",
    b"\x88\x80",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xc3\x28",
    b"\x03\xed",
    b"\x03\xf0",
    b"\r\n",
    b"Sec-WebSocket-Version: 8\r\n",
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n",
    b"Connection: close\r\n",
    b"Content-Length: 5\r\n",
];

/// Mutated WebSocket traffic (`tests/support/mutate.rs`), the opening handshake and frames of
/// every kind, thrown at `ws_proxy` in front of `ws_echo` (`rama_e2e::throw_mutated_beside`)
/// while sessions beside it, one after another, have a text echoed: every echo comes back,
/// every thrown connection is closed once its client has sent all and shut its side (the close
/// timeout is 1 s), and the proxy neither panics nor stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_traffic_neither_panics_the_relay_nor_holds_up_its_other_sessions() {
    let echo = ws_echo(&[]);
    let mut proxy = ws_proxy(echo.addr, &["--close-timeout", "1"]);
    let addr = proxy.addr;
    let masked = |first, payload: &[u8]| frame(first, payload, true);
    let seeds: Vec<Vec<u8>> = [
        vec![masked(FIN | TEXT, b"hello")],
        vec![masked(0x02 | FIN, &[7; 200])],
        vec![
            masked(TEXT, b"frag"),
            masked(FIN | PING, b"p"),
            masked(FIN, b"mented"),
        ],
        vec![masked(FIN | PING, b"ping"), masked(FIN | PONG, b"unasked")],
        vec![
            masked(FIN | TEXT, b"bye"),
            masked(FIN | CLOSE, b"\x03\xe8done"),
        ],
        vec![masked(FIN | CLOSE, b"")],
    ]
    .iter()
    .map(|frames| {
        [
            upgrade_request("/raw", &addr.to_string(), &[]).into_bytes(),
            frames.concat(),
        ]
        .concat()
    })
    .collect();
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let held = rama_e2e::throw_mutated_beside(addr, &seeds, WS_PIECES, move || async move {
        let mut session = RawWs::connect(addr).await;
        let text = "beside the mutated traffic";
        assert_eq!(session.echo(text).await, text);
    })
    .await;
    proxy.assert_running_without_a_panic();
    assert_eq!(
        held, 0,
        "connections still open 5 s after their client's end"
    );
    let mut after = RawWs::connect(addr).await;
    assert_eq!(after.echo("after").await, "after");
}
