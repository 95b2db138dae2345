//! rama: a proxy framework where every stage is a [tower] `Service` or `Layer`.
//!
//! A proxy is a stack of stages rooted in a [`tcp::Server`]. The server accepts connections and
//! hands each one, as a [`Conn`], to the service stack; the last service is usually
//! [`target`](mod@target), which dials an upstream and relays bytes both ways.
//!
//! ```no_run
//! use rama::{graceful, tcp, target};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // A TCP reverse proxy: everything that reaches 127.0.0.1:8080 goes to 127.0.0.1:5201.
//! tcp::Server::bind("127.0.0.1:8080")
//!     .serve(target("127.0.0.1:5201"))
//!     .with_graceful_shutdown(graceful::ctrl_c_or_sigterm())
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Logging is [`tracing`](https://docs.rs/tracing), every event with the client's address.
//! The access log (one `info` event per request a proxy stage answers and per tunnel or relay
//! when it ends) has a target of its own, `rama::access`.
//!
//! See `ARCHITECTURE.md` in the repository for the runtime contract: the server calls
//! `poll_ready` before every `call`, never clones the service, and does not require the
//! per-connection future to be `Send` unless asked to spawn.
//!
//! [tower]: https://docs.rs/tower
#![warn(
    missing_debug_implementations,
    missing_docs,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code)]

mod access;
mod address;
mod conn;
pub mod detect;
pub mod egress;
pub mod error;
pub mod graceful;
pub mod http;
pub mod io;
pub mod socks5;
pub mod stage;
pub mod target;
pub mod tcp;
pub mod tls;
pub mod tunnel;
pub mod ws;

pub use self::address::{Address, AddressError, Host};
pub use self::conn::{Conn, ConnInfo};
pub use self::error::BoxError;
pub use self::target::{Target, target};
pub use rama_macros::proxy;

mod shared;
mod timer;

// The mutations and the generator of the fuzzing tests, the end-to-end tests' too: one file,
// in both crates, public for the other one.
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../tests/support/mutate.rs"]
mod mutate;

/// Re-exports of the tower traits every stage is built from.
pub mod service {
    pub use tower::{Layer, Service, ServiceBuilder, ServiceExt};
}
