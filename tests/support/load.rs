//! The command line and runtime of the load generators in `tests/bin` (`socks5-load`,
//! `mitm-load`, `ws-load`): `--name value` options read from `std::env::args`, and a
//! one-worker runtime, so that the client side takes one core next to what it measures.

use std::net::SocketAddr;

/// What the load generators return on failure.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The value after `--name` on the command line, if any.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The value after `--name`; panics (the generator's usage error) when it is missing.
pub fn required(name: &str) -> String {
    arg(name).unwrap_or_else(|| panic!("{name} is required"))
}

/// The address after `--name`; panics when it is missing or not an address.
pub fn addr(name: &str) -> SocketAddr {
    required(name).parse().expect("an address")
}

/// The number after `--name`, or `default`; panics when it is not a number.
pub fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().expect("a number"))
}

/// The generators' runtime: one worker thread.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}
