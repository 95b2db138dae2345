use crate::graceful;
use std::net::SocketAddr;

/// One accepted connection as it travels through the stages: a byte stream and its facts.
///
/// Every stage that transforms the stream (TLS, a protocol handshake) hands on a `Conn` with
/// the new stream and the same [`ConnInfo`], adding what it learned to
/// [`ConnInfo::extensions_mut`].
#[derive(Debug)]
pub struct Conn<S> {
    stream: S,
    info: ConnInfo,
}

/// What is known about a connection: addresses, the shutdown signal, and whatever the stages
/// before recorded (SNI, ALPN, the authenticated user, the requested destination, ...).
#[derive(Debug)]
pub struct ConnInfo {
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: graceful::Signal,
    extensions: http::Extensions,
}

// ===== impl Conn =====

impl<S> Conn<S> {
    /// Pairs a stream with its facts.
    pub fn new(stream: S, info: ConnInfo) -> Self {
        Self { stream, info }
    }

    /// The byte stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The byte stream, mutably.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The connection's facts.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The connection's facts, mutably (to record what a stage learned).
    pub fn info_mut(&mut self) -> &mut ConnInfo {
        &mut self.info
    }

    /// Splits the connection into its stream and its facts.
    pub fn into_parts(self) -> (S, ConnInfo) {
        (self.stream, self.info)
    }

    /// Replaces the stream (for example with a TLS stream over it), keeping the facts.
    pub fn map_stream<T>(self, f: impl FnOnce(S) -> T) -> Conn<T> {
        Conn {
            stream: f(self.stream),
            info: self.info,
        }
    }
}

// ===== impl ConnInfo =====

impl ConnInfo {
    /// Facts of a connection from `peer`, accepted on `local`, that observes `shutdown`.
    pub fn new(peer: SocketAddr, local: SocketAddr, shutdown: graceful::Signal) -> Self {
        Self {
            peer,
            local,
            shutdown,
            extensions: http::Extensions::new(),
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The address the connection was accepted on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's shutdown signal: stages that can end a connection cleanly (HTTP finishing
    /// its current request) watch it.
    pub fn shutdown(&self) -> &graceful::Signal {
        &self.shutdown
    }

    /// The user the client authenticated as, when it did: the
    /// [`User`](crate::socks5::auth::User) a SOCKS5 login or an HTTP proxy's
    /// `Proxy-Authorization` (for its `CONNECT`s) put in the extensions.
    pub fn user(&self) -> Option<&crate::socks5::auth::User> {
        self.extensions().get()
    }

    /// What earlier stages recorded, by type.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// Records what a stage learned, by type.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }
}
