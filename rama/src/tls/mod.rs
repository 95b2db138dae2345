//! TLS with rustls: the [`Acceptor`] stage that terminates TLS, the [`Connector`] that
//! originates it towards upstreams, [`Detect`] for TLS and plain text on one port, and
//! [development certificates](dev) so nobody needs openssl to try rama.
//!
//! # Terminating TLS
//!
//! [`Acceptor`] is a tower [`Layer`](tower::Layer) over any byte stream. Its service runs the
//! handshake (bounded by a [timeout](Acceptor::handshake_timeout)), records what it learned on
//! the connection, and hands the next stage a [`Conn`](crate::Conn) of a [`TlsStream`]:
//!
//! | fact (in [`ConnInfo::extensions`](crate::ConnInfo::extensions)) | when                     |
//! |------------------------------------------------------------------|--------------------------|
//! | [`ServerName`]                                                   | the client sent SNI       |
//! | [`Alpn`]                                                         | a protocol was negotiated |
//! | [`PeerIdentity`]                                                 | a client certificate was verified |
//!
//! A failed handshake (plain text, garbage, a truncated ClientHello, a client that stalls, a
//! certificate the peer refuses) ends that connection alone, with a [`HandshakeError`] that
//! the server logs against the peer address.
//!
//! ```no_run
//! use rama::{proxy, tcp, tls};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! let acceptor = tls::Acceptor::builder()
//!     .cert_pem_files("cert.pem", "key.pem")?
//!     .cert_pem_files_for("other.example", "other.pem", "other-key.pem")?
//!     .alpn(["h2", "http/1.1"])
//!     .build()?;
//! proxy! { tcp::Server::bind("127.0.0.1:8443") => tls(acceptor) => target("127.0.0.1:8080") }
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! A bare `tls` in a diagram serves a [development certificate](Acceptor::dev) for `localhost`
//! and `127.0.0.1`, generated at start.
//!
//! # Originating TLS
//!
//! [`Connector`] holds a client configuration (the webpki roots, or a CA of your own, ALPN, an
//! optional client certificate); [`Target::tls`](crate::Target::tls) makes `target` speak TLS
//! to its upstream, with SNI from the destination.
//!
//! # Crypto
//!
//! rama builds rustls on *ring* only, and passes that provider explicitly
//! ([`provider`]), so it never depends on a process-wide default.

pub mod acceptor;
mod connector;
pub mod detect;
pub mod dev;
pub mod error;
mod facts;
pub mod intercept;
mod pem;

pub use self::acceptor::{Acceptor, AcceptorBuilder, AcceptorService};
pub use self::connector::{
    Connect, Connector, ConnectorBuilder, DEFAULT_CONNECT_HANDSHAKE_TIMEOUT,
};
pub use self::detect::Detect;
pub use self::error::{Error, HandshakeError};
pub use self::facts::{Alpn, Negotiated, PeerIdentity, ServerName};
pub use crate::detect::Rewind;
pub use rustls;
/// The client side of a TLS stream: what [`Connector::connect`] resolves with.
pub use tokio_rustls::client::TlsStream as ClientStream;
/// The server side of a TLS stream: what [`Acceptor`] hands on.
pub use tokio_rustls::server::TlsStream;

use std::sync::{Arc, OnceLock};

/// The crypto provider every rama TLS configuration uses: rustls' *ring* provider, shared.
///
/// Build your own [`rustls::ServerConfig`] with
/// `ServerConfig::builder_with_provider(tls::provider())` to hand it to [`Acceptor::new`]
/// without installing a process default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The layer behind the `tls(config)` shorthand: an [`Acceptor`] from anything that converts
/// into one (an `Acceptor`, a [`rustls::ServerConfig`], an `Arc` of one).
pub fn acceptor(config: impl Into<Acceptor>) -> Acceptor {
    config.into()
}

/// The layer behind a bare `tls` in a diagram: [`Acceptor::dev`], a development certificate
/// for `localhost` and `127.0.0.1`.
///
/// # Panics
///
/// When the certificate cannot be generated (the system's random source failed).
#[doc(hidden)]
pub fn dev_acceptor() -> Acceptor {
    match Acceptor::dev() {
        Ok(acceptor) => acceptor,
        Err(error) => panic!(
            "tls: cannot generate a development certificate: {}",
            crate::error::Chain(&error)
        ),
    }
}
