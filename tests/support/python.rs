//! A Python with `python-socks`, `httpx` and `websockets`, for tests that drive rama with real
//! third-party clients ([`run_script`]) and origins ([`PythonServer`]).
//!
//! The first caller creates a venv in the target directory (`target/py-venv`) and installs
//! `python-socks`, `httpx` and `websockets` into it from PyPI; test binaries running in parallel
//! wait for it instead of racing (an atomic `mkdir` is the lock). The marker file that says the
//! venv is ready names every package, so a venv made before a package joined the list gets it
//! on the next run. A fresh machine needs only `python3` with `venv` and `pip`, and PyPI.

use crate::{PATIENCE, run_bounded};
use std::{
    ffi::OsStr,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
    thread,
    time::{Duration, Instant, SystemTime},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout},
    time::timeout,
};

/// How long creating the venv and installing into it may take.
const INSTALL_PATIENCE: Duration = Duration::from_secs(300);

/// The venv's `python`, with `python-socks`, `httpx` and `websockets` importable; created on first use.
pub fn python_with_socks() -> PathBuf {
    static READY: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut ready = READY.get_or_init(Default::default).lock().unwrap();
    if let Some(python) = ready.as_ref() {
        return python.clone();
    }
    let python = ensure_venv(&target_dir().join("py-venv"));
    *ready = Some(python.clone());
    python
}

/// Runs the Python `script` with `args` to its end (bounded) and returns its output lines;
/// panics with what it printed when it exits unsuccessfully.
pub async fn run_script(script: &str, args: &[&str]) -> Vec<String> {
    let mut command = tokio::process::Command::new(python_with_socks());
    let output = run_bounded(command.args(["-c", script]).args(args), "the python script").await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// A Python server script running as a child process (killed when dropped): the address of
/// the `listening on ADDR` line it prints when ready, and the lines it prints after.
#[derive(Debug)]
pub struct PythonServer {
    /// Where it listens.
    pub addr: SocketAddr,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl PythonServer {
    /// Starts `script` with `args` and waits (bounded) for its `listening on ADDR` line.
    pub async fn start<A: AsRef<OsStr>>(script: &str, args: &[A]) -> Self {
        let mut child = tokio::process::Command::new(python_with_socks())
            .args(["-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the python server");
        let stdout = child.stdout.take().expect("the server's piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = next_line(&mut lines).await;
        let addr = ready
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("not a `listening on ADDR` line: {ready}"));
        Self {
            addr,
            lines,
            _child: child,
        }
    }

    /// The next line the server printed (bounded).
    pub async fn next_line(&mut self) -> String {
        next_line(&mut self.lines).await
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    timeout(PATIENCE, lines.next_line())
        .await
        .expect("the python server took too long")
        .expect("read the python server's output")
        .expect("the python server ended early")
}

/// The cargo target directory: the test binary is `<target>/<profile>/deps/<name>-<hash>`.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("target dir above the test binary")
        .to_path_buf()
}

fn ensure_venv(venv: &Path) -> PathBuf {
    let python = venv.join("bin").join("python");
    let marker = venv.join(".python-socks-httpx-websockets-installed");
    let lock = venv.with_extension("lock");
    let deadline = Instant::now() + INSTALL_PATIENCE;
    loop {
        if marker.exists() {
            return python;
        }
        match std::fs::create_dir(&lock) {
            Ok(()) => {
                let result = install(venv, &python);
                if result.is_ok() {
                    std::fs::write(&marker, b"").expect("write the venv marker");
                }
                let _ = std::fs::remove_dir(&lock);
                if let Err(error) = result {
                    panic!("cannot set up python-socks in {}: {error}", venv.display());
                }
                return python;
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                // Someone else installs. A lock older than the patience is left over from a
                // killed run: take it over.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > INSTALL_PATIENCE);
                if stale {
                    let _ = std::fs::remove_dir(&lock);
                    continue;
                }
                assert!(
                    Instant::now() < deadline,
                    "waited too long for another test to install python-socks"
                );
                thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("cannot create {}: {error}", lock.display()),
        }
    }
}

fn install(venv: &Path, python: &Path) -> Result<(), String> {
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    }
    run(Command::new(python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "python-socks",
        "httpx",
        "websockets",
    ]))
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
