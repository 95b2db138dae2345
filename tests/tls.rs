//! TLS: the acceptor (SNI, ALPN, mutual TLS, bad input), the connector behind `target`, the
//! TLS-or-plain detection and the bare `tls` of a diagram, with curl, openssl and rama's own
//! TLS client over 127.0.0.1.
//!
//! Certificates are generated at test time with `rama::tls::dev` into a directory under
//! `target/` (nothing secret is committed).

use rama::{
    Address, BoxError, Conn, Target, proxy, socks5, tcp,
    tls::{
        self, Alpn, Negotiated, PeerIdentity, ServerName, dev,
        rustls::{
            HandshakeKind,
            pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
            server::{ClientHello, ResolvesServerCert},
            sign::CertifiedKey,
        },
    },
};
use rama_e2e::{EchoOrigin, PATIENCE, Running, echo_line, rama_origin, read_head};
use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    process::Output,
    rc::Rc,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Command,
    time::timeout,
};
use tower::{Layer, Service};

/// A fresh directory for one test's certificates, under cargo's temporary dir in `target/`.
fn cert_dir(test: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CA written to `dir/ca.pem`, and a server certificate for `names` in `dir/STEM.{pem,key}`.
fn ca_and_server(dir: &Path, stem: &str, names: &[&str]) -> (dev::Ca, PathBuf, PathBuf) {
    let ca = dev::Ca::generate("rama test CA").unwrap();
    ca.write(dir).unwrap();
    let (cert, key) = ca.issue_server(names).unwrap().write(dir, stem).unwrap();
    (ca, cert, key)
}

/// An HTTP/1.1 origin that answers every request with `body` and closes.
fn http_origin(body: &'static str) -> SocketAddr {
    rama_e2e::stream_origin(move |stream| answer_http(stream, body.to_owned()))
}

/// Reads a request head, answers `body`, closes.
async fn answer_http<S>(mut stream: S, body: String) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if read_head(&mut stream).await?.is_none() {
        return Ok(());
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Runs `curl` with `args` (bounded), returning its output.
async fn curl(args: &[&str]) -> Output {
    let run = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .kill_on_drop(true)
        .output();
    timeout(PATIENCE, run)
        .await
        .expect("curl hung")
        .expect("run curl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Serves `service` on 127.0.0.1 on the current runtime; returns the address.
fn serve<S>(service: S) -> SocketAddr
where
    S: Service<Conn<tcp::Stream>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    let server = tcp::Server::bind("127.0.0.1:0").serve(service);
    let addr = server.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        let _ = server.await;
    });
    addr
}

/// Runs a test body on a current-thread runtime inside a `LocalSet`: stacks need not be `Send`.
fn local<F: Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, test);
}

/// The facts the acceptor recorded, as the next stage saw them.
#[derive(Debug, Default, Clone)]
struct Seen {
    sni: Option<String>,
    alpn: Option<String>,
    identity: Option<String>,
    /// The negotiated version, recorded for every TLS connection.
    version: Option<String>,
}

/// The stage after TLS in these tests: records the facts into an `Rc` (so it is neither
/// `Send` nor `Clone`) and answers an HTTP request with them.
struct Report {
    seen: Rc<Cell<Option<Seen>>>,
}

impl<S> Service<Conn<S>> for Report
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    type Response = ();
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<()>>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<S>) -> Self::Future {
        let facts = conn.info().extensions();
        let seen = Seen {
            sni: facts.get::<ServerName>().map(|n| n.as_str().to_owned()),
            alpn: facts.get::<Alpn>().map(ToString::to_string),
            identity: facts.get::<PeerIdentity>().map(ToString::to_string),
            version: facts
                .get::<Negotiated>()
                .map(|negotiated| format!("{:?}", negotiated.version())),
        };
        self.seen.set(Some(seen.clone()));
        let (stream, _) = conn.into_parts();
        Box::pin(answer_http(
            stream,
            format!(
                "sni={} alpn={} client={}",
                seen.sni.unwrap_or_default(),
                seen.alpn.unwrap_or_default(),
                seen.identity.unwrap_or_default()
            ),
        ))
    }
}

fn report() -> (Report, Rc<Cell<Option<Seen>>>) {
    let seen = Rc::new(Cell::new(None));
    (Report { seen: seen.clone() }, seen)
}

#[test]
fn sni_picks_one_certificate_per_name_on_one_listener() {
    local(async {
        let dir = cert_dir("sni");
        let ca = dev::Ca::generate("rama test CA").unwrap();
        ca.write(&dir).unwrap();
        let (alpha, alpha_key) = ca
            .issue_server(&["alpha.test"])
            .unwrap()
            .write(&dir, "alpha")
            .unwrap();
        let (beta, beta_key) = ca
            .issue_server(&["beta.test"])
            .unwrap()
            .write(&dir, "beta")
            .unwrap();
        let acceptor = tls::Acceptor::builder()
            .cert_pem_files_for("alpha.test", &alpha, &alpha_key)
            .unwrap()
            .cert_pem_files_for("beta.test", &beta, &beta_key)
            .unwrap()
            .build()
            .unwrap();
        let (stage, seen) = report();
        let addr = serve(acceptor.layer(stage));
        let ca_pem = dir.join("ca.pem");

        for name in ["alpha.test", "beta.test"] {
            let resolve = format!("{name}:{}:127.0.0.1", addr.port());
            let url = format!("https://{name}:{}/", addr.port());
            let out = curl(&[
                "-v",
                "--cacert",
                ca_pem.to_str().unwrap(),
                "--resolve",
                &resolve,
                &url,
            ])
            .await;
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            // curl verified the certificate for the name: it was that name's certificate.
            assert!(
                stderr(&out).contains(&format!("CN={name}")),
                "{}",
                stderr(&out)
            );
            assert!(
                stdout(&out).starts_with(&format!("sni={name} ")),
                "{}",
                stdout(&out)
            );
            assert_eq!(seen.take().unwrap().sni.as_deref(), Some(name));
        }

        // A name without a certificate of its own, and no default: the handshake is refused.
        let resolve = format!("gamma.test:{}:127.0.0.1", addr.port());
        let url = format!("https://gamma.test:{}/", addr.port());
        let out = curl(&[
            "--cacert",
            ca_pem.to_str().unwrap(),
            "--resolve",
            &resolve,
            &url,
        ])
        .await;
        assert!(!out.status.success());
    });
}

/// `openssl s_client` to `connect` with `args`, its stdin closed (it ends after the
/// handshake).
async fn s_client(connect: &str, args: &[&str]) -> std::process::Output {
    let run = Command::new("openssl")
        .args(["s_client", "-connect", connect])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    timeout(PATIENCE, run).await.unwrap().unwrap()
}

#[test]
fn alpn_h2_is_negotiated_and_recorded_for_the_next_stage() {
    local(async {
        let dir = cert_dir("alpn");
        let (_, cert, key) = ca_and_server(&dir, "server", &["localhost"]);
        let ca_pem = dir.join("ca.pem");
        let offering = |alpn: &[&str]| {
            tls::Acceptor::builder()
                .cert_pem_files(&cert, &key)
                .unwrap()
                .alpn(alpn.iter().copied())
                .build()
                .unwrap()
        };

        // The stack offers h2: curl --http2 gets it. (No HTTP stage yet, so curl's HTTP/2
        // exchange itself fails; the negotiation is what is checked.)
        let (stage, seen) = report();
        let addr = serve(offering(&["h2", "http/1.1"]).layer(stage));
        let url = format!("https://localhost:{}/", addr.port());
        let out = curl(&["-v", "--http2", "--cacert", ca_pem.to_str().unwrap(), &url]).await;
        assert!(
            stderr(&out).contains("ALPN: server accepted h2"),
            "{}",
            stderr(&out)
        );
        assert_eq!(seen.take().unwrap().alpn.as_deref(), Some("h2"));

        // openssl agrees.
        let connect = format!("127.0.0.1:{}", addr.port());
        let out = s_client(&connect, &["-alpn", "h2", "-servername", "localhost"]).await;
        assert!(
            stdout(&out).contains("ALPN protocol: h2"),
            "{}",
            stdout(&out)
        );

        // A client that sends neither SNI nor ALPN leaves only what the handshake negotiated:
        // that alone says the connection is TLS.
        seen.take();
        let out = s_client(&connect, &["-noservername"]).await;
        assert!(
            stdout(&out).contains("No ALPN negotiated"),
            "{}",
            stdout(&out)
        );
        // The server's side of the handshake may end after openssl exits.
        let seen = timeout(PATIENCE, async {
            loop {
                match seen.take() {
                    Some(seen) => break seen,
                    None => tokio::task::yield_now().await,
                }
            }
        })
        .await
        .expect("the stage after TLS was called");
        assert_eq!((seen.sni, seen.alpn), (None, None));
        assert_eq!(seen.version.as_deref(), Some("TLSv1_3"));

        // The stack offers only HTTP/1.1: curl --http2 falls back, the request is served.
        let (stage, seen) = report();
        let addr = serve(offering(&["http/1.1"]).layer(stage));
        let url = format!("https://localhost:{}/", addr.port());
        let out = curl(&["-v", "--http2", "--cacert", ca_pem.to_str().unwrap(), &url]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("ALPN: server accepted http/1.1"),
            "{}",
            stderr(&out)
        );
        assert_eq!(seen.take().unwrap().alpn.as_deref(), Some("http/1.1"));
    });
}

/// A mutual-TLS origin for `localhost` on the current runtime (behind it, [`report`]), and the
/// client certificate of alice, issued by the CA it requires.
struct MtlsOrigin {
    dir: PathBuf,
    ca_pem: PathBuf,
    client: PathBuf,
    client_key: PathBuf,
    addr: SocketAddr,
    seen: Rc<Cell<Option<Seen>>>,
}

fn mtls_origin(test: &str) -> MtlsOrigin {
    let dir = cert_dir(test);
    let (ca, cert, key) = ca_and_server(&dir, "server", &["localhost"]);
    let (client, client_key) = ca
        .issue_client("alice")
        .unwrap()
        .write(&dir, "alice")
        .unwrap();
    let ca_pem = dir.join("ca.pem");
    let acceptor = tls::Acceptor::builder()
        .cert_pem_files(&cert, &key)
        .unwrap()
        .client_ca_pem_file(&ca_pem)
        .unwrap()
        .build()
        .unwrap();
    let (stage, seen) = report();
    let addr = serve(acceptor.layer(stage));
    MtlsOrigin {
        dir,
        ca_pem,
        client,
        client_key,
        addr,
        seen,
    }
}

#[test]
fn mutual_tls_refuses_without_a_client_certificate_and_names_the_client_with_one() {
    local(async {
        let MtlsOrigin {
            dir,
            ca_pem,
            client,
            client_key,
            addr,
            seen,
        } = mtls_origin("mtls");
        let stranger = dev::Ca::generate("someone else's CA").unwrap();
        let (other, other_key) = stranger
            .issue_client("mallory")
            .unwrap()
            .write(&dir, "mallory")
            .unwrap();
        let url = format!("https://localhost:{}/", addr.port());
        let ca_arg = ca_pem.to_str().unwrap();

        let out = curl(&["--cacert", ca_arg, &url]).await;
        assert!(!out.status.success(), "served without a client certificate");
        assert!(stdout(&out).is_empty());

        let out = curl(&[
            "--cacert",
            ca_arg,
            "--cert",
            other.to_str().unwrap(),
            "--key",
            other_key.to_str().unwrap(),
            &url,
        ])
        .await;
        assert!(
            !out.status.success(),
            "served a client certificate from another CA"
        );

        let out = curl(&[
            "--cacert",
            ca_arg,
            "--cert",
            client.to_str().unwrap(),
            "--key",
            client_key.to_str().unwrap(),
            &url,
        ])
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).ends_with("client=alice"), "{}", stdout(&out));
        assert_eq!(seen.take().unwrap().identity.as_deref(), Some("alice"));
    });
}

/// A TLS echo origin behind `acceptor`, served by rama itself on the origins' runtime.
fn tls_echo_origin(acceptor: tls::Acceptor) -> SocketAddr {
    let echo = tower::service_fn(|conn: Conn<tls::TlsStream<tcp::Stream>>| async move {
        let (stream, _) = conn.into_parts();
        let (mut r, mut w) = tokio::io::split(stream);
        tokio::io::copy(&mut r, &mut w).await?;
        w.shutdown().await
    });
    rama_origin(|server| server.serve(acceptor.layer(echo)).spawn_connections())
}

/// The `tls_upstream` example towards `localhost:port`, trusting `ca` (the webpki roots without).
fn start_tls_upstream(port: u16, ca: Option<&Path>, extra: &[&str]) -> Running {
    let upstream = format!("localhost:{port}");
    let mut args = vec!["--listen", "127.0.0.1:0", "--upstream", &upstream];
    if let Some(ca) = ca {
        args.extend(["--upstream-ca", ca.to_str().unwrap()]);
    }
    args.extend_from_slice(extra);
    Running::start("tls_upstream", &args)
}

/// Sends a line through `proxy` and asserts that nothing comes back before the proxy hangs up;
/// returns the client's address, for finding the proxy's log line.
async fn assert_disconnected(proxy: &Running) -> SocketAddr {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    let _ = stream.write_all(b"hello\n").await;
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "data came back through a refused upstream");
    me
}

#[tokio::test]
async fn tls_upstream_reaches_an_origin_of_its_own_ca_and_refuses_a_wrong_name() {
    let dir = cert_dir("upstream");
    let (ca, cert, key) = ca_and_server(&dir, "localhost", &["localhost"]);
    let (wrong, wrong_key) = ca
        .issue_server(&["other.test"])
        .unwrap()
        .write(&dir, "other")
        .unwrap();
    let ca_pem = dir.join("ca.pem");

    let good = tls_echo_origin(tls::Acceptor::from_pem_files(&cert, &key).unwrap());
    let proxy = start_tls_upstream(good.port(), Some(&ca_pem), &[]);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        echo_line(&mut stream, "over tls\n").await.unwrap(),
        "over tls\n"
    );
    assert_eq!(
        echo_line(&mut stream, "and back\n").await.unwrap(),
        "and back\n"
    );
    drop(stream);

    // Same CA, but a certificate for another name: refused, the client is disconnected.
    let mismatched = tls_echo_origin(tls::Acceptor::from_pem_files(&wrong, &wrong_key).unwrap());
    let proxy = start_tls_upstream(mismatched.port(), Some(&ca_pem), &[]);
    let me = assert_disconnected(&proxy).await;
    let log = proxy.wait_for_log("connection failed").await;
    let line = log
        .lines()
        .find(|l| l.contains("connection failed"))
        .unwrap();
    assert!(line.contains(&me.to_string()), "no peer address in: {line}");
    assert!(
        line.contains("securing the connection to localhost"),
        "{line}"
    );
    assert!(line.contains("not valid for name"), "{line}");

    // Right name, but the webpki roots do not know this CA: refused too.
    let proxy = start_tls_upstream(good.port(), None, &[]);
    assert_disconnected(&proxy).await;
    let log = proxy.wait_for_log("connection failed").await;
    assert!(log.contains("UnknownIssuer"), "{log}");
}

#[tokio::test]
async fn a_returning_client_resumes_unless_resumption_is_off() {
    let dir = cert_dir("resumption");
    let (_, cert, key) = ca_and_server(&dir, "localhost", &["localhost"]);
    let resuming = tls::Acceptor::from_pem_files(&cert, &key).unwrap();
    let full_only = tls::Acceptor::builder()
        .cert_pem_files(&cert, &key)
        .unwrap()
        .without_resumption()
        .build()
        .unwrap();
    for (acceptor, second) in [
        (resuming, HandshakeKind::Resumed),
        (full_only, HandshakeKind::Full),
    ] {
        let origin = tls_echo_origin(acceptor);
        // One connector: its session cache carries the session from one connection to the next.
        let connector = tls::Connector::with_ca_pem_file(dir.join("ca.pem")).unwrap();
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut stream = connect_as_localhost(&connector, origin).await;
            // Reading the echo also reads the tickets the server sent after the handshake.
            assert_echoes(&mut stream, b"again\n").await;
            kinds.push(stream.get_ref().1.handshake_kind());
        }
        assert_eq!(kinds, [Some(HandshakeKind::Full), Some(second)]);
    }
}

/// A certificate resolver that serves one certificate and records the SNI of every
/// ClientHello, so a test sees what a client asked for even when it then refuses the
/// certificate.
#[derive(Debug)]
struct RecordSni {
    key: Arc<CertifiedKey>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl ResolvesServerCert for RecordSni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.seen
            .lock()
            .unwrap()
            .push(hello.server_name().map(str::to_owned));
        Some(self.key.clone())
    }
}

#[tokio::test]
async fn a_tls_url_target_sends_sni_from_its_host_and_verifies_against_the_webpki_roots() {
    let dir = cert_dir("tls-url");
    let (_, cert, key) = ca_and_server(&dir, "localhost", &["localhost"]);
    let chain = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = tls::rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(RecordSni {
            key: Arc::new(CertifiedKey::from_der(chain, key, &tls::provider()).unwrap()),
            seen: seen.clone(),
        }));
    let acceptor = tls::Acceptor::new(config);
    let never = tower::service_fn(|_: Conn<tls::TlsStream<tcp::Stream>>| async {
        Err::<(), _>(std::io::Error::other("no handshake should complete"))
    });
    let origin = rama_origin(|server| server.serve(acceptor.layer(never)).spawn_connections());

    // The string form, called on one connection: its client side is an in-memory pipe, its
    // upstream side a real TLS connection to the origin.
    let mut upstream = rama::target(format!("tls://localhost:{}", origin.port()));
    let (_client, stream) = tokio::io::duplex(1024);
    let info = rama::ConnInfo::new(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        rama::graceful::Signal::new(),
    );
    let error = timeout(PATIENCE, upstream.call(Conn::new(stream, info)))
        .await
        .unwrap()
        .expect_err("a certificate of a private CA was accepted");

    // TLS was spoken, with SNI from the URL's host, and the certificate was refused because
    // its CA is not among the webpki roots.
    assert_eq!(*seen.lock().unwrap(), [Some("localhost".to_owned())]);
    let reason = error.tls_error().and_then(tls::HandshakeError::tls_error);
    assert_eq!(
        reason,
        Some(&tls::rustls::Error::InvalidCertificate(
            tls::rustls::CertificateError::UnknownIssuer
        )),
        "{error}"
    );
}

#[test]
fn tls_upstream_presents_its_client_certificate_to_an_origin_that_requires_one() {
    local(async {
        let MtlsOrigin {
            ca_pem,
            client,
            client_key,
            addr,
            seen,
            ..
        } = mtls_origin("upstream-mtls");
        let tls_upstream = |extra: &[&str]| {
            let mut args = vec!["--threads", "1"];
            args.extend_from_slice(extra);
            start_tls_upstream(addr.port(), Some(&ca_pem), &args)
        };

        // With the client certificate: the origin verified it and saw alice.
        let proxy = tls_upstream(&[
            "--client-cert",
            client.to_str().unwrap(),
            "--client-key",
            client_key.to_str().unwrap(),
        ]);
        let out = curl(&[&format!("http://{}/", proxy.addr)]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "sni=localhost alpn= client=alice");
        assert_eq!(seen.take().unwrap().identity.as_deref(), Some("alice"));

        // Without it: the origin refuses the connection and nothing reaches its next stage.
        let proxy = tls_upstream(&[]);
        let out = curl(&[&format!("http://{}/", proxy.addr)]).await;
        assert!(!out.status.success(), "served: {}", stdout(&out));
        assert!(stdout(&out).is_empty());
        let log = proxy.wait_for_log("connection failed").await;
        assert!(log.contains("CertificateRequired"), "{log}");
        assert!(
            seen.take().is_none(),
            "the origin served a client without a certificate"
        );
    });
}

/// Connects to `addr` with rama's TLS client, trusting `ca_pem`, as `localhost`.
async fn tls_client(addr: SocketAddr, ca_pem: &Path) -> tls::ClientStream<TcpStream> {
    let connector = tls::Connector::with_ca_pem_file(ca_pem).unwrap();
    connect_as_localhost(&connector, addr).await
}

/// Connects to `addr` through `connector`, as `localhost`.
async fn connect_as_localhost(
    connector: &tls::Connector,
    addr: SocketAddr,
) -> tls::ClientStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let host: Address = "localhost:1".parse().unwrap();
    timeout(PATIENCE, connector.connect(host.host(), tcp))
        .await
        .unwrap()
        .unwrap()
}

/// Sends `bytes` and asserts that the same come back (bounded).
async fn assert_echoes<S>(stream: &mut S, bytes: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(bytes).await.unwrap();
    let mut echoed = vec![0u8; bytes.len()];
    timeout(PATIENCE, stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, bytes);
}

#[tokio::test]
async fn bad_input_ends_only_that_connection_logged_with_the_peer() {
    let dir = cert_dir("bad-input");
    let (_, cert, key) = ca_and_server(&dir, "server", &["localhost"]);
    let origin = EchoOrigin::start().await;
    let proxy = Running::start(
        "tls_reverse_proxy",
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin.addr.to_string(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--handshake-timeout",
            "1",
            "--threads",
            "1",
        ],
    );

    // A good client, open throughout.
    let mut good = tls_client(proxy.addr, &dir.join("ca.pem")).await;
    assert_echoes(&mut good, b"before\n").await;

    // A ClientHello cut short: handshake record header, then part of the message.
    let mut truncated = vec![
        0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00, 0x00, 0xec, 0x03, 0x03,
    ];
    truncated.extend_from_slice(&[7u8; 20]);
    let random: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, &[u8], bool, &str); 4] = [
        (
            "plain http",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            true,
            "tls handshake failed",
        ),
        ("random bytes", &random, true, "tls handshake failed"),
        (
            "truncated client hello",
            &truncated,
            true,
            "tls handshake failed",
        ),
        (
            "stalled handshake",
            &truncated[..5],
            false,
            "tls handshake timed out after 1s",
        ),
    ];
    for (what, bytes, close_write, reason) in cases {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let me = stream.local_addr().unwrap();
        stream.write_all(bytes).await.unwrap();
        if close_write {
            stream.shutdown().await.unwrap();
        }
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        // Ends with EOF (perhaps after a TLS alert) or a reset; either way it ends.
        let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection stayed open"));
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        let line = wait_for_line(&proxy, &me.to_string(), "connection failed").await;
        assert!(line.contains(reason), "{what}: {line}");
    }

    // The good client never noticed.
    assert_echoes(&mut good, b"after!\n").await;
}

/// Waits (bounded) for a log line containing both `a` and `b`.
async fn wait_for_line(proxy: &Running, a: &str, b: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(line) = proxy
            .stderr()
            .lines()
            .find(|l| l.contains(a) && l.contains(b))
        {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line with `{a}` and `{b}`:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn one_port_answers_https_and_http() {
    local(async {
        let dir = cert_dir("detect");
        let (_, cert, key) = ca_and_server(&dir, "server", &["localhost"]);
        let origin = http_origin("hello from the origin");
        let acceptor = tls::Acceptor::from_pem_files(&cert, &key).unwrap();
        let both = tls::Detect::new(
            acceptor.layer(Target::fixed(origin.into())),
            Target::fixed(origin.into()),
        );
        let addr = serve(both);
        let ca_pem = dir.join("ca.pem");

        let https = format!("https://localhost:{}/", addr.port());
        let out = curl(&["--cacert", ca_pem.to_str().unwrap(), &https]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "hello from the origin");

        let http = format!("http://127.0.0.1:{}/", addr.port());
        let out = curl(&[&http]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "hello from the origin");
    });
}

#[test]
fn bare_tls_in_a_diagram_serves_a_development_certificate_for_localhost() {
    local(async {
        let origin = http_origin("behind bare tls");
        let server = proxy! { tcp::Server::bind("127.0.0.1:0") => tls => target(origin) };
        let addr = server.local_addr().unwrap();
        tokio::task::spawn_local(async move {
            let _ = server.await;
        });
        // `Acceptor::dev` wrote its CA where it logged it.
        let ca = std::env::temp_dir().join(format!("rama-dev-ca-{}.pem", std::process::id()));
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("https://{host}:{}/", addr.port());
            let out = curl(&["--cacert", ca.to_str().unwrap(), &url]).await;
            assert!(out.status.success(), "{host}: {}", stderr(&out));
            assert_eq!(stdout(&out), "behind bare tls");
        }
    });
}

#[test]
fn socks5_inside_tls_in_one_line() {
    local(async {
        let origin = EchoOrigin::start().await;
        let server = proxy! { tcp::Server::bind("127.0.0.1:0") => tls => socks5::Server => target };
        let addr = server.local_addr().unwrap();
        tokio::task::spawn_local(async move {
            let _ = server.await;
        });
        // curl cannot wrap its SOCKS5 connection in TLS: rama's own TLS client does, trusting
        // the development CA that the bare `tls` wrote.
        let ca = std::env::temp_dir().join(format!("rama-dev-ca-{}.pem", std::process::id()));
        let mut stream = tls_client(addr, &ca).await;
        // Greeting: version 5, one method, no authentication.
        stream.write_all(&[5, 1, 0]).await.unwrap();
        let mut chosen = [0u8; 2];
        timeout(PATIENCE, stream.read_exact(&mut chosen))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chosen, [5, 0]);
        // CONNECT to the origin's IPv4 address.
        let SocketAddr::V4(v4) = origin.addr else {
            unreachable!("origins listen on 127.0.0.1")
        };
        let mut connect = vec![5, 1, 0, 1];
        connect.extend_from_slice(&v4.ip().octets());
        connect.extend_from_slice(&v4.port().to_be_bytes());
        stream.write_all(&connect).await.unwrap();
        let mut reply = [0u8; 10];
        timeout(PATIENCE, stream.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&reply[..2], &[5, 0], "SOCKS5 reply {reply:?}");
        assert_echoes(&mut stream, b"through tls and socks5\n").await;
    });
}

#[tokio::test]
async fn a_tls_peer_that_closes_without_close_notify_ends_its_side_of_the_relay() {
    let dir = cert_dir("no-close-notify");
    let (_, cert, key) = ca_and_server(&dir, "localhost", &["localhost"]);
    let ca_pem = dir.join("ca.pem");

    // An origin that answers a line, then closes its TCP side without `close_notify`, as
    // nginx does on a kept-alive connection.
    let acceptor = tls::Acceptor::from_pem_files(&cert, &key).unwrap();
    let abrupt = tower::service_fn(|conn: Conn<tls::TlsStream<tcp::Stream>>| async move {
        let (mut stream, _) = conn.into_parts();
        let mut line = [0u8; 6];
        stream.read_exact(&mut line).await?;
        stream.write_all(b"bye\n").await?;
        stream.flush().await?;
        stream.get_mut().0.shutdown().await
    });
    let origin = rama_origin(|server| server.serve(acceptor.layer(abrupt)).spawn_connections());
    let proxy = start_tls_upstream(origin.port(), Some(&ca_pem), &[]);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let me = stream.local_addr().unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    let mut answer = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"bye\n");
    drop(stream);
    let log = rama_e2e::plain(&proxy.wait_for_log("relay finished").await);
    assert!(log.contains(&format!("peer={me}")), "{log}");
    assert!(!log.contains("connection failed"), "{log}");

    // A client of the TLS terminator that half-closes without `close_notify`: its end reaches
    // the upstream (which answers only then), and the answer comes back.
    let origin = rama_e2e::digest_origin(1000).await;
    let proxy = Running::start(
        "tls_reverse_proxy",
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin.to_string(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let mut client = tls_client(proxy.addr, &ca_pem).await;
    client.write_all(b"abc").await.unwrap();
    client.flush().await.unwrap();
    client.get_mut().0.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = timeout(PATIENCE, client.read_to_end(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer.len(), 32 + 1000, "the answer after the half-close");
    assert_eq!(answer[..32], rama_e2e::sha256(b"abc"));
}

#[tokio::test]
async fn the_development_ca_file_is_trusted_then_removed_at_exit() {
    let origin = EchoOrigin::start().await;
    let mut proxy = Running::start(
        "tls_reverse_proxy",
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &origin.addr.to_string(),
        ],
    );
    let log = rama_e2e::plain(&proxy.wait_for_log("curl --cacert ").await);
    let ca = log
        .split("curl --cacert ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the CA's path in the log");
    let ca = PathBuf::from(ca);
    let mut client = tls_client(proxy.addr, &ca).await;
    assert_echoes(&mut client, b"trusted\n").await;
    drop(client);
    assert!(proxy.terminate().await, "exits cleanly on SIGTERM");
    assert!(!ca.exists(), "{} left behind", ca.display());
}
