//! SOCKS5: the `socks5_proxy` example and in-process stacks, driven by real clients (curl,
//! python-socks) and by raw bytes for what no polite client sends.

use rama::{
    egress::{EgressLayer, Rules},
    proxy, socks5, tcp,
};
use rama_e2e::{
    EchoOrigin, PATIENCE, Running, assert_access_line, echo_line, origins, plain,
    python::python_with_socks,
};
use std::{
    net::SocketAddr,
    process::{Command, Output},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    time::timeout,
};

// ===== helpers =====

/// A tiny HTTP/1.1 origin on `bind` that answers every request with `origin <addr>` and
/// closes.
fn http_origin(bind: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind(bind).expect("bind origin");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let _guard = origins().enter();
    let listener = TcpListener::from_std(listener).unwrap();
    origins().spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("origin {addr}\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A UDP echo on 127.0.0.1.
fn udp_echo() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let _guard = origins().enter();
    let socket = UdpSocket::from_std(socket).unwrap();
    origins().spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Runs curl through `proxy_args`, bounded; returns its output.
fn curl(proxy_args: &[&str], url: &str) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(proxy_args)
        .arg(url)
        .output()
        .expect("run curl")
}

/// curl's body, asserting success.
fn curl_ok(proxy_args: &[&str], url: &str) -> String {
    let out = curl(proxy_args, url);
    assert!(
        out.status.success(),
        "curl {proxy_args:?} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends `bytes` on a fresh connection, half-closes only when `close` is set, and returns
/// everything read until the server closes (bounded).
async fn raw(proxy: SocketAddr, bytes: &[u8], close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let mut got = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection")
        .expect("read");
    got
}

/// A SOCKS5 CONNECT without authentication; returns the stream after a success reply, or
/// the reply code.
async fn connect(proxy: SocketAddr, request: &[u8]) -> Result<TcpStream, u8> {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut head = [0u8; 12];
    timeout(PATIENCE, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[..2], [5, 0]);
    assert_eq!(head[2], 5, "reply version");
    if head[3] != 0 {
        return Err(head[3]);
    }
    let rest = match head[5] {
        // The 12 bytes read hold an IPv4 reply whole; an IPv6 one has 12 more.
        1 => 0,
        4 => 12,
        other => panic!("bound address type {other}"),
    };
    let mut tail = vec![0u8; rest];
    stream.read_exact(&mut tail).await.unwrap();
    Ok(stream)
}

/// Waits (bounded) until one line of the log holds every one of `parts` (log lines carry
/// colour codes between a field's name and its value).
async fn wait_for_line(proxy: &Running, parts: &[&str]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = proxy.stderr();
        if log
            .lines()
            .any(|line| parts.iter().all(|part| line.contains(part)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn connect_ip(dest: SocketAddr) -> Vec<u8> {
    let mut out = vec![5, 1, 0];
    match dest {
        SocketAddr::V4(v4) => {
            out.push(1);
            out.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.push(4);
            out.extend_from_slice(&v6.ip().octets());
        }
    }
    out.extend_from_slice(&dest.port().to_be_bytes());
    out
}

fn connect_name(name: &str, port: u16) -> Vec<u8> {
    let mut out = vec![5, 1, 0, 3, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out
}

/// An in-process SOCKS5 server on 127.0.0.1 with a short handshake timeout and `rules`.
fn spawn_server(rules: Rules) -> SocketAddr {
    let server = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => socks5::Server::new().handshake_timeout(Some(Duration::from_millis(300)))
            => EgressLayer::new(rules)
            => target
    };
    let addr = server.local_addr().unwrap();
    tokio::spawn(server);
    addr
}

// ===== real clients =====

#[tokio::test]
async fn curl_socks5_and_socks5_hostname_without_auth() {
    let origin = http_origin("127.0.0.1:0");
    let proxy = Running::start("socks5_proxy", &["--listen", "127.0.0.1:0"]);
    let socks = proxy.addr.to_string();
    let by_ip = format!("http://127.0.0.1:{}/", origin.port());
    let by_name = format!("http://localhost:{}/", origin.port());
    let expected = format!("origin {origin}\n");
    assert_eq!(curl_ok(&["--socks5", &socks], &by_ip), expected);
    assert_eq!(curl_ok(&["--socks5-hostname", &socks], &by_name), expected);
    // curl resolves `localhost` itself with --socks5.
    assert_eq!(curl_ok(&["--socks5", &socks], &by_name), expected);
}

#[tokio::test]
async fn a_tunnel_dropped_by_the_idle_timeout_has_its_access_line() {
    // `tunnel::Open` (every tunnel-opening terminal) logs a relay dropped before its end, as
    // `Target`'s connection relay does (`tests/tcp.rs`).
    let origin = EchoOrigin::start().await;
    let proxy = Running::start(
        "socks5_proxy",
        &["--listen", "127.0.0.1:0", "--idle-timeout", "1"],
    );
    let mut stream = connect(proxy.addr, &connect_ip(origin.addr)).await.unwrap();
    let me = stream.local_addr().unwrap();
    assert_eq!(echo_line(&mut stream, "hi\n").await.unwrap(), "hi\n");
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    let line = proxy.wait_for_line("relay cut before its end").await;
    assert_access_line(&line, me, origin.addr);
    let log = proxy.stderr();
    assert!(!log.contains("relay finished"), "{log}");
}

#[tokio::test]
async fn curl_with_proxy_user_and_wrong_credentials_refused() {
    let origin = http_origin("127.0.0.1:0");
    let proxy = Running::start(
        "socks5_proxy",
        &[
            "--listen",
            "127.0.0.1:0",
            "--user",
            "alice:s3cret",
            "--user",
            "bob:pw",
        ],
    );
    let socks = proxy.addr.to_string();
    let url = format!("http://localhost:{}/", origin.port());
    let expected = format!("origin {origin}\n");
    for user in ["alice:s3cret", "bob:pw"] {
        let args = ["--socks5-hostname", &socks, "--proxy-user", user];
        assert_eq!(curl_ok(&args, &url), expected);
        let args = ["--socks5", &socks, "--proxy-user", user];
        assert_eq!(curl_ok(&args, &url), expected);
    }
    let refused = curl(
        &["--socks5-hostname", &socks, "--proxy-user", "alice:wrong"],
        &url,
    );
    assert!(!refused.status.success());
    assert_eq!(refused.status.code(), Some(97), "curl: SOCKS5 refused");
    let no_user = curl(&["--socks5-hostname", &socks], &url);
    assert_eq!(no_user.status.code(), Some(97));

    // On the wire: status 0x01, then the proxy closes.
    let got = raw(
        proxy.addr,
        &[5, 1, 2, 1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'n', b'o'],
        false,
    )
    .await;
    assert_eq!(got, [5, 2, 1, 1]);
    // The refusal is logged with the peer.
    wait_for_line(
        &proxy,
        &["wrong username or password", "peer", "127.0.0.1:"],
    )
    .await;
}

#[tokio::test]
async fn python_socks_connects_by_ipv4_ipv6_and_domain() {
    let python = python_with_socks();
    let v4 = http_origin("127.0.0.1:0");
    let v6 = http_origin(&format!("[::1]:{}", 0));
    let proxy = Running::start(
        "socks5_proxy",
        &["--listen", "127.0.0.1:0", "--user", "py:thon"],
    );
    let url = format!("socks5://py:thon@{}", proxy.addr);
    let script = r#"
import sys
from python_socks.sync import Proxy
proxy = Proxy.from_url(sys.argv[1], rdns=True)
sock = proxy.connect(dest_host=sys.argv[2], dest_port=int(sys.argv[3]), timeout=10)
sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.split(b"\r\n\r\n", 1)[1].decode())
"#;
    let cases = [("127.0.0.1", v4), ("::1", v6), ("localhost", v4)];
    for (host, origin) in cases {
        let port = origin.port().to_string();
        let out = Command::new(&python)
            .args(["-c", script, &url, host, &port])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python-socks to {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("origin {origin}\n")
        );
    }
    // The domain went to the proxy unresolved (rdns), and the proxy logged it with the user.
    wait_for_line(&proxy, &["socks5 request", "user", "py", "localhost:"]).await;
}

#[tokio::test]
async fn udp_associate_relays_to_an_echo_and_ends_with_the_control_connection() {
    let echo = udp_echo();
    let proxy = Running::start(
        "socks5_proxy",
        &["--listen", "127.0.0.1:0", "--deny-port", "9"],
    );
    let mut control = TcpStream::connect(proxy.addr).await.unwrap();
    control
        .write_all(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut reply = [0u8; 12];
    timeout(PATIENCE, control.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply[..5], [5, 0, 5, 0, 0]);
    assert_eq!(reply[5], 1, "IPv4 relay address");
    let relay = SocketAddr::from((
        [reply[6], reply[7], reply[8], reply[9]],
        u16::from_be_bytes([reply[10], reply[11]]),
    ));

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let SocketAddr::V4(echo_v4) = echo else {
        unreachable!()
    };
    let header = |frag: u8| {
        let mut h = vec![0, 0, frag, 1];
        h.extend_from_slice(&echo_v4.ip().octets());
        h.extend_from_slice(&echo.port().to_be_bytes());
        h
    };
    let mut buf = vec![0u8; 2048];
    for i in 0..5u8 {
        let mut datagram = header(0);
        datagram.extend_from_slice(format!("ping {i}").as_bytes());
        client.send_to(&datagram, relay).await.unwrap();
        let (n, from) = timeout(PATIENCE, client.recv_from(&mut buf))
            .await
            .expect("an echo through the relay")
            .unwrap();
        assert_eq!(from, relay);
        // The answer carries the echo's address in its header.
        assert_eq!(&buf[..10], &header(0)[..]);
        assert_eq!(&buf[10..n], format!("ping {i}").as_bytes());
    }

    // A fragment is dropped, with a log line.
    let mut fragment = header(1);
    fragment.extend_from_slice(b"fragment");
    client.send_to(&fragment, relay).await.unwrap();
    proxy.wait_for_log("fragmented datagram dropped").await;
    let nothing = timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "a fragment was relayed");
    // One to a port the rules deny: a warning, the first of the association.
    let mut denied = header(0);
    denied[8..10].copy_from_slice(&9u16.to_be_bytes());
    denied.extend_from_slice(b"denied");
    client.send_to(&denied, relay).await.unwrap();
    proxy.wait_for_log("datagram denied by egress rules").await;

    // Closing the control connection ends the association: the relay port goes away.
    drop(control);
    proxy.wait_for_log("socks5 udp association closed").await;
    // Its access line says what it carried.
    let log = plain(&proxy.wait_for_log("udp association finished").await);
    let line = log
        .lines()
        .find(|line| line.contains("udp association finished"))
        .unwrap();
    for field in [
        "rama::access",
        "peer=127.0.0.1:",
        "sent=5 sent_bytes=30 received=5 received_bytes=30 denied=1 dropped=1",
    ] {
        assert!(line.contains(field), "{field}: {line}");
    }
    let mut late = header(0);
    late.extend_from_slice(b"too late");
    client.send_to(&late, relay).await.unwrap();
    let after = timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await;
    assert!(
        !matches!(after, Ok(Ok(_))),
        "the association outlived its control connection"
    );
}

#[tokio::test]
async fn chaining_client_to_rama_to_rama_with_auth_to_origin() {
    let origin = http_origin("127.0.0.1:0");
    // The far proxy requires a password.
    let far = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => socks5::Server::new().with_auth(socks5::auth::Users::new([("chain", "pw")]))
            => target
    };
    let far_addr = far.local_addr().unwrap();
    tokio::spawn(far);
    // The near proxy dials everything through the far one.
    let near = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => socks5::Server::new()
            => socks5::Client::new(far_addr.into()).with_auth("chain", "pw")
    };
    let near_addr = near.local_addr().unwrap();
    tokio::spawn(near);
    // A near proxy with the wrong password for the far one.
    let wrong = proxy! {
        tcp::Server::bind("127.0.0.1:0")
            => socks5::Server::new()
            => socks5::Client::new(far_addr.into()).with_auth("chain", "nope")
    };
    let wrong_addr = wrong.local_addr().unwrap();
    tokio::spawn(wrong);

    let url = format!("http://localhost:{}/", origin.port());
    let socks = near_addr.to_string();
    let body = tokio::task::spawn_blocking(move || curl_ok(&["--socks5-hostname", &socks], &url))
        .await
        .unwrap();
    assert_eq!(body, format!("origin {origin}\n"));

    // The far proxy's refusal comes back through the chain with its code.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(
        connect(near_addr, &connect_ip(closed_addr))
            .await
            .unwrap_err(),
        0x05
    );
    // A failed upstream login is a general failure to the client.
    assert_eq!(
        connect(wrong_addr, &connect_ip(origin)).await.unwrap_err(),
        0x01
    );
}

// ===== bad input =====

#[tokio::test]
async fn bad_input_is_answered_and_touches_no_other_connection() {
    let echo = EchoOrigin::start().await;
    let proxy = spawn_server(Rules::allow_by_default());
    // A tunnel that must survive everything below.
    let mut survivor = connect(proxy, &connect_ip(echo.addr)).await.unwrap();
    assert_eq!(
        echo_line(&mut survivor, "before\n").await.unwrap(),
        "before\n"
    );

    // Wrong version byte: closed without a reply.
    assert_eq!(
        raw(proxy, &[4, 1, 0, 80, 127, 0, 0, 1, 0], false).await,
        b""
    );
    // No acceptable method.
    assert_eq!(raw(proxy, &[5, 1, 0x80], false).await, [5, 0xFF]);
    assert_eq!(raw(proxy, &[5, 0], false).await, [5, 0xFF]);
    // Truncated greeting, then EOF.
    assert_eq!(raw(proxy, &[5, 2, 0], true).await, b"");
    // Unknown command.
    let got = raw(proxy, &[5, 1, 0, 5, 9, 0, 1, 127, 0, 0, 1, 0, 80], false).await;
    assert_eq!(got, [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    // BIND is not enabled on this server: command not supported.
    let got = raw(proxy, &[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80], false).await;
    assert_eq!(got, [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    // Unknown address type.
    let got = raw(proxy, &[5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4], false).await;
    assert_eq!(got, [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);
    // Zero-length domain.
    let got = raw(proxy, &[5, 1, 0, 5, 1, 0, 3, 0, 0, 80], false).await;
    assert_eq!(got, [5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    // Destination refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    assert_eq!(
        connect(proxy, &connect_ip(closed_addr)).await.unwrap_err(),
        0x05
    );
    // A name that does not resolve: host unreachable.
    let unknown = connect_name("no-such-host.invalid", 80);
    assert_eq!(connect(proxy, &unknown).await.unwrap_err(), 0x04);

    // A client that stalls mid-handshake is closed at the handshake timeout (300 ms here).
    let started = Instant::now();
    assert_eq!(raw(proxy, &[5, 1], false).await, b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    // Stalled after the greeting, too.
    assert_eq!(raw(proxy, &[5, 1, 0, 5, 1], false).await, [5, 0]);

    // Through all that, the first tunnel kept working, and new ones open.
    assert_eq!(
        echo_line(&mut survivor, "after\n").await.unwrap(),
        "after\n"
    );
    let mut fresh = connect(proxy, &connect_ip(echo.addr)).await.unwrap();
    assert_eq!(echo_line(&mut fresh, "fresh\n").await.unwrap(), "fresh\n");
}

#[tokio::test]
async fn egress_rules_deny_with_0x02_even_behind_a_name() {
    let echo = EchoOrigin::start().await;
    let proxy = spawn_server(Rules::public_only());
    // Loopback by address, by IPv4-mapped IPv6, and by a name that resolves to it.
    assert_eq!(
        connect(proxy, &connect_ip(echo.addr)).await.unwrap_err(),
        0x02
    );
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", echo.addr.port())
        .parse()
        .unwrap();
    assert_eq!(connect(proxy, &connect_ip(mapped)).await.unwrap_err(), 0x02);
    assert_eq!(
        connect(proxy, &connect_name("localhost", echo.addr.port()))
            .await
            .unwrap_err(),
        0x02
    );
    assert_eq!(
        connect(proxy, &connect_name("127.0.0.1.nip.invalid", 80))
            .await
            .unwrap_err(),
        0x04
    );
    // The metadata address, never dialed.
    let metadata: SocketAddr = "169.254.169.254:80".parse().unwrap();
    assert_eq!(
        connect(proxy, &connect_ip(metadata)).await.unwrap_err(),
        0x02
    );
    assert_eq!(echo.accepted(), 0);

    // A port rule.
    let proxy =
        spawn_server(Rules::allow_by_default().deny(rama::egress::Match::port(echo.addr.port())));
    assert_eq!(
        connect(proxy, &connect_ip(echo.addr)).await.unwrap_err(),
        0x02
    );
    assert_eq!(echo.accepted(), 0);
}

#[tokio::test]
async fn the_proxy_example_serves_socks5_and_stops_on_sigterm() {
    let origin = http_origin("127.0.0.1:0");
    let mut proxy = Running::start("proxy", &["--listen", "127.0.0.1:0"]);
    let socks = proxy.addr.to_string();
    let url = format!("http://localhost:{}/", origin.port());
    assert_eq!(
        curl_ok(&["--socks5-hostname", &socks], &url),
        format!("origin {origin}\n")
    );
    assert!(proxy.terminate().await, "clean exit on SIGTERM");
}

#[tokio::test]
async fn bind_announces_twice_and_relays_the_incoming_connection() {
    let server = proxy! {
        tcp::Server::bind("127.0.0.1:0") => socks5::Server::new().bind(true) => target
    };
    let proxy = server.local_addr().unwrap();
    tokio::spawn(server);
    let mut control = TcpStream::connect(proxy).await.unwrap();
    // BIND, expecting the incoming connection from 127.0.0.1.
    control
        .write_all(&[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    let mut first = [0u8; 12];
    timeout(PATIENCE, control.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[..6], [5, 0, 5, 0, 0, 1]);
    let listening = SocketAddr::from((
        [first[6], first[7], first[8], first[9]],
        u16::from_be_bytes([first[10], first[11]]),
    ));
    let mut incoming = TcpStream::connect(listening).await.unwrap();
    let mut second = [0u8; 10];
    timeout(PATIENCE, control.read_exact(&mut second))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second[..4], [5, 0, 0, 1]);
    let announced = SocketAddr::from((
        [second[4], second[5], second[6], second[7]],
        u16::from_be_bytes([second[8], second[9]]),
    ));
    assert_eq!(announced, incoming.local_addr().unwrap());
    incoming.write_all(b"from the far side\n").await.unwrap();
    let mut got = [0u8; 18];
    timeout(PATIENCE, control.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"from the far side\n");
    control.write_all(b"back\n").await.unwrap();
    let mut back = [0u8; 5];
    timeout(PATIENCE, incoming.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"back\n");
}
