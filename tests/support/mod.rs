//! Shared plumbing of the end-to-end tests: running the examples as real processes, local
//! origins to relay to, bounded curl runs, scratch directories and test certificates, and
//! payload checksums; [`python`] and [`ws`] hold the Python and WebSocket clients and origins,
//! [`load`] the command line of the load generators. Everything listens on 127.0.0.1 only.

pub mod load;
pub mod mutate;
pub mod python;
pub mod ws;

use sha2::{Digest, Sha256};
use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The path of a built example, (re)built once per test process so that it is never stale
/// (`cargo test -p rama-e2e` alone does not rebuild another package's examples).
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    // The test binary is target/<profile>/deps/<name>-<hash>; examples are next door.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    if !built.iter().any(|b| b == name) {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--quiet", "-p", "rama-examples", "--example", name]);
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo");
        assert!(status.success(), "building example {name} failed");
        built.push(name.to_owned());
    }
    profile_dir.join("examples").join(name)
}

/// A running example process: killed when dropped.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// The address it printed in its `listening on ADDR` line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// What it printed after its `listening on` line.
    printed: Arc<Mutex<String>>,
}

impl Running {
    /// Starts example `name` with `args` and waits for its `listening on ADDR` line.
    pub fn start(name: &str, args: &[&str]) -> Self {
        Self::start_command(Command::new(example(name)), args)
    }

    /// Starts example `name` listening on `127.0.0.1:0` with one server thread, and `args`.
    pub fn start_local(name: &str, args: &[&str]) -> Self {
        let local = ["--listen", "127.0.0.1:0", "--threads", "1"];
        Self::start(name, &[&local[..], args].concat())
    }

    /// Starts example `name` under `sh -c 'ulimit -n LIMIT; exec ...'`.
    pub fn start_with_fd_limit(name: &str, limit: u32, args: &[&str]) -> Self {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(example(name));
        Self::start_command(sh, args)
    }

    fn start_command(mut command: Command, args: &[&str]) -> Self {
        let mut child = command
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = Arc::new(Mutex::new(String::new()));
        let sink = printed.clone();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if sent {
                    let mut printed = sink.lock().unwrap();
                    printed.push_str(&line);
                    printed.push('\n');
                } else if let Some(addr) = line.strip_prefix("listening on ") {
                    sent = tx.send(addr.trim().to_owned()).is_ok();
                }
            }
        });
        let addr = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "example never printed `listening on`: {}",
                stderr.lock().unwrap()
            )
        });
        Self {
            child,
            addr: addr.parse().expect("listening address"),
            stderr,
            printed,
        }
    }

    /// The lines it printed after `listening on` that start with `prefix`, without it, once
    /// there are `count` of them (bounded).
    pub async fn printed_lines(&self, prefix: &str, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let lines: Vec<String> = (self.printed.lock().unwrap().lines())
                .filter_map(|line| line.strip_prefix(prefix))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never printed {count} lines starting with `{prefix}`: {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) until the log contains `needle`, returning the whole log.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "log never showed `{needle}`:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until a line of the log contains `needle`: that line, colours removed.
    pub async fn wait_for_line(&self, needle: &str) -> String {
        let log = plain(&self.wait_for_log(needle).await);
        log.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with `{needle}` once colours are removed:\n{log}"))
            .to_owned()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait on child").is_none()
    }

    /// Asserts that the process still runs and that nothing in its log panicked.
    pub fn assert_running_without_a_panic(&mut self) {
        assert!(self.is_running(), "it stopped: {}", self.stderr());
        let log = self.stderr();
        assert!(!log.contains("panicked"), "it panicked:\n{log}");
    }

    /// The process id (for `/proc/<pid>/status`, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns whether it exited successfully.
    /// Async, so that origins on the test's runtime keep running while the example drains.
    pub async fn terminate(&mut self) -> bool {
        self.send_sigterm();
        self.wait_exit().await
    }

    /// Sends SIGTERM without waiting for the exit (see [`Running::wait_exit`]).
    pub fn send_sigterm(&self) {
        // `kill(1)` keeps the tests free of unsafe code.
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns whether it exited successfully.
    pub async fn wait_exit(&mut self) -> bool {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on child") {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "example did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime the origins run on: their own threads, so that a test blocking its own
/// runtime (waiting on a child process, say) never stalls an origin mid-exchange.
pub fn origins() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-origin")
            .enable_all()
            .build()
            .expect("origin runtime")
    })
}

/// The resident set size (`VmRSS` in `/proc/<pid>/status`) of process `pid` right now, in
/// bytes; `None` once it is gone.
pub fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Reads an HTTP/1.1 head (request or response) up to and including its blank line, byte by
/// byte so that nothing after it is consumed; `None` when the peer closes first. A head over
/// 64 KiB is an error.
pub async fn read_head<S>(stream: &mut S) -> std::io::Result<Option<String>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "head over 64 KiB",
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// Waits, bounded by [`PATIENCE`], until `done` holds (for a state with no signal of its own to
/// wait on, such as a process's threads in `/proc`).
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `future` on the origins' runtime.
pub fn spawn_origin<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    origins().spawn(future);
}

/// Binds 127.0.0.1:0 and runs `serve` with that listener on a thread and current-thread
/// runtime of its own, for an origin that must never wait on another one's work; returns the
/// address.
pub fn origin_thread<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(std::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking origin");
    let addr = listener.local_addr().expect("the origin's address");
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("origin runtime");
        runtime.block_on(serve(listener));
    });
    addr
}

/// Binds a rama [`tcp::Server`](rama::tcp::Server) on 127.0.0.1:0 and runs what `serve` makes
/// of it on the origins' runtime; returns the address.
pub fn rama_origin<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(rama::tcp::Server) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send,
{
    let server = rama::tcp::Server::bind("127.0.0.1:0");
    let addr = server.local_addr().expect("bind origin");
    let _guard = origins().enter();
    let serving = serve(server);
    origins().spawn(serving);
    addr
}

/// Binds an origin listener on 127.0.0.1 inside the origins' runtime.
pub fn bind_origin() -> (TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let _guard = origins().enter();
    (TcpListener::from_std(listener).unwrap(), addr)
}

/// An origin on 127.0.0.1, on the origins' runtime, that hands each connection it accepts to
/// `serve`, in a task of its own; its address.
pub fn stream_origin<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send,
{
    let (listener, addr) = bind_origin();
    origins().spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// A TCP echo origin on 127.0.0.1 (half-close aware: it shuts its write side after the
/// client's EOF). Counts the connections it accepted.
#[derive(Debug, Clone)]
pub struct EchoOrigin {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl EchoOrigin {
    /// Starts the origin on the current runtime.
    pub async fn start() -> Self {
        let (listener, addr) = bind_origin();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        origins().spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// An origin that reads until EOF, then answers the SHA-256 of what it read followed by
/// `reply` bytes of [`payload`] data, then closes: it only answers after the client's
/// half-close.
pub async fn digest_origin(reply: usize) -> SocketAddr {
    let (listener, addr) = bind_origin();
    origins().spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => hasher.update(&buf[..n]),
                        Err(_) => return,
                    }
                }
                let _ = stream.write_all(&hasher.finalize()).await;
                let _ = stream.write_all(&payload(reply, 7)).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// The request line and headers of `request` as an origin sees them: `METHOD URI VERSION`,
/// then a `name: value` line per header (what the echoing origins answer).
pub fn request_text<B>(request: &http::Request<B>) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "{} {} {:?}\n",
        request.method(),
        request.uri(),
        request.version()
    );
    for (name, value) in request.headers() {
        let _ = writeln!(text, "{name}: {}", value.to_str().unwrap_or("?"));
    }
    text
}

/// `len` deterministic pseudo-random bytes (xorshift from `seed`).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = mutate::Rng::seeded(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Connects to `addr`, sends `data` while reading, and returns everything read until EOF
/// (within [`PATIENCE`]).
pub async fn exchange(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(PATIENCE, exchange_unbounded(addr, data)).await?
}

async fn exchange_unbounded(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let data = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await?;
        w.shutdown().await
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await?;
    writer.await.expect("writer task")?;
    Ok(got)
}

/// Asserts that `line` is an access line (target `rama::access`) naming the client `peer` and
/// the `upstream` it was relayed to.
pub fn assert_access_line(line: &str, peer: SocketAddr, upstream: impl std::fmt::Display) {
    assert!(line.contains("rama::access"), "{line}");
    assert!(line.contains(&format!("peer={peer}")), "{line}");
    assert!(line.contains(&format!("upstream={upstream}")), "{line}");
}

/// The log without its colours.
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// An address on 127.0.0.1 that nothing listens on: a port bound, then released.
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// How many established TCP connections on this machine have `port` as their local port
/// (`/proc/net/tcp`, IPv4): a server's end of each connection it accepted there.
pub fn accepted(port: u16) -> usize {
    let port = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "01"
        })
        .count()
}

/// Sends `bytes` on a raw connection, its sending side left open, and reads the answer until
/// the server closes (which it must, within [`PATIENCE`]).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server never closed")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends `input` on a connection of its own, shuts the sending side and reads until the server
/// closes, or gives up after 5 s (a tunnel may stand open to a peer that waits): whether it
/// closed (not when the connect failed).
async fn throw(addr: SocketAddr, input: Vec<u8>) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let _ = stream.write_all(&input).await;
    let _ = stream.shutdown().await;
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// Throws 1,024 mutated inputs at `addr` ([`mutate::mutated`] of `seeds` with `pieces`, the
/// generator seeded by the connection's number), 32 connections at a time, each sending all
/// and shutting its side, while `turn` runs again and again beside them (a well-formed client,
/// which asserts what it gets): how many of them were still open 5 s after their end. Panics
/// when a turn did, or when `turn` never got one.
pub async fn throw_mutated_beside<F, Fut>(
    addr: SocketAddr,
    seeds: &[&[u8]],
    pieces: &[&[u8]],
    mut turn: F,
) -> usize
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicBool::new(false));
    let beside = tokio::spawn({
        let done = done.clone();
        async move {
            let mut turns = 0;
            while !done.load(Ordering::Relaxed) {
                turn().await;
                turns += 1;
            }
            turns
        }
    });
    let mut held = 0;
    for batch in 0..32u64 {
        let throws: Vec<_> = (0..32)
            .map(|i| {
                let mut rng = mutate::Rng::seeded(batch * 32 + i);
                tokio::spawn(throw(addr, mutate::mutated(&mut rng, seeds, pieces)))
            })
            .collect();
        for thrown in throws {
            held += usize::from(!thrown.await.expect("a throw"));
        }
    }
    done.store(true, Ordering::Relaxed);
    let turns = beside.await.expect("the client beside the mutated traffic");
    assert!(
        turns > 0,
        "the client beside the mutated traffic got no turn"
    );
    held
}

/// Writes one line and reads back the echo of it (within [`PATIENCE`]): proof a relay
/// through `stream` works.
pub async fn echo_line(stream: &mut TcpStream, line: &str) -> std::io::Result<String> {
    let echo = async {
        stream.write_all(line.as_bytes()).await?;
        let mut buf = vec![0u8; line.len()];
        stream.read_exact(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    tokio::time::timeout(PATIENCE, echo).await?
}

/// Runs `command` to its end within [`PATIENCE`] and returns what it printed; `what` names it
/// when it hangs or cannot start.
pub async fn run_bounded(command: &mut tokio::process::Command, what: &str) -> Output {
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} took too long"))
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"))
}

/// What a [`curl`] run printed.
#[derive(Debug)]
pub struct CurlOutput {
    /// Standard output up to its last line: the body.
    pub body: String,
    /// The last line of standard output: what the `-w "\n..."` format wrote.
    pub written: String,
    /// Standard error (curl's `-v` log, its error messages).
    pub stderr: String,
}

impl CurlOutput {
    /// The first `N` numbers of the `-w` line (`%{http_code} %{http_connect}`, say), 0 for
    /// each that is missing or not a number.
    pub fn codes<const N: usize>(&self) -> [u16; N] {
        let mut words = self.written.split(' ');
        std::array::from_fn(|_| {
            words
                .next()
                .and_then(|word| word.trim().parse().ok())
                .unwrap_or(0)
        })
    }
}

/// Runs curl with `args` within [`PATIENCE`]; `args` end its output with a `-w "\n..."` line.
pub async fn curl(args: &[&str]) -> CurlOutput {
    let output = run_bounded(tokio::process::Command::new("curl").args(args), "curl").await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, written) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    CurlOutput {
        body: body.to_owned(),
        written: written.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A directory of the calling test's own under the target dir's `tmp` (`NAME-PID`), emptied.
pub fn scratch(name: &str) -> PathBuf {
    let dir = python::target_dir()
        .join("tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A CA of an origin's own (`CN=rama test CA`, `DIR/ca.pem`) and the origin's certificate
/// for `localhost` and `127.0.0.1` (`DIR/origin.pem`, `DIR/origin.key`), in the
/// [`scratch`] directory `name`; returns the directory.
pub fn origin_certificate(name: &str) -> PathBuf {
    origin_certificate_for(name, &["localhost", "127.0.0.1"])
}

/// [`origin_certificate`] for the names (and addresses) `sans` alone.
pub fn origin_certificate_for(name: &str, sans: &[&str]) -> PathBuf {
    let dir = scratch(name);
    let ca = rama::tls::dev::Ca::generate("rama test CA").expect("generate the test CA");
    ca.write(&dir).expect("write the test CA");
    ca.issue_server(sans)
        .expect("issue the origin certificate")
        .write(&dir, "origin")
        .expect("write the origin certificate");
    dir
}

/// An HTTPS origin offering HTTP/2 and HTTP/1.1 by ALPN, with a certificate of its own CA
/// ([`origin_certificate`] in `name`) and `answer` behind `http::Server`, on its own thread
/// ([`origin_thread`]); its address and the CA's PEM path.
pub fn h2_https_origin<F, Fut>(name: &str, answer: F) -> (SocketAddr, PathBuf)
where
    F: Fn(http::Request<rama::http::Body>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<http::Response<rama::http::Body>, rama::BoxError>>
        + 'static,
{
    let dir = origin_certificate(name);
    let addr = https_origin_in(&dir, &["h2", "http/1.1"], answer);
    (addr, dir.join("ca.pem"))
}

/// An HTTPS origin with the certificate in `dir` (`origin.pem`, `origin.key`, as
/// [`origin_certificate_for`] writes them), offering `alpn`, and `answer` behind
/// `http::Server`, on its own thread ([`origin_thread`]); its address.
pub fn https_origin_in<F, Fut>(dir: &Path, alpn: &[&str], answer: F) -> SocketAddr
where
    F: Fn(http::Request<rama::http::Body>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<http::Response<rama::http::Body>, rama::BoxError>>
        + 'static,
{
    use tower::Layer;
    let acceptor = rama::tls::Acceptor::builder()
        .cert_pem_files(dir.join("origin.pem"), dir.join("origin.key"))
        .expect("the origin's certificate")
        .alpn(alpn)
        .build()
        .expect("the origin's TLS configuration");
    origin_thread(|listener| async move {
        let http = rama::http::Server::new().layer(tower::service_fn(answer));
        let server = rama::tcp::Server::from_std(listener).serve(acceptor.layer(http));
        let _ = server.await;
    })
}

/// hyper's HTTP/2 client over `io`: the handle to send requests with, and the connection's
/// task (it ends once every handle is dropped).
pub async fn h2_handshake<IO>(
    io: IO,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    h2_handshake_for(io).await
}

/// [`h2_handshake`] for requests with bodies of type `B`.
pub async fn h2_handshake_for<B, IO>(
    io: IO,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = tokio::time::timeout(
        PATIENCE,
        hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(io),
        ),
    )
    .await
    .expect("the HTTP/2 handshake in time")
    .expect("the HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

/// Headless Chromium through `proxy_server`, with `extra` flags: the DOM once the page at
/// `url` loaded (its load event). Chromium never looks a name
/// up itself here: the proxy's rules decide what is reached (run the proxies with
/// `--loopback-only`, since Chromium's background requests go through them too).
pub async fn chromium_dump_dom(
    proxy_server: &str,
    url: &str,
    profile: &str,
    extra: &[&str],
) -> String {
    let profile = scratch(&format!("chromium-{profile}"));
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--proxy-server={proxy_server}"))
        // Chromium never proxies loopback unless told to.
        .arg("--proxy-bypass-list=<-loopback>")
        // Nor looks up a name itself (SOCKS5 would let it): only the proxy's rules decide.
        .arg("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1")
        .args(extra)
        .args(["--dump-dom", url])
        .kill_on_drop(true)
        .output();
    // Chromium's own bound, three times the usual: its first start on a cold machine took 20 s
    // here when idle, and past 30 s once in CI beside the other tests (stop 19).
    let out = tokio::time::timeout(PATIENCE * 3, run)
        .await
        .expect("chromium took too long")
        .unwrap_or_else(|error| {
            panic!("cannot run chromium ({error}); .ci/run installs it with apt-get")
        });
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed: {dom}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Reads a chunked body (RFC 9112 7.1) to its end, byte by byte so that nothing after it is
/// consumed: its data, and its trailer section's field lines as they came.
pub async fn read_chunked<S>(stream: &mut S) -> std::io::Result<(Vec<u8>, Vec<String>)>
where
    S: tokio::io::AsyncRead + Unpin,
{
    async fn line<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<String> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.push(stream.read_u8().await?);
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut data = Vec::new();
    loop {
        let size = line(stream).await?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid(size))?;
        if size == 0 {
            break;
        }
        let at = data.len();
        data.resize(at + size, 0);
        stream.read_exact(&mut data[at..]).await?;
        if !line(stream).await?.is_empty() {
            return Err(invalid("chunk data not followed by CRLF"));
        }
    }
    let mut trailers = Vec::new();
    loop {
        let field = line(stream).await?;
        if field.is_empty() {
            return Ok((data, trailers));
        }
        trailers.push(field);
    }
}

/// An HTTP/1.1 origin on raw sockets whose every answer ends in trailers: `200`, chunked,
/// `hello`, then the trailer section `trailers` (field lines, each with its CRLF), with a
/// `Trailer` field naming what comes and a `Connection` naming `x-origin-hop`. Each request it reads (the head, and a chunked body's
/// trailer lines after it, one per line) goes to the receiver as text; a request body by
/// length is read past.
pub fn trailer_origin(trailers: &'static str) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let (seen, requests) = std::sync::mpsc::channel();
    let addr = origin_thread(move |listener| async move {
        let listener = TcpListener::from_std(listener).expect("the origin's listener");
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok(Some(head)) = read_head(&mut stream).await {
                    let lower = head.to_ascii_lowercase();
                    let mut request = head.clone();
                    if lower.contains("transfer-encoding: chunked") {
                        let Ok((_, trailers)) = read_chunked(&mut stream).await else {
                            return;
                        };
                        for field in trailers {
                            request.push_str(&field);
                            request.push('\n');
                        }
                    } else if let Some(length) = lower
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                    {
                        let mut body = vec![0; length];
                        if stream.read_exact(&mut body).await.is_err() {
                            return;
                        }
                    }
                    let _ = seen.send(request);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\
                         trailer: grpc-status, x-checksum\r\nconnection: x-origin-hop\r\n\r\n5\r\nhello\r\n0\r\n{trailers}\r\n"
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// The data of an upload larger than the server's own HTTP/1.1 path takes whole (64 KiB): a
/// request that carries it goes to hyper, which serves its connection from then on.
pub const PAST_OWN_PATH: usize = 65 * 1024;

/// `head` (ending in its empty line, saying `Transfer-Encoding: chunked`), then a chunked body
/// of [`PAST_OWN_PATH`] bytes in one chunk: hands a connection of the server's own HTTP/1.1
/// path to hyper, whatever the reads it comes in (a small chunked upload that comes whole is
/// the own path's).
pub fn chunked_past_own_path(head: &str) -> String {
    format!(
        "{head}{PAST_OWN_PATH:x}\r\n{}\r\n0\r\n\r\n",
        "a".repeat(PAST_OWN_PATH)
    )
}

/// The trailer section [`assert_trailers_pass`] has its [`trailer_origin`] send: two fields a
/// next hop may get, two no trailer may carry (RFC 9110 6.5.1), and one the head's
/// `Connection` named (this hop's).
pub const ORIGIN_TRAILERS: &str = "grpc-status: 0\r\ncontent-length: 99\r\nhost: evil.test\r\n\
                                   x-origin-hop: 1\r\nx-checksum: abc\r\n";

/// Checks on one raw HTTP/1.1 connection to `proxy`, whose upstream is a [`trailer_origin`]
/// sending [`ORIGIN_TRAILERS`] (whose requests come out of `seen`), that trailers pass both ways
/// without the fields no trailer may carry and those the head's `Connection` named: a `GET` (`prefix` before its path: empty for
/// origin-form, `http://host:port` for a forward proxy) gets the origin's trailers after its
/// body; then the trailers of two chunked uploads, one small (the server's own path) and one
/// large (hyper's), reach the origin, and their answers' trailers the client (which says
/// `TE: trailers`: hyper's server, which serves the connection from the large upload on,
/// writes trailers only to a client that asked).
pub async fn assert_trailers_pass(
    proxy: SocketAddr,
    prefix: &str,
    seen: &std::sync::mpsc::Receiver<String>,
) {
    let exchange = async {
        let mut client = TcpStream::connect(proxy).await.unwrap();
        let get = format!("GET {prefix}/get HTTP/1.1\r\nhost: rama.test\r\n\r\n");
        let upload = |data: &str| {
            format!(
                "POST {prefix}/upload HTTP/1.1\r\nhost: rama.test\r\ntransfer-encoding: chunked\r\n\
                 te: trailers\r\ntrailer: x-upload-sum\r\nconnection: x-upload-hop\r\n\r\n\
                 {:x}\r\n{data}\r\n0\r\nx-upload-sum: 123\r\nhost: evil.test\r\ncontent-length: 5\r\n\
                 connection: close\r\nx-upload-hop: 1\r\n\r\n",
                data.len()
            )
        };
        // Small and sent whole, the upload is the server's own path's; larger than that path
        // takes (64 KiB), hyper's, which serves the connection from then on.
        let (small, large) = (upload("hello"), upload(&"a".repeat(PAST_OWN_PATH)));
        let mut answers = Vec::new();
        for request in [get, small, large] {
            let request_line = request.lines().next().unwrap_or_default().to_owned();
            client.write_all(request.as_bytes()).await.unwrap();
            let head = read_head(&mut client).await.unwrap().expect("a response");
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            let (data, trailers) = read_chunked(&mut client).await.expect("a chunked body");
            assert_eq!(data, b"hello", "{head}");
            answers.push((request_line, head, trailers));
        }
        answers
    };
    let answers = tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("the answers in time");
    for (request_line, head, trailers) in answers {
        let fields = ["grpc-status: 0", "x-checksum: abc"];
        assert_eq!(trailers, fields, "{request_line}: {head}");
    }
    let get = seen.recv_timeout(PATIENCE).expect("the GET at the origin");
    assert!(get.contains(" /get HTTP/1.1\r\n"), "{get}");
    assert_upload_trailers(seen);
    assert_upload_trailers(seen);
}

/// Checks that the next request a [`trailer_origin`] saw is an upload to `/upload` whose
/// trailer section is `x-upload-sum: 123` alone.
pub fn assert_upload_trailers(seen: &std::sync::mpsc::Receiver<String>) {
    let upload = seen
        .recv_timeout(PATIENCE)
        .expect("the upload at the origin");
    let (head, trailers) = upload.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains(" /upload HTTP/1.1\r\n"), "{upload}");
    assert_eq!(trailers, "x-upload-sum: 123\n", "{upload}");
}

/// Waits, without reading (a read would let a relay move again), until `stream`'s peer has
/// closed it: a FIN or a RST, told by the socket's readiness rather than by its bytes.
pub async fn closed_by_peer(stream: &TcpStream) {
    use tokio::io::Interest;
    loop {
        let ready = stream
            .ready(Interest::READABLE | Interest::ERROR)
            .await
            .unwrap();
        if ready.is_read_closed() || ready.is_error() {
            return;
        }
        // Bytes, not the end: forget this readiness and wait for the next event, unread.
        let _ = stream.try_io(Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    }
}

/// An upstream on 127.0.0.1 that accepts one connection and never reads from it; its receive
/// buffer is the smallest the system allows, so that a tunnel's bytes soon fill the way to it
/// and the proxy's writes to it wait.
pub async fn deaf_upstream() -> (SocketAddr, tokio::task::JoinHandle<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Accepted connections inherit it.
    socket.set_recv_buffer_size(1).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    (addr, accepted)
}

/// Waits up to 3 s (the proxy's idle timeout is 5 minutes) for the proxy to close `stream`,
/// and checks it did so with a `RST`; `what` names the stream for the failure message.
pub async fn assert_reset_at_once(stream: &TcpStream, proxy: &Running, what: impl Fn() -> String) {
    tokio::time::timeout(Duration::from_secs(3), closed_by_peer(stream))
        .await
        .unwrap_or_else(|_| panic!("{} still open after 3 s:\n{}", what(), proxy.stderr()));
    assert_eq!(
        stream.take_error().unwrap().map(|error| error.kind()),
        Some(std::io::ErrorKind::ConnectionReset),
        "{}",
        what()
    );
}

/// Opens an HTTP/1.1 tunnel (`CONNECT`) through the proxy at `proxy` to `upstream`; the
/// client's stream, past the `200`.
pub async fn h1_tunnel(proxy: SocketAddr, upstream: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(proxy).await.unwrap();
    open_h1_tunnel(&mut client, upstream).await;
    client
}

async fn open_h1_tunnel<S>(client: &mut S, upstream: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let connect = format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n");
    client.write_all(connect.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(PATIENCE, read_head(client))
        .await
        .unwrap();
    let head = head.unwrap().expect("the CONNECT answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// Opens an HTTP/1.1 tunnel through `proxy` (over TLS with `tls`) to an upstream that never
/// reads, fills it until the proxy takes no more, then resets the client's TCP connection:
/// the upstream must be reset within 3 s (the proxy's idle timeout is 5 minutes), and the
/// proxy's access line say `relay reset by the client`.
pub async fn assert_h1_tunnel_reset_passes_on(proxy: &Running, tls: Option<&rama::tls::Connector>) {
    let (upstream, accepted) = deaf_upstream().await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let sent = match tls {
        None => {
            let mut client = tcp;
            open_h1_tunnel(&mut client, upstream).await;
            let sent = write_until_stalled(&client).await;
            client.set_zero_linger().unwrap();
            sent
        }
        Some(connector) => {
            let host = rama::Host::Ip(proxy.addr.ip());
            let mut client = tokio::time::timeout(PATIENCE, connector.connect(&host, tcp))
                .await
                .expect("the TLS handshake in time")
                .expect("the TLS handshake");
            open_h1_tunnel(&mut client, upstream).await;
            let sent = send_until_quiet(&mut client).await;
            client.get_ref().0.set_zero_linger().unwrap();
            sent
        }
    };
    let upstream_side = tokio::time::timeout(PATIENCE, accepted)
        .await
        .expect("the proxy dialed the upstream")
        .unwrap();
    assert_reset_at_once(&upstream_side, proxy, || {
        format!("the upstream's connection, after {sent} bytes and the client's reset")
    })
    .await;
    let line = proxy.wait_for_line("relay reset by the client").await;
    assert_access_line(&line, me, upstream);
}

/// Starts a proxy with `proxy` (given the upstream's address) in front of an upstream that
/// writes until the way to a client that reads nothing is full, then resets its connection;
/// the client (through an HTTP/1.1 `CONNECT` when `connect`) must be reset within 3 s, not
/// held until it moves.
pub async fn assert_upstream_reset_passes_on(
    proxy: impl FnOnce(SocketAddr) -> Running,
    connect: bool,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (stalled_tx, stalled) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let sent = write_until_stalled(&stream).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
        let _ = stalled_tx.send(sent);
    });
    let proxy = proxy(upstream);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // The smallest receive buffer the system allows: the upstream's bytes soon fill the way.
    socket.set_recv_buffer_size(1).unwrap();
    let mut client = socket.connect(proxy.addr).await.unwrap();
    if connect {
        open_h1_tunnel(&mut client, upstream).await;
    }
    let sent = tokio::time::timeout(PATIENCE, stalled)
        .await
        .expect("the upstream stalled and reset in time")
        .unwrap();
    assert_reset_at_once(&client, &proxy, || {
        format!("the client's connection, after {sent} bytes and the upstream's reset")
    })
    .await;
}

/// [`write_until_stalled`] for any stream (TLS over the socket, say): writes until a write
/// has waited the quiet period.
async fn send_until_quiet<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S) -> usize {
    use tokio::io::AsyncWriteExt;
    const QUIET: Duration = Duration::from_millis(500);
    let chunk = vec![b'x'; 16 << 10];
    let mut sent = 0usize;
    while let Ok(written) = tokio::time::timeout(QUIET, stream.write(&chunk)).await {
        sent +=
            written.unwrap_or_else(|error| panic!("the write failed after {sent} bytes: {error}"));
        assert!(sent < 256 << 20, "the peer never stopped taking bytes");
    }
    sent
}

/// Writes to `stream` as long as its peer (a proxy's relay to a peer that never reads) takes
/// bytes; the bytes written. The end of the filling is a quiet period, as in
/// [`send_until_stalled`].
pub async fn write_until_stalled(stream: &TcpStream) -> usize {
    const QUIET: Duration = Duration::from_millis(500);
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0usize;
    while tokio::time::timeout(QUIET, stream.writable()).await.is_ok() {
        match stream.try_write(&chunk) {
            Ok(n) => sent += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("the write failed after {sent} bytes: {error}"),
        }
        assert!(sent < 256 << 20, "the peer never stopped taking bytes");
    }
    sent
}

/// Sends `pattern` over and over (each send goes on where the last one stopped, so a pattern of
/// whole WebSocket frames stays a stream of frames) on an HTTP/2 stream whose far end (a
/// proxy's relay to an upstream that never reads) stops taking bytes, as long as the proxy
/// grants the stream room; the bytes sent. Once the upstream's buffer is full the relay's
/// write waits, it reads no more of the stream, and no more room comes: the end of the
/// filling is a quiet period, the one thing here waited for by time. On a machine too slow
/// for it the relay may be less stuck than meant when the test goes on, which weakens what a
/// test proves without its fix, never what it asserts with it.
pub async fn send_until_stalled(
    stream: &mut h2::SendStream<bytes::Bytes>,
    pattern: bytes::Bytes,
) -> usize {
    const QUIET: Duration = Duration::from_millis(500);
    let mut at = 0;
    let mut sent = 0usize;
    loop {
        stream.reserve_capacity(pattern.len());
        let room =
            tokio::time::timeout(QUIET, std::future::poll_fn(|cx| stream.poll_capacity(cx))).await;
        match room {
            Ok(Some(Ok(room))) => {
                let end = pattern.len().min(at + room);
                stream.send_data(pattern.slice(at..end), false).unwrap();
                sent += end - at;
                at = end % pattern.len();
            }
            Ok(other) => panic!("the stream failed after {sent} bytes: {other:?}"),
            Err(_) => break,
        }
        assert!(sent < 256 << 20, "the upstream never stopped the stream");
    }
    // At least the stream's whole window (512 KiB) was granted before the proxy read a byte.
    assert!(sent >= 512 << 10, "{sent}");
    sent
}
