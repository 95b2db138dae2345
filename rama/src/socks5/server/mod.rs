//! The SOCKS5 server stage: [`Server`] (the layer) and [`Socks5`] (its service).

mod bind;
pub(super) mod future;
pub(super) mod handshake;
mod udp;

use self::future::ResponseFuture;
use super::auth::{Authenticator, Credentials, NoAuth, Password};
use crate::{BoxError, Conn, egress::Rules, tunnel};
use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Layer, Service};

pub use self::handshake::Handshake;

/// How long a client may take from connecting to a complete request, unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SOCKS5 server stage: a tower [`Layer`] over a service of [`tunnel::Request`]s.
///
/// Its service takes a connection ([`Conn`], any byte stream: TCP, or TLS after a `tls`
/// stage), runs the SOCKS5 handshake, and hands a CONNECT on to the inner service as a
/// `tunnel::Request<socks5::Handshake<S>>` ([`Target`](crate::Target) by default, which
/// dials and answers with the reply code of what happened). UDP ASSOCIATE and BIND, when
/// enabled, are served by the stage itself.
///
/// ```no_run
/// use rama::{proxy, socks5, tcp};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// let users = socks5::auth::Users::new([("alice", "s3cret")]);
/// proxy! { tcp::Server::bind("127.0.0.1:1080") => socks5::Server::new().with_auth(users) => target }
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Server<A = NoAuth> {
    config: Arc<Config>,
    auth: A,
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) handshake_timeout: Option<Duration>,
    pub(super) udp: bool,
    pub(super) bind: bool,
    pub(super) rules: Option<Rules>,
}

/// The service of [`Server`]: serves one connection per call.
///
/// `poll_ready` is the inner service's: a concurrency limit behind this stage holds back new
/// connections. `call` takes the readied inner service for the connection and leaves a clone
/// in its place (tower's `mem::replace` pattern), so the inner service must be `Clone`; the
/// connection's future calls it once the client's request is known.
#[derive(Debug, Clone)]
pub struct Socks5<S, A = NoAuth> {
    inner: S,
    config: Arc<Config>,
    auth: A,
}

// ===== impl Server =====

impl Server {
    /// A server without authentication, serving CONNECT only (see [`udp`](Self::udp) and
    /// [`bind`](Self::bind)), with a [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                udp: false,
                bind: false,
                rules: None,
            }),
            auth: NoAuth,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Server<A> {
    /// Requires username/password authentication (RFC 1929), checked by `check`: a
    /// [`Users`](super::auth::Users) set, [`from_fn`](super::auth::from_fn), or any `Clone`
    /// tower service of [`Credentials`] answering `bool`. The user is recorded as
    /// [`auth::User`](super::auth::User) in the connection's extensions.
    pub fn with_auth<C>(self, check: C) -> Server<Password<C>>
    where
        C: Service<Credentials, Response = bool> + Clone,
        C::Error: Into<BoxError>,
    {
        Server {
            config: self.config,
            auth: Password::new(check),
        }
    }

    /// Bounds the handshake, from the first byte to a complete request (`None`: unbounded).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.config).handshake_timeout = timeout;
        self
    }

    /// Serves UDP ASSOCIATE: a UDP relay bound next to the connection's local address, for
    /// datagrams from the client's address only, ended when the connection closes.
    /// Fragmented datagrams are dropped. Off by default (answered with 0x07).
    pub fn udp(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).udp = enabled;
        self
    }

    /// Serves BIND: a listener next to the connection's local address for one incoming
    /// connection from the requested host. Off by default (answered with 0x07).
    pub fn bind(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).bind = enabled;
        self
    }

    /// Egress rules for what the stage serves itself (UDP datagrams, BIND peers). A CONNECT
    /// goes through the inner service: put an [`EgressLayer`](crate::egress::EgressLayer) there.
    pub fn rules(mut self, rules: Rules) -> Self {
        Arc::make_mut(&mut self.config).rules = Some(rules);
        self
    }
}

impl<S, A: Clone> Layer<S> for Server<A> {
    type Service = Socks5<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Socks5 {
            inner,
            config: self.config.clone(),
            auth: self.auth.clone(),
        }
    }
}

// ===== impl Socks5 =====

impl<S, A> Socks5<S, A> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<IO, S, A> Service<Conn<IO>> for Socks5<S, A>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<tunnel::Request<Handshake<IO>>> + Clone,
    S::Error: Into<BoxError>,
    A: Authenticator,
{
    /// The inner service's response for a CONNECT; `None` for a connection the stage served
    /// itself (UDP ASSOCIATE, BIND).
    type Response = Option<S::Response>;
    type Error = BoxError;
    type Future = ResponseFuture<IO, S, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, conn: Conn<IO>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(conn, inner, self.auth.clone(), self.config.clone())
    }
}
