//! The SOCKS5 client: [`Client`] dials through an upstream SOCKS5 proxy.

pub mod future;

use self::future::{Connect, TunnelFuture};
use super::{error::ClientError, proto::AuthRequest};
use crate::{Address, io::DEFAULT_RELAY_BUFFER, tunnel};
use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower::Service;

/// How long dialing the upstream proxy plus its handshake may take unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connector that reaches destinations through an upstream SOCKS5 proxy, optionally with a
/// username and password: proxy chaining.
///
/// As a terminal it serves [`tunnel::Request`]s like [`Target`](crate::Target) does: it asks
/// the upstream proxy for the destination (names are passed on unresolved, so the upstream
/// resolves them), answers the client with the outcome (an upstream error reply is passed on
/// as the matching [`Refusal`](tunnel::Refusal)), and relays. [`connect`](Client::connect)
/// is the bare connector.
///
/// Always ready; cheap to clone.
///
/// ```no_run
/// use rama::{proxy, socks5, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// let upstream = socks5::Client::new("127.0.0.1:1081".parse()?).with_auth("alice", "s3cret");
/// proxy! { tcp::Server::bind("127.0.0.1:1080") => socks5::Server::new() => upstream }.await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    proxy: Address,
    credentials: Option<Arc<AuthRequest>>,
    connect_timeout: Duration,
    buffer_size: usize,
}

impl Client {
    /// A client of the SOCKS5 proxy at `proxy`, without credentials.
    pub fn new(proxy: Address) -> Self {
        Self {
            proxy,
            credentials: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            buffer_size: DEFAULT_RELAY_BUFFER,
        }
    }

    /// Authenticates with `username` and `password` when the proxy asks (RFC 1929).
    pub fn with_auth(mut self, username: &str, password: &str) -> Self {
        self.credentials = Some(Arc::new(AuthRequest {
            username: username.as_bytes().to_vec(),
            password: password.as_bytes().to_vec(),
        }));
        self
    }

    /// Bounds dialing the proxy plus the handshake (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The relay's buffer size per direction, when serving tunnel requests.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// The upstream proxy's address.
    pub fn proxy(&self) -> &Address {
        &self.proxy
    }

    /// Opens a connection to `destination` through the proxy; resolves with the stream,
    /// positioned after the handshake, and the address the proxy reported as bound.
    pub fn connect(&self, destination: &Address) -> Connect {
        Connect::new(
            &self.proxy,
            destination,
            self.credentials.as_deref().cloned(),
            self.connect_timeout,
        )
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("proxy", &self.proxy)
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl<H> Service<tunnel::Request<H>> for Client
where
    H: tunnel::Handshake,
    H::Stream: 'static,
{
    type Response = crate::io::Relayed;
    type Error = ClientError;
    type Future = TunnelFuture<H>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tunnel::Request<H>) -> Self::Future {
        let (destination, handshake, info) = request.into_parts();
        use futures_util::TryFutureExt;
        let dial: future::Dial = self
            .connect(&destination)
            .map_ok((|(upstream, _bound)| upstream) as fn((_, Address)) -> _);
        let relay = tunnel::RelayConfig {
            buffer_size: self.buffer_size,
            splice: true,
        };
        tunnel::Open::new(handshake, info.peer_addr(), destination, dial, relay)
            .user(info.user().cloned())
    }
}
