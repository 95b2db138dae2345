//! TLS interception (`http::Mitm`, `examples/mitm_proxy`) with real curl and openssl over
//! 127.0.0.1: an HTTPS origin of the test's own CA seen through the proxy's minted
//! certificates (HTTP/1.1 and HTTP/2 on both sides, a name and an IP address), a pass-through
//! host keeping the origin's certificate, and bad input (plain bytes in a tunnel, closed or
//! relayed; a ClientHello without SNI; an origin that does not verify) leaving the proxy
//! serving.

use hyper::body::Incoming;
use rama::{BoxError, http as rama_http, tcp, tls};
use rama_e2e::{EchoOrigin, PATIENCE, Running, python::python_with_socks};
use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::Command,
    time::timeout,
};
use tower::Layer;

/// The origin's answer: the request line and headers as it saw them.
async fn echo_request(
    request: http::Request<Incoming>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    let mut text = format!(
        "{} {} {:?}\n",
        request.method(),
        request.uri(),
        request.version()
    );
    for (name, value) in request.headers() {
        let _ = writeln!(text, "{name}: {}", value.to_str().unwrap_or("?"));
    }
    Ok(http::Response::new(text.into()))
}

/// A directory of this test's own under the target dir, emptied.
fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mitm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA of an origin's own (`CN=rama test CA`, `DIR/ca.pem`) and the origin's certificate
/// for `localhost` and `127.0.0.1` (`DIR/origin.pem`, `DIR/origin.key`).
fn origin_certificate(name: &str) -> PathBuf {
    let dir = scratch(name);
    let ca = tls::dev::Ca::generate("rama test CA").unwrap();
    ca.write(&dir).unwrap();
    ca.issue_server(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(&dir, "origin")
        .unwrap();
    dir
}

/// An HTTPS origin (HTTP/1.1 and HTTP/2 by ALPN) of [`origin_certificate`], on its own
/// thread; the CA's PEM path.
fn https_origin(name: &str) -> (SocketAddr, PathBuf) {
    let dir = origin_certificate(name);
    let (cert, key) = (dir.join("origin.pem"), dir.join("origin.key"));
    let acceptor = tls::Acceptor::builder()
        .cert_pem_files(cert, key)
        .unwrap()
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let stack =
                acceptor.layer(rama_http::Server::new().layer(tower::service_fn(echo_request)));
            let _ = tcp::Server::from_std(listener).serve(stack).await;
        });
    });
    (addr, dir.join("ca.pem"))
}

/// `mitm_proxy` on one thread with its CA in `ca_dir`, trusting `upstream_ca` (if any).
fn mitm_proxy(ca_dir: &Path, upstream_ca: Option<&Path>, extra: &[&str]) -> Running {
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--threads".to_owned(),
        "1".to_owned(),
        "--ca-dir".to_owned(),
        ca_dir.display().to_string(),
    ];
    if let Some(ca) = upstream_ca {
        args.extend(["--upstream-ca".to_owned(), ca.display().to_string()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start("mitm_proxy", &args)
}

/// What curl said: the body, `CODE VERSION` from `-w`, and its verbose log.
struct Curl {
    body: String,
    codes: String,
    verbose: String,
}

/// curl through `proxy` with `args`, verbose, bounded.
async fn curl(proxy: SocketAddr, args: &[&str]) -> Curl {
    let output = timeout(
        PATIENCE,
        Command::new("curl")
            .args(["-sS", "-v", "--max-time", "20"])
            .args(["-x", &format!("http://{proxy}")])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(args)
            .output(),
    )
    .await
    .expect("curl took too long")
    .expect("run curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        body: body.to_ascii_lowercase(),
        codes: codes.to_owned(),
        verbose: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Opens a `CONNECT` tunnel to `destination` through `proxy` by hand; the `200` is read.
async fn connect(proxy: SocketAddr, destination: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("the proxy answers the CONNECT")
            .unwrap();
        assert_eq!(n, 1, "closed before the CONNECT answer");
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_an_https_origin_through_interception_over_h1_and_h2() {
    let (origin, origin_ca) = https_origin("origin");
    let ca_dir = scratch("ca");
    let mut proxy = mitm_proxy(&ca_dir, Some(&origin_ca), &[]);
    let ca = ca_dir.join("ca.pem");
    let ca = ca.to_str().unwrap();

    let url = format!("https://localhost:{}/hello?x=1", origin.port());
    let h1 = curl(proxy.addr, &["--cacert", ca, "--http1.1", &url]).await;
    assert_eq!(h1.codes, "200 1.1", "{}\n{}", h1.body, h1.verbose);
    // The client saw the proxy's minted certificate, not the origin's.
    assert!(
        h1.verbose.contains("issuer: CN=rama interception CA"),
        "{}",
        h1.verbose
    );
    assert!(
        h1.verbose.contains("subject: CN=localhost"),
        "{}",
        h1.verbose
    );
    // The origin saw the request with the header the proxy added, over h2 (ALPN upstream).
    let line = format!(
        "get https://localhost:{}/hello?x=1 http/2.0\n",
        origin.port()
    );
    assert!(h1.body.starts_with(&line), "{}", h1.body);
    assert!(h1.body.contains("x-rama-mitm: 1\n"), "{}", h1.body);

    let h2 = curl(proxy.addr, &["--cacert", ca, "--http2", &url]).await;
    assert_eq!(h2.codes, "200 2", "{}\n{}", h2.body, h2.verbose);
    assert!(h2.body.contains("x-rama-mitm: 1\n"), "{}", h2.body);

    // An IP address: no SNI from curl, a certificate with an IP SAN from the CONNECT host.
    let ip_url = format!("https://127.0.0.1:{}/by-ip", origin.port());
    let ip = curl(proxy.addr, &["--cacert", ca, &ip_url]).await;
    assert!(ip.codes.starts_with("200 "), "{}\n{}", ip.body, ip.verbose);
    assert!(ip.body.contains("/by-ip http/2.0"), "{}", ip.body);
    assert!(
        ip.verbose.contains("subject: CN=127.0.0.1"),
        "{}",
        ip.verbose
    );

    let log = proxy.stderr();
    assert!(log.contains("request: GET https://localhost:"), "{log}");
    assert!(log.contains("-> 200 OK"), "{log}");

    // The generated CA key is the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca_dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(proxy.terminate().await, "exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_through_host_keeps_the_origins_certificate() {
    let (origin, origin_ca) = https_origin("pass");
    let ca_dir = scratch("pass-ca");
    let proxy = mitm_proxy(&ca_dir, Some(&origin_ca), &["--pass-through", "localhost"]);
    let url = format!("https://localhost:{}/untouched", origin.port());
    // Trusting only the origin's own CA works: the proxy is not in the middle.
    let seen = curl(proxy.addr, &["--cacert", origin_ca.to_str().unwrap(), &url]).await;
    assert!(
        seen.codes.starts_with("200 "),
        "{}\n{}",
        seen.body,
        seen.verbose
    );
    assert!(
        seen.verbose.contains("issuer: CN=rama test CA"),
        "{}",
        seen.verbose
    );
    assert!(!seen.body.contains("x-rama-mitm"), "{}", seen.body);

    // Other hosts are still intercepted by the same proxy.
    let ip_url = format!("https://127.0.0.1:{}/", origin.port());
    let ca = ca_dir.join("ca.pem");
    let other = curl(proxy.addr, &["--cacert", ca.to_str().unwrap(), &ip_url]).await;
    assert!(other.codes.starts_with("200 "), "{}", other.verbose);
    assert!(other.body.contains("x-rama-mitm: 1"), "{}", other.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_bytes_in_a_tunnel_are_closed_or_relayed_by_configuration() {
    let (origin, origin_ca) = https_origin("plain");
    let echo = EchoOrigin::start().await;

    // Closed by default.
    let (close_dir, relay_dir) = (scratch("plain-close"), scratch("plain-relay"));
    let closing = mitm_proxy(&close_dir, Some(&origin_ca), &[]);
    let mut tunnel = connect(closing.addr, &echo.addr.to_string()).await;
    tunnel.write_all(b"hello, not tls\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = timeout(PATIENCE, tunnel.read_to_end(&mut rest))
        .await
        .expect("the proxy closes the tunnel");
    assert!(read.is_err() || rest.is_empty(), "{rest:?}");
    closing
        .wait_for_log("the client does not speak tls in the tunnel")
        .await;
    assert_eq!(echo.accepted(), 0, "nothing reached the destination");

    // Relayed with --relay-plain.
    let relaying = mitm_proxy(&relay_dir, Some(&origin_ca), &["--relay-plain"]);
    let mut tunnel = connect(relaying.addr, &echo.addr.to_string()).await;
    let line = rama_e2e::echo_line(&mut tunnel, "hello, not tls\n")
        .await
        .unwrap();
    assert_eq!(line, "hello, not tls\n");

    // Both still intercept TLS for everyone else.
    for (proxy, dir) in [(&closing, &close_dir), (&relaying, &relay_dir)] {
        let url = format!("https://localhost:{}/after", origin.port());
        let ca = dir.join("ca.pem");
        let seen = curl(proxy.addr, &["--cacert", ca.to_str().unwrap(), &url]).await;
        assert!(seen.codes.starts_with("200 "), "{}", seen.verbose);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_without_sni_gets_a_certificate_for_the_connect_host() {
    let (origin, origin_ca) = https_origin("nosni");
    let ca_dir = scratch("nosni-ca");
    let proxy = mitm_proxy(&ca_dir, Some(&origin_ca), &[]);
    let ca = ca_dir.join("ca.pem");
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-noservername",
            "-verify_return_error",
        ])
        .args(["-proxy", &proxy.addr.to_string()])
        .args(["-connect", &format!("localhost:{}", origin.port())])
        .args([
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_hostname",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /no-sni HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let output = timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("openssl finishes")
        .unwrap();
    drop(stdin);
    let stdout = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("http/1.1 200"), "{stdout}\n{stderr}");
    assert!(stdout.contains("/no-sni http/2.0"), "{stdout}");
    assert!(stderr.contains("verify return:1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_does_not_verify_is_502_and_the_proxy_serves_on() {
    let (origin, origin_ca) = https_origin("unverified");
    let ca_dir = scratch("unverified-ca");
    // The proxy trusts the webpki roots only: the test CA's origin does not verify.
    let mut untrusting = mitm_proxy(&ca_dir, None, &[]);
    let ca = ca_dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = format!("https://localhost:{}/", origin.port());
    let refused = curl(untrusting.addr, &["--cacert", ca, &url]).await;
    assert!(
        refused.codes.starts_with("502 "),
        "{}\n{}",
        refused.body,
        refused.verbose
    );
    assert!(
        refused.body.contains("invalid peer certificate"),
        "{}",
        refused.body
    );

    // Garbage and a half-open tunnel on the same proxy, then a good request on it.
    let mut garbage = TcpStream::connect(untrusting.addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\xff\xffnot a hello")
        .await
        .unwrap();
    let mut half = connect(untrusting.addr, &format!("localhost:{}", origin.port())).await;
    half.write_all(b"\x16\x03\x01\x00\x05\x01\x00")
        .await
        .unwrap();
    drop(half);
    let trusting = mitm_proxy(&ca_dir, Some(&origin_ca), &[]);
    let fine = curl(trusting.addr, &["--cacert", ca, &url]).await;
    assert!(fine.codes.starts_with("200 "), "{}", fine.verbose);
    let again = curl(untrusting.addr, &["--cacert", ca, &url]).await;
    assert!(again.codes.starts_with("502 "), "{}", again.verbose);
    assert!(untrusting.is_running());
    assert!(!untrusting.stderr().contains("panicked"));
}

/// A `wss://` echo origin (`sys.argv[1]` certificate, `sys.argv[2]` key): prints `listening on
/// ADDR`, then for each session its path and, when it ends, the close code and reason.
const WSS_ORIGIN: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

async def echo(ws):
    print("path", ws.request.path, flush=True)
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass  # a close code other than 1000 or 1001; printed below
    print("closed", ws.close_code, ws.close_reason, flush=True)

async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"listening on {host}:{port}", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"#;

/// A WebSocket session to `sys.argv[1]` through the HTTP proxy `sys.argv[2]`, trusting only
/// the CA `sys.argv[3]`: text, binary, a ping, a close with a code and a reason.
const WSS_CLIENT: &str = r#"
import asyncio, ssl, sys
from websockets.asyncio.client import connect

async def main(url, proxy, ca):
    ws = await connect(url, proxy=proxy, ssl=ssl.create_default_context(cafile=ca))
    await ws.send("hello")
    print("text", repr(await ws.recv()), flush=True)
    await ws.send(bytes(range(256)))
    print("binary", await ws.recv() == bytes(range(256)), flush=True)
    pong = await ws.ping(b"are you there")
    await asyncio.wait_for(pong, 10)
    print("pong", flush=True)
    await ws.close(4001, "done here")
    print("close", ws.close_code, ws.close_reason, flush=True)

asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), 20))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_session_is_relayed_message_by_message_through_the_interception() {
    let certs = origin_certificate("wss");
    let python = python_with_socks();
    let mut origin = Command::new(&python)
        .args(["-c", WSS_ORIGIN])
        .arg(certs.join("origin.pem"))
        .arg(certs.join("origin.key"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the wss origin");
    let mut origin_lines = BufReader::new(origin.stdout.take().unwrap()).lines();
    let mut next_origin_line = async || {
        timeout(PATIENCE, origin_lines.next_line())
            .await
            .expect("the wss origin took too long")
            .expect("read the origin's output")
            .expect("the wss origin ended early")
    };
    let ready = next_origin_line().await;
    let origin_addr: SocketAddr = ready
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{ready}"))
        .parse()
        .unwrap();
    let ca_dir = scratch("wss-ca");
    let proxy = mitm_proxy(
        &ca_dir,
        Some(&certs.join("ca.pem")),
        &["--ws-tag", "[mitm] "],
    );

    let url = format!("wss://localhost:{}/chat?room=1", origin_addr.port());
    let output = timeout(
        PATIENCE,
        Command::new(&python)
            .args(["-c", WSS_CLIENT, &url])
            .arg(format!("http://{}", proxy.addr))
            .arg(ca_dir.join("ca.pem"))
            .output(),
    )
    .await
    .expect("the websocket client took too long")
    .expect("run the websocket client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.stderr()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // The hook's tag shows the messages went through rama, not a byte tunnel.
    assert_eq!(
        lines,
        [
            "text '[mitm] hello'",
            "binary True",
            "pong",
            "close 4001 done here"
        ],
        "{stdout}"
    );
    assert_eq!(next_origin_line().await, "path /chat?room=1");
    assert_eq!(next_origin_line().await, "closed 4001 done here");
    let log = proxy.wait_for_log("ws message").await;
    assert!(log.contains("request: GET https://localhost:"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_rules_deny_an_intercepted_connect_with_403() {
    let (origin, origin_ca) = https_origin("deny");
    let port = origin.port().to_string();
    let proxy = mitm_proxy(
        &scratch("deny-ca"),
        Some(&origin_ca),
        &["--deny-port", &port],
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    timeout(PATIENCE, stream.read_exact(&mut answer))
        .await
        .expect("the proxy answers")
        .unwrap();
    assert_eq!(answer, b"HTTP/1.1 403");
    proxy.wait_for_log("mitm: denied by the egress rules").await;
}
