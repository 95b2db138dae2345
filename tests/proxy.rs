//! The all-in-one `proxy` example: SOCKS5 and HTTP proxying on one port, told apart by the
//! first byte, driven by real curl, Python `httpx` and headless Chromium over 127.0.0.1.

use rama::{Conn, tcp, tls, tls::dev};
use rama_e2e::{
    PATIENCE, Running, accepted, chromium_dump_dom, origins, plain, python::python_with_socks,
    rama_origin, raw, read_head, throw_mutated_beside, until,
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::Command,
    time::timeout,
};
use tower::Layer;

/// Reads a request head, answers `origin says hi` followed by the request line, closes.
async fn answer_http<S>(mut stream: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(head) = read_head(&mut stream).await? else {
        return Ok(());
    };
    let line = head.lines().next().unwrap_or_default();
    let body = format!("origin says hi: {line}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A plain HTTP/1.1 origin.
fn http_origin() -> SocketAddr {
    rama_e2e::stream_origin(answer_http)
}

/// An HTTPS origin for `localhost`/`127.0.0.1` with a fresh CA: its address and the CA's PEM.
fn https_origin(test: &str) -> (SocketAddr, PathBuf) {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("proxy-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dev::Ca::generate("rama test CA").unwrap();
    ca.write(&dir).unwrap();
    let (cert, key) = ca
        .issue_server(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(&dir, "origin")
        .unwrap();
    let acceptor = tls::Acceptor::from_pem_files(cert, key).unwrap();
    let answer = tower::service_fn(|conn: Conn<tls::TlsStream<tcp::Stream>>| {
        answer_http(conn.into_parts().0)
    });
    let addr = rama_origin(|server| server.serve(acceptor.layer(answer)).spawn_connections());
    (addr, dir.join("ca.pem"))
}

fn proxy(args: &[&str]) -> Running {
    Running::start_local("proxy", args)
}

/// An HTTP/1.1 tunnel through the all-in-one port (its client side behind the bytes the first
/// byte's detection read) whose client gives up with a TCP `RST` while the upstream reads
/// nothing has the upstream reset at once, not held until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h1_tunnel_reset_by_its_client_resets_its_stalled_upstream_at_once() {
    rama_e2e::assert_h1_tunnel_reset_passes_on(&proxy(&[]), None).await;
}

/// What curl saw: the final status, the proxy's `CONNECT` answer (0 without one), the body.
#[derive(Debug)]
struct Curl {
    status: u16,
    connect: u16,
    body: String,
    stderr: String,
}

async fn curl(args: &[&str]) -> Curl {
    let options = [
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code} %{http_connect}",
    ];
    let output = rama_e2e::curl(&[&options[..], args].concat()).await;
    let [status, connect] = output.codes();
    Curl {
        status,
        connect,
        body: output.body,
        stderr: output.stderr,
    }
}

/// A SOCKS5 username/password login on a raw connection: the server's auth status byte.
async fn socks5_login(proxy: SocketAddr, user: &str, password: &str) -> [u8; 2] {
    let login = async {
        let mut stream = TcpStream::connect(proxy).await?;
        stream.write_all(&[0x05, 0x01, 0x02]).await?;
        let mut method = [0u8; 2];
        stream.read_exact(&mut method).await?;
        assert_eq!(method, [0x05, 0x02], "the proxy asks for a password");
        let mut auth = vec![0x01, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(password.len() as u8);
        auth.extend_from_slice(password.as_bytes());
        stream.write_all(&auth).await?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await?;
        Ok::<_, std::io::Error>(status)
    };
    timeout(PATIENCE, login)
        .await
        .expect("the login took too long")
        .expect("the login failed on the wire")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_absolute_form_connect_and_socks5_share_one_port() {
    let origin = http_origin();
    let (secure, ca) = https_origin("share");
    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/plain");
    let https = format!("https://localhost:{}/secure", secure.port());

    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        got.body.contains("origin says hi: GET /plain HTTP/1.1"),
        "absolute-form reaches the origin in origin-form: {got:?}"
    );

    let got = curl(&["-p", "-x", &x, &url]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");
    assert!(got.body.contains("GET /plain"), "{got:?}");

    let got = curl(&["-x", &x, "--cacert", ca.to_str().unwrap(), &https]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");
    assert!(got.body.contains("GET /secure"), "{got:?}");

    let got = curl(&["--socks5-hostname", &proxy.addr.to_string(), &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(got.body.contains("GET /plain"), "{got:?}");

    let got = curl(&[
        "--socks5-hostname",
        &proxy.addr.to_string(),
        "--cacert",
        ca.to_str().unwrap(),
        &https,
    ])
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert!(got.body.contains("GET /secure"), "{got:?}");

    proxy.wait_for_log("http proxy: CONNECT").await;
}

/// Names RFC 6761 reserves never reach the system resolver (which would send them to the
/// machine's name server): a name under `localhost` is the loopback address, in absolute-form,
/// through `CONNECT` and over SOCKS5, even with the rules that allow loopback only; a name under
/// `invalid` fails at once, `502` and SOCKS5's host unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_under_localhost_are_loopback_and_names_under_invalid_do_not_exist() {
    let origin = http_origin();
    let url = format!("http://app.localhost:{}/named", origin.port());
    for rules in [&[][..], &["--loopback-only"]] {
        let proxy = proxy(rules);
        let x = format!("http://{}", proxy.addr);
        let socks = proxy.addr.to_string();
        for via in [
            &["-x", &x][..],
            &["-p", "-x", &x],
            &["--socks5-hostname", &socks],
        ] {
            let got = curl(&[via, &[&url]].concat()).await;
            assert_eq!(got.status, 200, "{rules:?} {via:?}: {got:?}");
            assert!(
                got.body.contains("GET /named"),
                "{rules:?} {via:?}: {got:?}"
            );
        }
    }

    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let got = curl(&["-x", &x, "http://no-such-host.invalid/"]).await;
    assert_eq!(got.status, 502, "{got:?}");
    assert!(got.body.contains("RFC 6761"), "{got:?}");
    let got = curl(&["-p", "-x", &x, "http://no-such-host.invalid/"]).await;
    assert_eq!(got.connect, 502, "{got:?}");
    let got = curl(&[
        "--socks5-hostname",
        &proxy.addr.to_string(),
        "http://no-such-host.invalid/",
    ])
    .await;
    // curl names the reply code: 4, host unreachable.
    assert!(got.stderr.contains("no-such-host.invalid. (4)"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_a_line_per_request_and_per_tunnel() {
    let origin = http_origin();
    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/logged");
    for args in [
        &["-x", x.as_str()][..],
        &["-p", "-x", x.as_str()],
        &["--socks5-hostname", &proxy.addr.to_string()],
    ] {
        let got = curl(&[args, &[url.as_str()]].concat()).await;
        assert_eq!(got.status, 200, "{args:?}: {got:?}");
    }
    let access = |what: &str| {
        plain(&proxy.stderr())
            .lines()
            .filter(|line| line.contains("rama::access") && line.contains(what))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // The CONNECT's and the SOCKS5 tunnel's relays end once curl closes them.
    until("two tunnels in the access log", || {
        access("relay finished").len() == 2
    })
    .await;
    for line in access("relay finished") {
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(line.contains(&format!("upstream={origin}")), "{line}");
        assert!(!line.contains("received=0 "), "{line}");
    }
    let answered = access("answered");
    assert_eq!(answered.len(), 2, "{answered:?}");
    let get = format!("method=GET uri=http://{origin}/logged status=200");
    assert!(answered.iter().any(|l| l.contains(&get)), "{answered:?}");
    let connect = format!("method=CONNECT uri={origin} status=200");
    assert!(
        answered.iter().any(|l| l.contains(&connect)),
        "{answered:?}"
    );
    assert!(
        answered.iter().all(|l| l.contains("peer=127.0.0.1:")),
        "{answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_user_works_for_both_protocols_and_a_wrong_password_is_refused() {
    let origin = http_origin();
    let proxy = proxy(&["--user", "alice:s3cret"]);
    let url = format!("http://{origin}/");
    let good = format!("http://{}", proxy.addr);

    let got = curl(&["-x", &good, "--proxy-user", "alice:s3cret", &url]).await;
    assert_eq!(got.status, 200, "{got:?}");
    let got = curl(&["-p", "-x", &good, "--proxy-user", "alice:s3cret", &url]).await;
    assert_eq!((got.connect, got.status), (200, 200), "{got:?}");
    let socks = format!("{}", proxy.addr);
    let got = curl(&[
        "--socks5-hostname",
        &socks,
        "--proxy-user",
        "alice:s3cret",
        &url,
    ])
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    // The access log names the user, as squid's does: the request, the CONNECT, and the
    // tunnels of the CONNECT and of SOCKS5.
    let named = |log: &str, needle: &str| {
        (log.lines())
            .filter(|l| l.contains("rama::access") && l.contains("user=\"alice\""))
            .filter(|l| l.contains(needle))
            .count()
    };
    until("the access lines of alice's three exchanges", || {
        let log = plain(&proxy.stderr());
        named(&log, "method=GET") == 1
            && named(&log, "method=CONNECT") == 1
            && named(&log, "relay finished") == 2
    })
    .await;

    // HTTP: a wrong password and no credentials get 407, absolute-form and CONNECT alike.
    let got = curl(&["-x", &good, "--proxy-user", "alice:wrong", &url]).await;
    assert_eq!(got.status, 407, "{got:?}");
    let got = curl(&["-x", &good, &url]).await;
    assert_eq!(got.status, 407, "{got:?}");
    let got = curl(&["-p", "-x", &good, "--proxy-user", "alice:wrong", &url]).await;
    assert_eq!(got.connect, 407, "{got:?}");

    // SOCKS5: curl gives up, and on the wire the RFC 1929 status is 0x01.
    let got = curl(&[
        "--socks5-hostname",
        &socks,
        "--proxy-user",
        "alice:wrong",
        &url,
    ])
    .await;
    assert_eq!(got.status, 0, "{got:?}");
    assert_eq!(
        socks5_login(proxy.addr, "alice", "wrong").await,
        [0x01, 0x01]
    );
    assert_eq!(
        socks5_login(proxy.addr, "alice", "s3cret").await,
        [0x01, 0x00]
    );
}

/// The curl lines the proxy prints on start work as pasted into a shell, with a name and a
/// password holding what means something in a URL (`:`, `@`, `%`, a space) and to a shell
/// (`&`, `$`, quotes, `!`): each line run by `sh -c`, with example.com's URLs replaced by
/// local origins' (and the HTTPS origin's CA added).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_lines_printed_on_start_work_as_pasted_into_a_shell() {
    let origin = http_origin();
    let (secure, ca) = https_origin("pasted");
    let proxy = proxy(&["--user", "al ice@home:p@ss:w%rd&$(x)'\"!"]);
    let lines = proxy.printed_lines("try: ", 3).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in lines {
        assert!(line.starts_with("curl "), "{line}");
        let https = format!(
            "--cacert {} https://localhost:{}/pasted",
            ca.display(),
            secure.port()
        );
        let command = line
            .replace("https://example.com/", &https)
            .replace("http://example.com/", &format!("http://{origin}/pasted"));
        let output = rama_e2e::run_bounded(
            Command::new("sh")
                .arg("-c")
                .arg(format!("{command} -sS --max-time 20"))
                .kill_on_drop(true),
            "sh",
        )
        .await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.starts_with("origin says hi: GET /pasted "),
            "{line}\n{stdout}{stderr}"
        );
    }
}

/// A SOCKS4 client (not served: its first byte is no SOCKS5 greeting, so it goes to HTTP)
/// gets HTTP's `400`, and the proxy logs the malformed request: curl reads 8 bytes of the
/// answer, finds no SOCKS4 reply and resets the connection, which met the server's shutdown
/// after the `400` and was logged in place of the reason (as a reset, now no failure at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks4_client_is_logged_as_the_malformed_request_it_is() {
    let proxy = proxy(&[]);
    let socks4 = format!("socks4://{}", proxy.addr);
    for _ in 0..3 {
        let output = rama_e2e::curl(&[
            "-sS",
            "--max-time",
            "10",
            "-x",
            &socks4,
            "http://127.0.0.1:9/",
        ])
        .await;
        assert!(output.stderr.contains("SOCKS4"), "{}", output.stderr);
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = plain(&proxy.stderr());
        let failed: Vec<&str> = (log.lines())
            .filter(|l| l.contains("connection failed"))
            .collect();
        assert!(
            failed.iter().all(|l| l.contains("invalid HTTP method")),
            "{failed:#?}"
        );
        if failed.len() == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An origin that echoes each line, and resets its connection at the line `reset`.
fn resetting_echo_origin() -> SocketAddr {
    rama_e2e::stream_origin(|stream| async move {
        let mut lines = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        while let Ok(1..) = tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line).await {
            if line == "reset\n" {
                let _ = lines.get_ref().set_zero_linger();
                return;
            }
            if lines.get_mut().write_all(line.as_bytes()).await.is_err() {
                return;
            }
            line.clear();
        }
    })
}

/// A tunnel to `origin` through `proxy`, by SOCKS5 or by `CONNECT`, that echoed a line.
async fn echoing_tunnel(proxy: SocketAddr, origin: SocketAddr, socks5: bool) -> TcpStream {
    let mut stream = if socks5 {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        let std::net::IpAddr::V4(ip) = origin.ip() else {
            unreachable!("the origin is on 127.0.0.1")
        };
        let mut request = vec![0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01];
        request.extend_from_slice(&ip.octets());
        request.extend_from_slice(&origin.port().to_be_bytes());
        stream.write_all(&request).await.unwrap();
        let mut replies = [0u8; 2 + 10];
        timeout(PATIENCE, stream.read_exact(&mut replies))
            .await
            .expect("the replies in time")
            .unwrap();
        assert_eq!(replies[..4], [0x05, 0x00, 0x05, 0x00], "{replies:?}");
        stream
    } else {
        rama_e2e::h1_tunnel(proxy, origin).await
    };
    assert_eq!(
        rama_e2e::echo_line(&mut stream, "hello\n").await.unwrap(),
        "hello\n"
    );
    stream
}

/// A tunnel whose client or upstream resets its TCP connection ended by a peer's doing, not
/// by the proxy's failure (browsers reset connections they are done with all the time): it
/// has its access line, `relay reset`, and no warning; by SOCKS5 and by `CONNECT` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_reset_by_either_peer_has_its_access_line_and_no_warning() {
    let origin = resetting_echo_origin();
    let proxy = proxy(&[]);
    for socks5 in [true, false] {
        for by_client in [true, false] {
            let mut stream = echoing_tunnel(proxy.addr, origin, socks5).await;
            let me = stream.local_addr().unwrap();
            if by_client {
                stream.set_zero_linger().unwrap();
                drop(stream);
            } else {
                stream.write_all(b"reset\n").await.unwrap();
                let mut rest = Vec::new();
                // Ends with a reset or an end; either way it ends.
                let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
                    .await
                    .expect("the tunnel ended in time");
            }
            let what = format!("socks5: {socks5}, by the client: {by_client}");
            let peer = format!("peer={me}");
            let access = |log: &str| {
                (log.lines())
                    .find(|l| l.contains(&peer) && l.contains("relay reset"))
                    .map(str::to_owned)
            };
            until(&format!("{what}: an access line"), || {
                access(&plain(&proxy.stderr())).is_some()
            })
            .await;
            // The connection's own end comes after the relay's.
            let ended = |log: &str| {
                (log.lines()).any(|l| {
                    l.contains(&peer)
                        && ["connection closed", "connection reset", "connection failed"]
                            .iter()
                            .any(|end| l.contains(end))
                })
            };
            until(&format!("{what}: the connection's end"), || {
                ended(&plain(&proxy.stderr()))
            })
            .await;
            let log = plain(&proxy.stderr());
            let line = access(&log).unwrap_or_default();
            assert!(line.contains("INFO"), "{what}: {line}");
            let warned: Vec<&str> = (log.lines())
                .filter(|l| l.contains(&peer) && l.contains("WARN"))
                .collect();
            assert!(warned.is_empty(), "{what}: {warned:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_ports_are_refused_in_each_protocol_and_sigterm_stops_it() {
    let origin = http_origin();
    let port = origin.port().to_string();
    let mut proxy = proxy(&["--deny-port", &port]);
    let x = format!("http://{}", proxy.addr);
    let url = format!("http://{origin}/");

    let got = curl(&["-x", &x, &url]).await;
    assert_eq!(got.status, 403, "{got:?}");
    let got = curl(&["-p", "-x", &x, &url]).await;
    assert_eq!(got.connect, 403, "{got:?}");
    let got = curl(&["--socks5-hostname", &proxy.addr.to_string(), &url]).await;
    assert_eq!(got.status, 0, "{got:?}");
    assert!(
        got.stderr.contains("not allowed") || got.stderr.contains("(2)"),
        "curl names SOCKS5 reply 0x02: {got:?}"
    );

    assert!(
        proxy.terminate().await,
        "the proxy exits cleanly on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_to_the_proxy_itself_is_refused_in_each_protocol() {
    let proxy = proxy(&[]);
    let x = format!("http://{}", proxy.addr);
    let socks = proxy.addr.to_string();
    // By address, and by a name that resolves to it (localhost: ::1 first or last).
    for own in [
        proxy.addr.to_string(),
        format!("localhost:{}", proxy.addr.port()),
    ] {
        let url = format!("http://{own}/");
        let got = curl(&["-p", "-x", &x, &url]).await;
        assert_eq!(got.connect, 403, "{own}: {got:?}");
        let got = curl(&["--socks5-hostname", &socks, &url]).await;
        assert_eq!(got.status, 0, "{own}: {got:?}");
        assert!(
            got.stderr.contains("not allowed") || got.stderr.contains("(2)"),
            "curl names SOCKS5 reply 0x02: {got:?}"
        );
    }
    // CONNECTs to the proxy nested in one write (each would carry the next into the tunnel it
    // opened, two file descriptors a level): the first is refused, and the connection ends
    // with it, the rest unread (what follows a failed CONNECT was meant for its tunnel).
    let nested = format!("CONNECT {socks} HTTP/1.1\r\nHost: {socks}\r\n\r\n").repeat(50);
    let answers = raw(proxy.addr, nested.as_bytes()).await;
    assert_eq!(answers.matches("HTTP/1.1 ").count(), 1, "{answers}");
    assert!(answers.starts_with("HTTP/1.1 403 Forbidden"), "{answers}");
    let log = plain(&proxy.wait_for_log("it is this proxy's own address").await);
    let line = log.lines().find(|l| l.contains("own address")).unwrap();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    // No connection to the proxy is left, the client's or a tunnel's (curl's connections may
    // take a moment to be seen closed).
    let port = proxy.addr.port();
    until("no connection to the proxy", || accepted(port) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_httpx_goes_through_absolute_form_and_connect() {
    let python = python_with_socks();
    let origin = http_origin();
    let (secure, ca) = https_origin("httpx");
    let proxy = proxy(&["--user", "bob:pw"]);
    let script = r#"
import ssl, sys, httpx
proxy, plain, secure, ca = sys.argv[1:5]
context = ssl.create_default_context(cafile=ca)
with httpx.Client(proxy=proxy, verify=context, timeout=20) as client:
    for url in (plain, secure):
        response = client.get(url)
        print(response.status_code, response.text.strip())
"#;
    let run = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(format!("http://bob:pw@{}", proxy.addr))
        .arg(format!("http://{origin}/via-httpx"))
        .arg(format!("https://localhost:{}/tunnelled", secure.port()))
        .arg(&ca)
        .output();
    let out = timeout(PATIENCE, run)
        .await
        .expect("httpx took too long")
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "httpx failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("200 origin says hi: GET /via-httpx"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("200 origin says hi: GET /tunnelled"),
        "{stdout}"
    );
    proxy.wait_for_log("http proxy: CONNECT").await;
}

/// A page with a stylesheet, a script and an image, on 127.0.0.1: the origin records each
/// request as `PATH via` or `PATH direct` (whether an HTTP proxy's `Via` came with it).
fn page_origin() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    const PAGE: &str = "<!doctype html><html><head><link rel=stylesheet href=/style.css>\
        <script src=/app.js></script></head><body><img src=/img.svg>\
        <p id=x>static</p></body></html>";
    const SCRIPT: &str = "document.addEventListener('DOMContentLoaded', () => \
        { document.getElementById('x').textContent = 'the script ran' })";
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    origins().spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(Some(head)) = read_head(&mut stream).await else {
                    return;
                };
                let head = head.to_ascii_lowercase();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let via = if head.contains("\r\nvia: ") {
                    "via"
                } else {
                    "direct"
                };
                log.lock().unwrap().push(format!("{path} {via}"));
                let (status, kind, body) = match path.as_str() {
                    "/" => ("200 OK", "text/html", PAGE),
                    "/style.css" => ("200 OK", "text/css", "p { color: green }"),
                    "/app.js" => ("200 OK", "text/javascript", SCRIPT),
                    "/img.svg" => (
                        "200 OK",
                        "image/svg+xml",
                        "<svg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/>",
                    ),
                    _ => ("404 Not Found", "text/plain", "not here"),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_loads_a_page_with_subresources_over_http_and_socks5() {
    let (origin, seen) = page_origin();
    // Chromium's background requests (its clock, sign-in, updates) go to the proxy too: they
    // are refused without a lookup, so that nothing leaves the machine.
    let proxy = proxy(&["--loopback-only"]);
    let url = format!("http://{origin}/");
    let wanted = ["/", "/style.css", "/app.js", "/img.svg"];

    let dom = chromium_dump_dom(&format!("http://{}", proxy.addr), &url, "http", &[]).await;
    assert!(dom.contains("the script ran"), "{dom}");
    {
        let seen = seen.lock().unwrap();
        for path in wanted {
            assert!(
                seen.contains(&format!("{path} via")),
                "{path} through the HTTP proxy: {seen:?}"
            );
        }
        assert!(!seen.iter().any(|s| s.ends_with("direct")), "{seen:?}");
    }
    seen.lock().unwrap().clear();

    let dom = chromium_dump_dom(&format!("socks5://{}", proxy.addr), &url, "socks5", &[]).await;
    assert!(dom.contains("the script ran"), "{dom}");
    let seen = seen.lock().unwrap().clone();
    for path in wanted {
        // A SOCKS5 tunnel is bytes: no `Via`.
        assert!(seen.contains(&format!("{path} direct")), "{path}: {seen:?}");
    }
    proxy.wait_for_log("socks5 request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_on_a_taken_port_and_mistyped_options_exit_with_an_error() {
    let first = proxy(&[]);
    let addr = first.addr.to_string();
    let ca_dir = rama_e2e::scratch("mistyped-pass-through");
    let ca_dir = ca_dir.to_str().unwrap();
    let tries: [(&str, &[&str], &str); 5] = [
        // On the first one's port, with a login it would not ask for half the time.
        (
            "proxy",
            &["--listen", &addr, "--user", "alice:s3cret"],
            "in use",
        ),
        // A mistyped `--deny-port` and `--user`: no open proxy.
        (
            "proxy",
            &["--deny-prot", "9000", "--usr", "alice:s3cret"],
            "unknown option `--deny-prot`",
        ),
        (
            "proxy",
            &["--alow-private", "--user", "a:b"],
            "unknown option `--alow-private`",
        ),
        (
            "proxy",
            &["--connect-timeout", "-1"],
            "--connect-timeout -1",
        ),
        // mitmproxy's `--ignore-hosts` form, which would never match: the host intercepted.
        (
            "mitm_proxy",
            &[
                "--ca-dir",
                ca_dir,
                "--listen",
                "127.0.0.1:0",
                "--pass-through",
                "localhost:443",
            ],
            "Error: --pass-through localhost:443: a host name",
        ),
    ];
    for (example, args, error) in tries {
        let run = Command::new(rama_e2e::example(example))
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = timeout(PATIENCE, run).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started: {stderr}");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Well-formed traffic of every kind the all-in-one port serves, with the login of the proxy
/// [`mutated_traffic_neither_panics_the_proxy_nor_holds_up_its_other_clients`] starts
/// (`u:p`), to `origin`.
fn traffic(origin: SocketAddr) -> Vec<Vec<u8>> {
    let auth = "Proxy-Authorization: Basic dTpw\r\n";
    let port = origin.port().to_be_bytes();
    let socks5 = |connect: &[u8]| {
        let mut bytes = vec![0x05, 0x01, 0x02, 0x01, 0x01, b'u', 0x01, b'p'];
        bytes.extend_from_slice(connect);
        bytes.extend_from_slice(&port);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: o\r\n\r\n");
        bytes
    };
    vec![
        format!("GET http://{origin}/a?b=c HTTP/1.1\r\nHost: {origin}\r\n{auth}\r\n").into(),
        format!("POST http://{origin}/u HTTP/1.1\r\nHost: {origin}\r\n{auth}Content-Length: 3\r\n\r\nabc").into(),
        format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n{auth}\r\nGET / HTTP/1.1\r\nHost: o\r\n\r\n").into(),
        format!("GET http://localhost:{}/ HTTP/1.0\r\n{auth}Connection: keep-alive\r\n\r\nGET http://{origin}/2 HTTP/1.0\r\n{auth}\r\n", origin.port()).into(),
        format!("PUT http://{origin}/c HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").into(),
        format!("GET ws://{origin}/w HTTP/1.1\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").into(),
        socks5(&[0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]),
        socks5(&[0x05, 0x01, 0x00, 0x03, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't']),
        socks5(&[0x05, 0x01, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        // UDP ASSOCIATE: the relay lives as long as this connection.
        vec![0x05, 0x01, 0x02, 0x01, 0x01, b'u', 0x01, b'p', 0x05, 0x03, 0x00, 0x01, 127, 0, 0, 1, 0, 0],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec(),
    ]
}

/// What the mutations put in besides the bytes of the traffic itself: HTTP's separators and
/// framing fields, SOCKS5's versions, commands and address types, lengths at their edges.
const TRAFFIC_PIECES: &[&[u8]] = &[
    b" ",
    b"\r\n",
    b":",
    b"0",
    b"\0",
    b"\x01",
    b"\x03",
    b"\x04",
    b"\x05",
    b"\x7f",
    b"\xff",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Proxy-Authorization: Basic x\r\n",
    b"[::1]",
    b"127.0.0.1:1",
    b"%2e%2e/",
    b"GET / HTTP/1.1\r\n\r\n",
];

/// A well-formed absolute-form request through `proxy` to `origin`, the connection closed
/// after it: the response, whole.
async fn well_formed(proxy: SocketAddr, origin: SocketAddr) -> String {
    let request = format!(
        "GET http://{origin}/ok HTTP/1.1\r\nHost: {origin}\r\nProxy-Authorization: Basic dTpw\r\nConnection: close\r\n\r\n"
    );
    let mut stream = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .expect("an answer");
    String::from_utf8_lossy(&response).into_owned()
}

/// Mutated HTTP and SOCKS5 traffic (`tests/support/mutate.rs`) thrown at the all-in-one port,
/// 1,024 connections 32 at a time, while a client beside it makes well-formed requests: every
/// one of those is answered, and the proxy neither panics nor stops. Destinations are
/// loopback only (`--loopback-only` refuses other names unresolved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_traffic_neither_panics_the_proxy_nor_holds_up_its_other_clients() {
    let origin = http_origin();
    let mut proxy = proxy(&["--loopback-only", "--connect-timeout", "2", "--user", "u:p"]);
    let addr = proxy.addr;
    let traffic = traffic(origin);
    let seeds: Vec<&[u8]> = traffic.iter().map(Vec::as_slice).collect();
    let held = throw_mutated_beside(addr, &seeds, TRAFFIC_PIECES, move || async move {
        let response = well_formed(addr, origin).await;
        assert!(
            response.starts_with("HTTP/1.1 200") && response.contains("origin says hi"),
            "a well-formed request beside the mutated traffic got: {response}"
        );
    })
    .await;
    proxy.assert_running_without_a_panic();
    // Tunnels to a peer that holds them open are the proxy's to keep; they are few.
    assert!(
        held < 100,
        "{held} of 1,024 connections were still open after 5 s"
    );
    assert!(well_formed(addr, origin).await.starts_with("HTTP/1.1 200"));
}
