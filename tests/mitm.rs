//! TLS interception (`http::Mitm`, `examples/mitm_proxy`) with real curl and openssl over
//! 127.0.0.1: an HTTPS origin of the test's own CA seen through the proxy's minted
//! certificates (HTTP/1.1 and HTTP/2 on both sides, a name and an IP address), a pass-through
//! host keeping the origin's certificate, and bad input (plain bytes in a tunnel, closed or
//! relayed; a ClientHello without SNI; an origin that does not verify) leaving the proxy
//! serving.

use rama::{BoxError, http as rama_http, tcp, tls};
use rama_e2e::{
    EchoOrigin, PATIENCE, Running, origin_certificate, origin_thread,
    python::{PythonServer, run_script},
    read_head,
    ws::{ECHO_ORIGIN, SESSION_CLIENT},
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
    time::timeout,
};
use tower::Layer;

/// The origin's answer: the request line and headers as it saw them.
async fn echo_request(
    request: http::Request<rama_http::Body>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    Ok(http::Response::new(rama_e2e::request_text(&request).into()))
}

/// A scratch directory of this test's own under the target dir, emptied.
fn scratch(name: &str) -> PathBuf {
    rama_e2e::scratch(&format!("mitm-{name}"))
}

/// An HTTPS origin (HTTP/1.1 and HTTP/2 by ALPN) with a certificate of its own CA
/// ([`origin_certificate`]), on its own thread; the CA's PEM path.
fn https_origin(name: &str) -> (SocketAddr, PathBuf) {
    rama_e2e::h2_https_origin(&format!("mitm-{name}"), echo_request)
}

/// `mitm_proxy` on one thread with its CA in `ca_dir`, trusting `upstream_ca` (if any).
fn mitm_proxy(ca_dir: &Path, upstream_ca: Option<&Path>, extra: &[&str]) -> Running {
    let ca_dir = ca_dir.display().to_string();
    let upstream_ca = upstream_ca.map(|ca| ca.display().to_string());
    let mut args = vec!["--ca-dir", &ca_dir];
    if let Some(ca) = &upstream_ca {
        args.extend(["--upstream-ca", ca]);
    }
    args.extend_from_slice(extra);
    Running::start_local("mitm_proxy", &args)
}

/// What curl said: the body, `CODE VERSION` from `-w`, and its verbose log.
struct Curl {
    body: String,
    codes: String,
    verbose: String,
}

impl Curl {
    /// Asserts the status code, showing the body and curl's log when it differs.
    fn assert_status(&self, status: u16) {
        let prefix = format!("{status} ");
        assert!(
            self.codes.starts_with(&prefix),
            "{}\n{}\n{}",
            self.codes,
            self.body,
            self.verbose
        );
    }
}

/// curl through `proxy` with `args`, verbose, bounded.
async fn curl(proxy: SocketAddr, args: &[&str]) -> Curl {
    let proxy = format!("http://{proxy}");
    let options = ["-sS", "-v", "--max-time", "20", "-x", &proxy];
    let written = ["-w", "\n%{http_code} %{http_version}"];
    let output = rama_e2e::curl(&[&options[..], &written, args].concat()).await;
    Curl {
        body: output.body.to_ascii_lowercase(),
        codes: output.written,
        verbose: output.stderr,
    }
}

/// Opens a `CONNECT` tunnel to `destination` through `proxy` by hand; the `200` is read.
async fn connect(proxy: SocketAddr, destination: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = timeout(PATIENCE, read_head(&mut stream))
        .await
        .expect("the proxy answers the CONNECT")
        .unwrap()
        .expect("closed before the CONNECT answer");
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
    ip.assert_status(200);
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
    seen.assert_status(200);
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
    other.assert_status(200);
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
        seen.assert_status(200);
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
    refused.assert_status(502);
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
    fine.assert_status(200);
    let again = curl(untrusting.addr, &["--cacert", ca, &url]).await;
    again.assert_status(502);
    assert!(untrusting.is_running());
    assert!(!untrusting.stderr().contains("panicked"));
}

/// A `wss://` echo origin of its own CA ([`ECHO_ORIGIN`], with `origin_args`) and
/// `mitm_proxy` trusting it (loopback only), its relay's tag `[mitm] ` in front of each text
/// from the origin; the proxy's CA directory.
async fn wss_through_mitm(name: &str, origin_args: &[&str]) -> (PythonServer, Running, PathBuf) {
    let certs = origin_certificate(&format!("mitm-{name}"));
    let (cert, key) = (certs.join("origin.pem"), certs.join("origin.key"));
    let mut args = vec![
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(origin_args);
    let origin = PythonServer::start(ECHO_ORIGIN, &args).await;
    let ca_dir = scratch(&format!("{name}-ca"));
    let proxy = mitm_proxy(
        &ca_dir,
        Some(&certs.join("ca.pem")),
        &["--ws-tag", "[mitm] ", "--loopback-only"],
    );
    (origin, proxy, ca_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_session_is_relayed_message_by_message_through_the_interception() {
    let (mut origin, proxy, ca_dir) = wss_through_mitm("wss", &[]).await;

    let url = format!("wss://localhost:{}/chat?room=1", origin.addr.port());
    let proxy_url = format!("http://{}", proxy.addr);
    let ca = ca_dir.join("ca.pem");
    let session = ["--proxy", &proxy_url, "--ca", ca.to_str().unwrap()];
    let lines = run_script(SESSION_CLIENT, &[&[url.as_str()][..], &session].concat()).await;
    // The hook's tag shows the messages went through rama, not a byte tunnel.
    assert_eq!(
        lines,
        [
            "text '[mitm] hello \u{2713}'",
            "binary True 1048576 True",
            "pong",
            "close 4001 done here"
        ],
        "{}",
        proxy.stderr()
    );
    assert_eq!(origin.next_line().await, "path /chat?room=1");
    assert_eq!(origin.next_line().await, "closed 4001 done here");
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

/// The interception checks a `CONNECT`'s target as `http::ForwardProxy` does (`http_proxy`):
/// authority-form `host:port` with a port 1-65535, else `400` saying what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connect_target_is_400_as_for_the_forward_proxy() {
    let proxy = mitm_proxy(&scratch("target-ca"), None, &[]);
    for (target, why) in [
        ("localhost:0", "port is 1-65535, not port 0"),
        (
            "https://localhost:18443",
            "authority-form host:port, not a URL",
        ),
    ] {
        // An HTTP/1 `400` closes the connection: the answer is read to its end.
        let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let answer = rama_e2e::raw(proxy.addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(answer.contains(why), "{target}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_requests_reach_the_origin_without_hop_by_hop_headers_or_host() {
    let (origin, origin_ca) = https_origin("hop");
    let ca_dir = scratch("hop-ca");
    let proxy = mitm_proxy(&ca_dir, Some(&origin_ca), &[]);
    let ca = ca_dir.join("ca.pem");
    let url = format!("https://localhost:{}/hop", origin.port());
    let args = [
        "--cacert",
        ca.to_str().unwrap(),
        "--http1.1",
        "-H",
        "Connection: keep-alive, X-Secret",
        "-H",
        "X-Secret: 1",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "X-Kept: 1",
        &url,
    ];
    let seen = curl(proxy.addr, &args).await;
    assert_eq!(seen.codes, "200 1.1", "{}\n{}", seen.body, seen.verbose);
    // The origin speaks h2 (ALPN): `:authority` names it, and no `Host` rides beside it.
    let line = format!("get https://localhost:{}/hop http/2.0\n", origin.port());
    assert!(seen.body.starts_with(&line), "{}", seen.body);
    assert!(seen.body.contains("x-kept: 1\n"), "{}", seen.body);
    for gone in ["\nhost:", "x-secret", "keep-alive", "connection"] {
        assert!(!seen.body.contains(gone), "{gone}: {}", seen.body);
    }
}

/// The authority the client said (HTTP/1.1 `Host`, HTTP/2 `:authority`) reaches the origin
/// as it was said, whatever either side speaks, and as one value: an HTTP/2 origin gets it as
/// `:authority` with no `Host` beside it, an HTTP/1.1 origin as `Host`. The connection still
/// goes to the `CONNECT`'s destination (the origin that answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_authority_reaches_the_origin_whatever_the_versions() {
    let dir = rama_e2e::origin_certificate("mitm-authority");
    for alpn in [&["h2", "http/1.1"][..], &["http/1.1"]] {
        let origin = rama_e2e::https_origin_in(&dir, alpn, echo_request);
        let ca_dir = scratch(&format!("authority-ca-{}", alpn.len()));
        let proxy = mitm_proxy(&ca_dir, Some(&dir.join("ca.pem")), &[]);
        let ca = ca_dir.join("ca.pem");
        let url = format!("https://localhost:{}/hdr", origin.port());
        // An absolute-form target names the authority over `Host` (RFC 9112 3.2.2).
        let absolute = ["--request-target", "https://other.test/hdr"];
        for (version, said) in [
            ("--http1.1", ["-H", "Host: other.test"]),
            ("--http2", ["-H", "Host: other.test"]),
            ("--http1.1", absolute),
        ] {
            let args = [
                "--cacert",
                ca.to_str().unwrap(),
                version,
                said[0],
                said[1],
                &url,
            ];
            let seen = curl(proxy.addr, &args).await;
            seen.assert_status(200);
            let what = format!("{alpn:?} {version} {said:?}: {}", seen.body);
            if alpn.len() == 2 {
                assert!(
                    seen.body
                        .starts_with("get https://other.test/hdr http/2.0\n"),
                    "{what}"
                );
                assert!(!seen.body.contains("\nhost:"), "{what}");
            } else {
                assert!(seen.body.starts_with("get /hdr http/1.1\n"), "{what}");
                assert!(seen.body.contains("\nhost: other.test\n"), "{what}");
            }
        }
    }
}

/// The origin's answer, tagged with `tag` to tell two origins apart.
async fn tagged(
    tag: &'static str,
    request: http::Request<rama_http::Body>,
) -> Result<http::Response<rama_http::Body>, BoxError> {
    let text = format!("{tag}\n{}", rama_e2e::request_text(&request));
    Ok(http::Response::new(text.into()))
}

/// `CONNECT 127.0.0.1:port` from a client whose TLS names `localhost` (curl's
/// `--connect-to`): the origin's certificate, for `localhost` alone, is verified against that
/// name, and the connection goes to the `CONNECT`'s address, not to a pooled connection for
/// the request's authority (`localhost:a`, which another origin serves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_is_verified_by_the_clients_sni_on_the_connects_address() {
    let dir = rama_e2e::origin_certificate_for("mitm-sni", &["localhost"]);
    let alpn = ["h2", "http/1.1"];
    let a = rama_e2e::https_origin_in(&dir, &alpn, |r| tagged("origin a", r));
    let b = rama_e2e::https_origin_in(&dir, &alpn, |r| tagged("origin b", r));
    let ca_dir = scratch("sni-ca");
    let proxy = mitm_proxy(&ca_dir, Some(&dir.join("ca.pem")), &[]);
    let ca = ca_dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = format!("https://localhost:{}/one", a.port());
    let first = curl(proxy.addr, &["--cacert", ca, &url]).await;
    first.assert_status(200);
    assert!(first.body.starts_with("origin a\n"), "{}", first.body);
    let to = format!("localhost:{}:127.0.0.1:{}", a.port(), b.port());
    let second = curl(proxy.addr, &["--cacert", ca, "--connect-to", &to, &url]).await;
    second.assert_status(200);
    assert!(
        second
            .verbose
            .contains(&format!("CONNECT 127.0.0.1:{}", b.port())),
        "{}",
        second.verbose
    );
    let line = format!("get https://localhost:{}/one http/2.0\n", a.port());
    assert!(
        second.body.starts_with(&format!("origin b\n{line}")),
        "{}",
        second.body
    );
}

/// `http::Mitm` in this process with egress rules that must resolve a name to judge it
/// (10.0.0.0/8 denied), and behind it a service that answers with the
/// [`DialOnly`](rama_http::DialOnly) its requests carry: intercepted requests and
/// absolute-form ones are both pinned to the addresses the rules judged, so the
/// [`Client`](rama_http::Client) behind a real proxy dials those instead of resolving the
/// name again (its test in `tests/client.rs` shows it honours them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_rules_pin_what_they_judged_for_the_service_behind() {
    use rama::egress::{Cidr, Match, Rules};
    async fn report(
        request: http::Request<rama_http::Body>,
    ) -> Result<http::Response<rama_http::Body>, BoxError> {
        let only = request.extensions().get::<rama_http::DialOnly>();
        let text = format!("{:?}", only.map(rama_http::DialOnly::addresses));
        Ok(http::Response::new(text.into()))
    }
    let ca_dir = scratch("pin-ca");
    let authority = std::sync::Arc::new(
        tls::intercept::Authority::load_or_create(&ca_dir).expect("the interception CA"),
    );
    let private = Cidr::new("10.0.0.0".parse().unwrap(), 8).unwrap();
    let mitm = rama_http::Mitm::new(authority)
        .unwrap()
        .rules(Rules::allow_by_default().deny(Match::cidr(private)));
    let proxy = origin_thread(|listener| async move {
        let stack = rama_http::Server::new().layer(mitm.layer(tower::service_fn(report)));
        let _ = tcp::Server::from_std(listener).serve(stack).await;
    });
    let ca = ca_dir.join("ca.pem");
    // Nothing listens there: the service behind answers without dialing.
    let port = rama_e2e::closed_port().port();
    let intercepted = format!("https://localhost:{port}/");
    let absolute = format!("http://localhost:{port}/");
    for (what, args) in [
        (
            "intercepted",
            vec!["--cacert", ca.to_str().unwrap(), &intercepted],
        ),
        ("absolute-form", vec![&absolute]),
    ] {
        let seen = curl(proxy, &args).await;
        assert!(
            seen.codes.starts_with("200 "),
            "{what}: {}\n{}",
            seen.body,
            seen.verbose
        );
        // `localhost` may also resolve to ::1; its IPv4 address is among the judged ones.
        assert!(
            seen.body.starts_with("some([") && seen.body.contains(&format!("127.0.0.1:{port}")),
            "{what}: {}",
            seen.body
        );
    }
    // An address the rules judge without a lookup is not pinned: it is what is dialed.
    let literal = format!("http://127.0.0.1:{port}/");
    let seen = curl(proxy, &[&literal]).await;
    assert!(seen.body.starts_with("none"), "{}", seen.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_session_on_an_intercepted_http2_stream_is_relayed_too() {
    // A browser whose intercepted connection speaks HTTP/2 opens its WebSockets on streams of
    // it (RFC 8441: the proxy's settings offer extended CONNECT); they must reach the inner
    // service as the upgrades it relays.
    let (mut origin, proxy, ca_dir) = wss_through_mitm("wss-h2", &[]).await;
    let destination = format!("localhost:{}", origin.addr.port());
    let tunnel = connect(proxy.addr, &destination).await;
    let ca = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    let connector = tls::Connector::builder()
        .ca_pem(&ca)
        .unwrap()
        .alpn(["h2"])
        .build()
        .unwrap();
    let tls = timeout(
        PATIENCE,
        connector.connect(&rama::Host::Name("localhost".into()), tunnel),
    )
    .await
    .expect("the TLS handshake in time")
    .expect("the TLS handshake with the minted certificate");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, _connection) = rama_e2e::h2_handshake(tls).await;
    let url = format!("https://{destination}/chat?room=2");
    let mut ws = rama_e2e::ws::RawWs::h2(&mut send, &url).await;
    assert_eq!(ws.echo("hello over h2").await, "[mitm] hello over h2");
    ws.send(
        rama_e2e::ws::FIN | rama_e2e::ws::CLOSE,
        &[0x0F, 0xA1, b'b', b'y', b'e'],
        true,
    )
    .await;
    assert_eq!(ws.close_code().await, 4001);
    assert_eq!(origin.next_line().await, "path /chat?room=2");
    assert_eq!(origin.next_line().await, "closed 4001 bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_opens_a_wss_on_an_intercepted_http2_stream() {
    // Chromium speaks HTTP/2 to the intercepted origin and, since the proxy's settings offer
    // extended CONNECT, opens the page's WebSocket on a stream of that connection (RFC 8441).
    let (mut origin, proxy, _ca_dir) = wss_through_mitm("chromium", &["--page"]).await;
    let url = format!("https://localhost:{}/", origin.addr.port());
    let proxy_server = format!("http://{}", proxy.addr);
    // The minted certificates' CA is not in Chromium's store.
    let extra = ["--ignore-certificate-errors"];
    let dom = rama_e2e::chromium_dump_dom(&proxy_server, &url, "mitm-wss", &extra).await;
    assert!(
        dom.contains("got:[mitm] hello from the page"),
        "{dom}\n{}",
        proxy.stderr()
    );
    assert_eq!(origin.next_line().await, "path /ws");
    assert_eq!(origin.next_line().await, "closed 4003 page done");
    let log = rama_e2e::plain(&proxy.stderr());
    let ws = format!(
        "request: GET https://localhost:{}/ws HTTP/2.0",
        origin.addr.port()
    );
    assert!(
        log.contains(&ws),
        "the WebSocket went on an HTTP/2 stream: {log}"
    );
}

/// The first flight of rama's TLS client (a ClientHello naming `host`, offering h2 and
/// HTTP/1.1), as it goes on the wire: caught by a listener that reads it and hangs up.
async fn client_hello(host: &str) -> Vec<u8> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = tls::Connector::builder()
        .webpki_roots()
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap();
    let host: rama::Address = format!("{host}:443").parse().unwrap();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        // Fails once the listener hangs up; only the bytes sent matter.
        let _ = connector.connect(host.host(), tcp).await;
    });
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut hello = vec![0; 16 * 1024];
    let n = timeout(PATIENCE, stream.read(&mut hello))
        .await
        .expect("no ClientHello")
        .unwrap();
    hello.truncate(n);
    drop(stream);
    client.await.unwrap();
    assert_eq!(hello[..2], [0x16, 0x03], "a handshake record");
    hello
}

/// Pieces the mutations put into intercepted traffic: TLS record types and versions, lengths
/// of every size, extension types (server name, ALPN, supported versions, key share), names
/// no certificate may carry, and request-head lines.
const TLS_PIECES: &[&[u8]] = &[
    b"\x16",
    b"\x15",
    b"\x17",
    b"\x03\x01",
    b"\x03\x04",
    b"\x00\x00",
    b"\x00\x10",
    b"\x00\x2b",
    b"\x00\x33",
    b"\xff\xff",
    b"\x40\x00",
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\x80",
    b"\x02h2",
    b"\x08http/1.1",
    b"localhost",
    b"a..b",
    b"*.",
    b"127.0.0.1",
    b"xn--",
    b"\r\n",
    b":443",
];

/// Mutated intercepted traffic (`tests/support/mutate.rs`): a `CONNECT` and the ClientHello of
/// rama's own TLS client behind it, mutated anywhere, thrown at `mitm_proxy`, 1,024
/// connections 32 at a time, beside curl fetching through the interception: every fetch
/// succeeds, every thrown connection is closed once its client has sent all and shut its side,
/// and the proxy neither panics nor stops. Each mutated name the handshake gets as far as
/// mints a certificate, into the bounded cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_traffic_neither_panics_the_interception_nor_holds_up_its_other_clients() {
    let (origin, origin_ca) = https_origin("mutated");
    let ca_dir = scratch("mutated-ca");
    let mut proxy = mitm_proxy(&ca_dir, Some(&origin_ca), &["--loopback-only"]);
    let addr = proxy.addr;
    let destination = format!("localhost:{}", origin.port());
    let head = format!("CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n\r\n");
    let seeds: Vec<Vec<u8>> = [
        client_hello("localhost").await,
        client_hello("a.b.localhost").await,
    ]
    .into_iter()
    .map(|hello| [head.as_bytes(), &hello].concat())
    .collect();
    let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let ca = ca_dir.join("ca.pem").display().to_string();
    let url = format!("https://localhost:{}/beside", origin.port());
    let held = rama_e2e::throw_mutated_beside(addr, &seeds, TLS_PIECES, move || {
        let (ca, url) = (ca.clone(), url.clone());
        async move {
            let got = curl(addr, &["--cacert", &ca, &url]).await;
            got.assert_status(200);
            assert!(got.body.contains("/beside"), "{}", got.body);
        }
    })
    .await;
    proxy.assert_running_without_a_panic();
    assert_eq!(
        held, 0,
        "connections still open 5 s after their client's end"
    );
}
