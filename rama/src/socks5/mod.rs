//! SOCKS5 (RFC 1928, RFC 1929): the [`Server`] stage and the [`Client`] connector.
//!
//! [`Server`] is a tower layer: its service takes a connection (any byte stream, so it also
//! runs after a `tls` stage), runs the SOCKS5 handshake, and hands each CONNECT on as a
//! [`tunnel::Request`](crate::tunnel::Request) to the inner service: [`target`](crate::Target)
//! by default, which dials the destination and answers the client with the reply code of what
//! happened (refused 0x05, host unreachable 0x04, network unreachable 0x03, timeout 0x06,
//! denied 0x02, else 0x01). Whatever stands between (egress rules, logging, routing, a
//! [`Client`] to chain through another proxy) is an ordinary tower layer over
//! `Service<tunnel::Request<H>>`.
//!
//! ```no_run
//! use rama::{egress::{EgressLayer, Rules}, proxy, socks5, tcp};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // The bare form: no authentication, CONNECT only, on RAMA_LISTEN or 127.0.0.1:8080.
//! proxy! { tcp::Server => socks5::Server => target }.await?;
//!
//! // With users, UDP ASSOCIATE, and the public-only egress rules.
//! let users = socks5::auth::Users::new([("alice", "s3cret")]);
//! proxy! {
//!     tcp::Server::bind("0.0.0.0:1080")
//!         => socks5::Server::new().with_auth(users).udp(true).rules(Rules::public_only())
//!         => EgressLayer::new(Rules::public_only())
//!         => target
//! }
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The protocol itself lives in [`proto`], without I/O: messages parsed from and encoded to
//! bytes, and both sides of the handshake as state machines.

pub mod auth;
pub mod client;
pub mod error;
pub mod proto;
mod server;

pub use self::client::Client;
pub use self::error::{ClientError, Error};
pub use self::server::{DEFAULT_HANDSHAKE_TIMEOUT, Handshake, Server, Socks5};

/// The futures of the server and the client.
pub mod future {
    pub use super::client::future::{Connect, TunnelFuture};
    pub use super::server::future::ResponseFuture;
    pub use super::server::handshake::{Accept, Reject};
}

use crate::stage::{Bare, Stage, kind};

/// `socks5::Server` in a diagram: takes a byte stream, hands on tunnel requests.
impl<A> Stage for Server<A> {
    type Takes = kind::ByteStream;
    type HandsOn = kind::TunnelRequest;
}

/// A bare `socks5::Server` is [`Server::new`]: no authentication, CONNECT only.
impl Bare for Server {
    fn bare() -> Self {
        Self::new()
    }
}

/// `socks5::Client` as the terminal: takes tunnel requests.
impl Stage for Client {
    type Takes = kind::TunnelRequest;
    type HandsOn = kind::Nothing;
}
