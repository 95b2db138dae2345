//! A Python with `python-socks`, `httpx` and `websockets`, for tests that drive rama with real
//! third-party clients.
//!
//! The first caller creates a venv in the target directory (`target/py-venv`) and installs
//! `python-socks`, `httpx` and `websockets` into it from PyPI; test binaries running in parallel
//! wait for it instead of racing (an atomic `mkdir` is the lock). The marker file that says the
//! venv is ready names every package, so a venv made before a package joined the list gets it
//! on the next run. A fresh machine needs only `python3` with `venv` and `pip`, and PyPI.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
    thread,
    time::{Duration, Instant, SystemTime},
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

/// The cargo target directory: the test binary is `<target>/<profile>/deps/<name>-<hash>`.
fn target_dir() -> PathBuf {
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
