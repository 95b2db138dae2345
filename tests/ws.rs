//! WebSocket end to end: `ws_echo` (`ws::Serve`) and `ws_proxy` (`ws::Relay`) as real
//! processes, driven by Python's `websockets` and by a raw-frame client for what a polite
//! client never sends (unmasked and reserved-opcode frames, oversized messages) and for
//! counting pongs.

use rama_e2e::{
    PATIENCE, Running, bind_origin,
    python::python_with_socks,
    spawn_origin,
    ws::{CLOSE, FIN, PING, PONG, RawWs, TEXT},
};
use std::{net::SocketAddr, process::Stdio};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
    time::timeout,
};

fn ws_echo(args: &[&str]) -> Running {
    let mut all = vec!["--listen", "127.0.0.1:0", "--threads", "1"];
    all.extend_from_slice(args);
    Running::start("ws_echo", &all)
}

/// `ws_proxy` to `upstream` (`HOST:PORT` or a `ws://`/`wss://` URL) with `args`.
fn ws_proxy(upstream: impl ToString, args: &[&str]) -> Running {
    let upstream = upstream.to_string();
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--upstream",
        &upstream,
    ];
    all.extend_from_slice(args);
    Running::start("ws_proxy", &all)
}

/// The status curl gets for `GET http://ADDR/` with `headers`.
async fn curl_status(addr: SocketAddr, headers: &[&str]) -> String {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]);
    for header in headers {
        curl.args(["-H", header]);
    }
    let output = timeout(PATIENCE, curl.arg(format!("http://{addr}/")).output())
        .await
        .expect("curl took too long")
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a Python script with `args`; returns its stdout lines, failing on a non-zero exit.
async fn python(script: &str, args: &[&str]) -> Vec<String> {
    let output = timeout(
        PATIENCE,
        Command::new(python_with_socks())
            .args(["-c", script])
            .args(args)
            .output(),
    )
    .await
    .expect("the python client took too long")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Two sessions against `sys.argv[1]`: text, binary, ping and a client close with a code and a
/// reason; then a close the server starts (the echo server's `/close CODE REASON`).
const SESSION_CLIENT: &str = r#"
import asyncio, hashlib, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url):
    ws = await connect(url, max_size=None)
    await ws.send("hello \u2713")
    print("text", repr(await ws.recv()), flush=True)
    data = bytes(range(256)) * 800
    await ws.send(data)
    got = await ws.recv()
    print("binary", isinstance(got, bytes), len(got),
          hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), flush=True)
    pong = await ws.ping(b"are you there")
    await asyncio.wait_for(pong, 10)
    print("pong", flush=True)
    await ws.close(4001, "done here")
    print("close", ws.close_code, ws.close_reason, flush=True)

    ws = await connect(url)
    await ws.send("/close 4002 bye now")
    try:
        await ws.recv()
    except ConnectionClosed:
        pass
    print("closed by server", ws.close_code, ws.close_reason, flush=True)

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 20))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_ping_and_closes_through_ws_proxy_to_ws_echo() {
    let echo = ws_echo(&[]);
    let proxy = ws_proxy(echo.addr, &["--prefix", "[rama] "]);
    let lines = python(SESSION_CLIENT, &[&format!("ws://{}/chat", proxy.addr)]).await;
    assert_eq!(
        lines,
        [
            // The hook's prefix, on the way back from the echo server.
            "text '[rama] hello \u{2713}'",
            "binary True 204800 True",
            "pong",
            "close 4001 done here",
            "closed by server 4002 bye now",
        ]
    );
    // The client's close reached the origin with its code and reason.
    let log = echo.wait_for_log("closed by the client").await;
    let line = log
        .lines()
        .find(|l| l.contains("closed by the client"))
        .unwrap();
    assert!(
        line.contains("4001") && line.contains("done here"),
        "{line}"
    );
    // Every message is logged with its direction and opcode.
    let log = proxy.wait_for_log("client->upstream").await;
    for needle in ["upstream->client", "\"ping\"", "\"binary\"", "\"close\""] {
        assert!(log.contains(needle), "{needle} missing from\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_session_against_ws_echo_directly() {
    let echo = ws_echo(&[]);
    let lines = python(SESSION_CLIENT, &[&format!("ws://{}/", echo.addr)]).await;
    assert_eq!(
        lines,
        [
            "text 'hello \u{2713}'",
            "binary True 204800 True",
            "pong",
            "close 4001 done here",
            "closed by server 4002 bye now",
        ]
    );
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
/// stream and reports what the script returns.
fn raw_origin<F, Fut, T>(script: F) -> (SocketAddr, tokio::sync::oneshot::Receiver<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
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
            script(stream).await
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
    let (origin, origin_code) = raw_origin(|mut stream| async move {
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
    let (origin, pongs) = raw_origin(|mut stream| async move {
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

/// A WebSocket origin that selects the `superchat` subprotocol, prints the handshake headers
/// the relay passed on, and echoes; over TLS when given a certificate and key file.
const HEADER_ORIGIN: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.server import serve

async def echo(ws):
    h = ws.request.headers
    print("cookie", h.get("Cookie"), flush=True)
    print("authorization", h.get("Authorization"), flush=True)
    print("extensions", h.get("Sec-WebSocket-Extensions"), flush=True)
    print("subprotocol", ws.subprotocol, flush=True)
    async for message in ws:
        await ws.send(message)

async def main():
    tls = None
    if len(sys.argv) == 3:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(echo, "127.0.0.1", 0, subprotocols=["superchat"], ssl=tls) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"#;

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

/// [`HEADER_ORIGIN`] as a process (`args`: a certificate and key for TLS, or nothing), its
/// address and its output lines.
async fn header_origin(
    args: &[&std::path::Path],
) -> (
    tokio::process::Child,
    SocketAddr,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut origin = Command::new(python_with_socks())
        .args(["-c", HEADER_ORIGIN])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the websocket origin");
    let mut lines = BufReader::new(origin.stdout.take().unwrap()).lines();
    let ready = next_line(&mut lines).await;
    let addr = ready
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{ready}"))
        .parse()
        .unwrap();
    (origin, addr, lines)
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    timeout(PATIENCE, lines.next_line())
        .await
        .expect("the websocket origin took too long")
        .expect("read the origin's output")
        .expect("the websocket origin ended early")
}

/// What [`HEADER_ORIGIN`] prints for a session of [`HEADER_CLIENT`].
async fn assert_origin_saw_the_handshake(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    assert_eq!(next_line(lines).await, "cookie session=42");
    assert_eq!(next_line(lines).await, "authorization Bearer t0ken");
    // The client offered permessage-deflate; the relay does not pass it on.
    assert_eq!(next_line(lines).await, "extensions None");
    assert_eq!(next_line(lines).await, "subprotocol superchat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_headers_reach_the_origin_and_its_subprotocol_comes_back() {
    let (_origin, origin_addr, mut lines) = header_origin(&[]).await;
    let proxy = ws_proxy(origin_addr, &["--prefix", "* "]);

    let client = python(HEADER_CLIENT, &[&format!("ws://{}/", proxy.addr)]).await;
    assert_eq!(client, ["subprotocol superchat", "text * hi"]);
    assert_origin_saw_the_handshake(&mut lines).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_upstream_is_verified_against_the_given_ca() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ws-wss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rama::tls::dev::Ca::generate("rama ws test CA").unwrap();
    ca.write(&dir).unwrap();
    let (cert, key) = ca
        .issue_server(&["localhost"])
        .unwrap()
        .write(&dir, "origin")
        .unwrap();
    let (_origin, origin_addr, mut lines) = header_origin(&[&cert, &key]).await;
    let upstream = format!("wss://localhost:{}", origin_addr.port());
    let ca_file = dir.join("ca.pem");
    let trusting = ws_proxy(&upstream, &["--upstream-ca", ca_file.to_str().unwrap()]);
    let client = python(HEADER_CLIENT, &[&format!("ws://{}/", trusting.addr)]).await;
    assert_eq!(client, ["subprotocol superchat", "text hi"]);
    assert_origin_saw_the_handshake(&mut lines).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_waits_for_open_sessions() {
    let echo = ws_echo(&[]);
    let mut proxy = ws_proxy(echo.addr, &[]);
    let mut ws = RawWs::connect(proxy.addr).await;
    assert_eq!(ws.echo("before").await, "before");
    proxy.send_sigterm();
    proxy.wait_for_log("shutting down").await;
    // The session lives on while the server drains; new connections are refused.
    assert_eq!(ws.echo("while draining").await, "while draining");
    assert!(TcpStream::connect(proxy.addr).await.is_err());
    assert!(proxy.is_running());
    ws.send(FIN | CLOSE, &[0x03, 0xE8], true).await;
    assert_eq!(ws.close_code().await, 1000);
    assert!(proxy.wait_exit().await, "{}", proxy.stderr());
}
