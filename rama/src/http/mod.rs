//! HTTP: the [`Server`] stage, the [`ForwardProxy`] stage, the [`ReverseProxy`] behind
//! `target("http://host:port")`, and the pooled [`Client`]. Plain HTTP/1.1 requests are parsed
//! and written by rama itself on both sides; HTTP/2, upgrades and everything else by hyper 1.
//!
//! ```no_run
//! use rama::{http, proxy, tcp};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // curl -x http://127.0.0.1:8080 http://example.com/
//! proxy! { tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => http::ForwardProxy::new() => target }
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! `http::Server` takes a byte stream (after `tcp::Server` or `tls`) and hands on
//! `http::Request`s; `http::ForwardProxy` takes those and hands `CONNECT`s on as
//! [`tunnel::Request`](crate::tunnel::Request)s, so the egress rules and `target` work
//! unchanged behind it. See `ARCHITECTURE.md` ("HTTP") for how the no-`Clone` rule holds
//! with HTTP/2's many requests per connection.

mod body;
mod body_timeout;
pub mod client;
mod connect;
mod error;
pub mod forward;
mod h1;
mod h1_pool;
pub mod headers;
pub mod mitm;
pub mod reverse;
pub mod server;
mod upgrade;

pub use self::body::Body;
pub use self::client::{Client, ClientBuilder, ConnectTo, DialOnly, ResponseFuture};
pub use self::error::Error;
pub use self::forward::{ForwardProxy, ForwardProxyService};
pub use self::mitm::{Mitm, MitmService};
pub use self::reverse::ReverseProxy;
pub use self::server::{ConnFacts, Server, ServerService};
