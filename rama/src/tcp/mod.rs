//! TCP: the [`Server`] at the root of every proxy, and dialing.
//!
//! # The runtime contract
//!
//! [`Server::serve`] owns exactly one service and, for every connection:
//!
//! 1. waits for `poll_ready` *before* accepting, so a service that is not ready (a
//!    [`ConcurrencyLimit`](tower::limit::ConcurrencyLimit) at its cap) stops the accept loop and
//!    the kernel's backlog absorbs the rest: backpressure without extra machinery;
//! 2. calls the service once, never cloning it (`Clone` is not required);
//! 3. drives the returned future itself, inside the [`Serve`] future, so neither the service
//!    nor its futures need to be `Send`. [`Serve::spawn_connections`] opts into spawning each
//!    connection on the runtime instead, which then needs `Send + 'static`.
//!
//! To use every core, [`PerCore`] runs one server per core on `SO_REUSEPORT` listeners, each
//! with its own service from a factory; a server holding more connections than its siblings
//! hands new ones to the least loaded.
//!
//! ```no_run
//! use rama::{graceful, tcp, target};
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! tcp::Server::bind("127.0.0.1:8080")
//!     .serve(
//!         ServiceBuilder::new()
//!             .concurrency_limit(10_000)
//!             .service(target("127.0.0.1:5201")),
//!     )
//!     .idle_timeout(Duration::from_secs(300))
//!     .with_graceful_shutdown(graceful::ctrl_c_or_sigterm())
//!     .drain_timeout(Duration::from_secs(30))
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod accept;
mod balance;
mod connect;
pub mod future;
mod per_core;
mod resolve;
mod server;
mod stream;

pub use self::connect::{Connect, ConnectError, connect};
pub(crate) use self::connect::{connect_any, own_address};
pub use self::per_core::PerCore;
pub(crate) use self::resolve::{Lookup, Resolver, lookup};
pub use self::server::{Connections, Local, Mode, Serve, Server, Spawn};
pub use self::stream::Stream;
pub(crate) use self::stream::{Activity, note_read, note_write};
