//! `target`: the terminal stage that dials an upstream and relays bytes both ways.
//!
//! [`target("host:port")`](target()) pins one upstream: every connection goes there (a TCP
//! reverse proxy). [`Target::requested`] dials what the client asked for, as recorded by an
//! earlier stage (SOCKS5, HTTP `CONNECT`) in the connection's
//! [extensions](crate::ConnInfo::extensions) as an [`Address`].
//!
//! `Target` serves two kinds of request: a [`Conn`] (a byte stream, as a TCP server or TLS
//! stage hands on) and a [`tunnel::Request`] (a client waiting for a SOCKS5 or HTTP `CONNECT`
//! answer), which it accepts once the dial succeeded or rejects with the matching
//! [`Refusal`](crate::tunnel::Refusal).
//!
//! The relay ([`crate::io::relay`]) ends when both directions have ended, honouring
//! half-close, and the service answers how many bytes moved each way.

mod error;
pub mod future;

pub use self::error::Error;

use self::future::{ResponseFuture, TunnelFuture};
use crate::{
    Address, Conn,
    io::DEFAULT_RELAY_BUFFER,
    tunnel::{self, Handshake},
};
use std::{
    fmt,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

/// How long dialing (resolving and connecting) may take unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The terminal service: dials a destination and relays the connection's bytes to it.
///
/// Always ready; holds no state per connection, so it is cheap to clone.
#[derive(Debug, Clone)]
pub struct Target {
    fixed: Option<Address>,
    connect_timeout: Duration,
    buffer_size: usize,
    splice: bool,
    tls: Option<crate::tls::Connector>,
}

/// A [`Target`] that sends every connection to `upstream`.
///
/// # Panics
///
/// When `upstream` is not a valid `host:port` (it is meant for constants; parse user input
/// into an [`Address`] first to report the error nicely).
///
/// ```no_run
/// use rama::{tcp, target};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// tcp::Server::bind("127.0.0.1:8080").serve(target("127.0.0.1:5201")).await?;
/// # Ok(())
/// # }
/// ```
pub fn target<A>(upstream: A) -> Target
where
    A: TryInto<Address>,
    A::Error: fmt::Display,
{
    match upstream.try_into() {
        Ok(addr) => Target::fixed(addr),
        Err(error) => panic!("target: {error}"),
    }
}

// ===== impl Target =====

impl Target {
    /// Sends every connection to `upstream`.
    pub fn fixed(upstream: Address) -> Self {
        Self {
            fixed: Some(upstream),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            buffer_size: DEFAULT_RELAY_BUFFER,
            splice: cfg!(target_os = "linux"),
            tls: None,
        }
    }

    /// Dials the [`Address`] an earlier stage recorded in the connection's extensions.
    pub fn requested() -> Self {
        Self {
            fixed: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            buffer_size: DEFAULT_RELAY_BUFFER,
            splice: cfg!(target_os = "linux"),
            tls: None,
        }
    }

    /// Speaks TLS to the upstream of each byte-stream connection (plain in, TLS out), with
    /// `connector`'s roots, ALPN and client certificate, and SNI from the destination. A
    /// failed handshake (a certificate that does not verify or match) fails the connection.
    ///
    /// Tunnel requests (SOCKS5, HTTP `CONNECT`) stay plain: their client speaks its own TLS
    /// through the tunnel.
    ///
    /// ```no_run
    /// use rama::{tcp, target, tls};
    ///
    /// # async fn run() -> Result<(), rama::BoxError> {
    /// let upstream = target("example.com:443").tls(tls::Connector::webpki_roots());
    /// tcp::Server::bind("127.0.0.1:8080").serve(upstream).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls(mut self, connector: crate::tls::Connector) -> Self {
        self.tls = Some(connector);
        self
    }

    /// Bounds resolving plus connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether a plain TCP client is relayed with Linux `splice(2)` (zero-copy through a pipe)
    /// instead of a buffered copy. On by default on Linux; `bench/tcp.sh` measures both.
    pub fn splice(mut self, enabled: bool) -> Self {
        self.splice = enabled;
        self
    }

    /// The relay's buffer size per direction (default [`DEFAULT_RELAY_BUFFER`]).
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }
}

impl<S> Service<Conn<S>> for Target
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Response = crate::io::Relayed;
    type Error = Error;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<S>) -> Self::Future {
        let destination = match &self.fixed {
            Some(fixed) => Some(fixed.clone()),
            None => conn.info().extensions().get::<Address>().cloned(),
        };
        ResponseFuture::new(conn, destination, self)
    }
}

impl<H> Service<tunnel::Request<H>> for Target
where
    H: Handshake,
    H::Stream: 'static,
{
    type Response = crate::io::Relayed;
    type Error = Error;
    type Future = TunnelFuture<H>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tunnel::Request<H>) -> Self::Future {
        let (requested, handshake, info) = request.into_parts();
        let destination = self.fixed.clone().unwrap_or(requested);
        TunnelFuture::new(handshake, info.peer_addr(), destination, self)
    }
}
