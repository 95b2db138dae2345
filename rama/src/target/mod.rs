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
//!
//! `target("http://host:port")` is an HTTP reverse proxy instead: behind
//! [`http::Server`](crate::http::Server) it forwards every `http::Request` to that upstream
//! through a pooled client (see [`http::ReverseProxy`](crate::http::ReverseProxy)).

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
    http: Option<crate::http::ReverseProxy>,
}

/// A [`Target`] that sends every connection to `upstream`: a `host:port` (or an [`Address`],
/// a `SocketAddr`) for byte streams and tunnels, a `tls://host:port` to relay byte streams
/// over TLS, or an `http://host:port[/path]` URL for HTTP requests behind
/// [`http::Server`](crate::http::Server) (a reverse proxy).
///
/// `tls://host:port` (the port defaults to 443) is short for
/// `target("host:port").tls(tls::Connector::webpki_roots())`: the upstream's certificate must
/// chain to the webpki roots and match `host`, which is also the SNI. For a CA of your own,
/// ALPN or a client certificate, use [`Target::tls`] with a [`Connector`](crate::tls::Connector)
/// you built.
///
/// # Panics
///
/// When `upstream` is neither a valid `host:port`, `tls://host[:port]` nor a valid `http://`
/// URL (it is meant for constants; parse user input into an [`Address`] or a
/// [`ReverseProxy`](crate::http::ReverseProxy) first to report the error nicely).
///
/// ```no_run
/// use rama::{tcp, target};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// tcp::Server::bind("127.0.0.1:8080").serve(target("127.0.0.1:5201")).await?;
/// # Ok(())
/// # }
/// ```
///
/// Plain in, TLS out (SNI `example.com`, verified against the webpki roots):
///
/// ```no_run
/// use rama::{proxy, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// proxy! { tcp::Server::bind("127.0.0.1:8080") => target("tls://example.com:443") }.await?;
/// # Ok(())
/// # }
/// ```
///
/// ```no_run
/// use rama::{http, proxy, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// proxy! { tcp::Server::bind("127.0.0.1:8080") => http::Server::new() => target("http://127.0.0.1:8000") }
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn target<A: IntoTarget>(upstream: A) -> Target {
    match upstream.into_target() {
        Ok(target) => target,
        Err(error) => panic!("target: {error}"),
    }
}

/// What [`target()`] takes: a `host:port`, a `tls://host[:port]` or an `http://` URL (`&str`,
/// `String`), an [`Address`], a `SocketAddr`.
pub trait IntoTarget {
    /// The target, or why there is none.
    fn into_target(self) -> Result<Target, crate::BoxError>;
}

impl IntoTarget for &str {
    fn into_target(self) -> Result<Target, crate::BoxError> {
        if let Some(upstream) = self.strip_prefix("tls://") {
            return Ok(
                Target::fixed(tls_upstream(upstream)?).tls(crate::tls::Connector::webpki_roots())
            );
        }
        if self.contains("://") {
            return Ok(Target::reverse_proxy(crate::http::ReverseProxy::new(self)?));
        }
        Ok(Target::fixed(Address::try_from(self)?))
    }
}

/// The address of a `tls://` upstream: `host:port`, or a bare host on port 443.
fn tls_upstream(upstream: &str) -> Result<Address, crate::AddressError> {
    let upstream = upstream.strip_suffix('/').unwrap_or(upstream);
    // A bracketed IPv6 host ends in `]`; any other host with a port has a `:`.
    if upstream.ends_with(']') || !upstream.contains(':') {
        return Address::try_from(format!("{upstream}:443"));
    }
    Address::try_from(upstream)
}

impl IntoTarget for String {
    fn into_target(self) -> Result<Target, crate::BoxError> {
        self.as_str().into_target()
    }
}

impl IntoTarget for &String {
    fn into_target(self) -> Result<Target, crate::BoxError> {
        self.as_str().into_target()
    }
}

impl IntoTarget for Address {
    fn into_target(self) -> Result<Target, crate::BoxError> {
        Ok(Target::fixed(self))
    }
}

impl IntoTarget for std::net::SocketAddr {
    fn into_target(self) -> Result<Target, crate::BoxError> {
        Ok(Target::fixed(self.into()))
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
            http: None,
        }
    }

    /// Forwards every HTTP request to `proxy`'s upstream (what `target("http://..")` builds).
    /// Byte streams and tunnels still go to the upstream's address.
    pub fn reverse_proxy(proxy: crate::http::ReverseProxy) -> Self {
        let upstream = proxy.authority();
        let address = Address::try_from(match upstream.port_u16() {
            Some(_) => upstream.as_str().to_owned(),
            None => format!("{}:{}", upstream.host(), proxy.default_port()),
        })
        .ok();
        Self {
            http: Some(proxy),
            ..match address {
                Some(address) => Self::fixed(address),
                None => Self::requested(),
            }
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
            http: None,
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
        use futures_util::TryFutureExt;
        let dial: future::Dial = crate::tcp::connect(&destination, self.connect_timeout)
            .refusing(info.local_addr())
            .map_err(Error::connect as fn(crate::tcp::ConnectError) -> Error);
        let relay = tunnel::RelayConfig {
            buffer_size: self.buffer_size,
            splice: self.splice,
        };
        tunnel::Open::new(handshake, info.peer_addr(), destination, dial, relay)
            .user(info.user().cloned())
    }
}

/// HTTP requests (behind [`http::Server`](crate::http::Server)) go to the reverse proxy's
/// upstream; a `Target` without one (not built from an `http://` URL) answers `502`.
impl<B> Service<::http::Request<B>> for Target
where
    B: Into<crate::http::Body>,
{
    type Response = ::http::Response<crate::http::Body>;
    type Error = std::convert::Infallible;
    type Future = crate::http::reverse::ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        match &mut self.http {
            Some(proxy) => proxy.call(request),
            None => {
                let peer = crate::http::forward::Peer(
                    request
                        .extensions()
                        .get::<crate::http::ConnFacts>()
                        .map(crate::http::ConnFacts::peer_addr),
                );
                tracing::warn!(%peer, "target: an http request, but no http upstream");
                Box::pin(std::future::ready(Ok(crate::http::forward::text(
                    ::http::StatusCode::BAD_GATEWAY,
                    "this target has no http upstream: write target(\"http://host:port\")",
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_url_pins_the_upstream_and_speaks_tls_on_port_443_by_default() {
        for (url, upstream) in [
            ("tls://example.com:8443", "example.com:8443"),
            ("tls://example.com", "example.com:443"),
            ("tls://example.com/", "example.com:443"),
            ("tls://[::1]", "[::1]:443"),
            ("tls://[::1]:8443", "[::1]:8443"),
            ("tls://127.0.0.1", "127.0.0.1:443"),
        ] {
            let target = target(url);
            assert_eq!(
                target.fixed.map(|a| a.to_string()).as_deref(),
                Some(upstream),
                "{url}"
            );
            assert!(target.tls.is_some(), "{url}: no TLS");
            assert!(target.http.is_none(), "{url}: an HTTP upstream");
        }
        assert!(target("example.com:443").tls.is_none());
        assert!("tls://example.com:port".into_target().is_err());
        assert!("tls://".into_target().is_err());
    }
}
