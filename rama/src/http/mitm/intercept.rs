//! One intercepted `CONNECT`: the tunnel's task (peek, TLS with a minted certificate, HTTP
//! inside) and the service that hands the requests inside to the stage's inner service.

use super::{Config, Error, NotTls, bare_host, call_shared, not_behind_server};
use crate::{
    Address, BoxError, Conn, Host,
    error::Chain,
    http::{Body, ConnFacts, ConnectTo, DialOnly, server},
    io::Rewind,
    shared::Shared,
    tls::{self, intercept::Resolver},
    tunnel::{self, Handshake, Refusal},
};
use ::http::{
    HeaderValue, Request, Response, Uri, header,
    uri::{self, Scheme},
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::{
    fmt,
    future::{Ready, ready},
    io,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::io::AsyncReadExt;
use tower::{Layer, Service, ServiceExt};

/// The client's side of an intercepted tunnel, with its first bytes put back.
pub type Tunnel = Rewind<TokioIo<Upgraded>>;

/// How many bytes the peek at the tunnel's first bytes reads at most (a ClientHello usually
/// arrives whole; only its first two bytes decide).
const PEEK: usize = 1024;

/// A tunnel whose `200` was already sent (interception answers before it knows what the
/// client will speak): accepting hands the stream on, rejecting closes it. What the tunnel
/// service gets for a plain relay ([`NotTls::Relay`]).
pub struct AlreadyOpen<S> {
    stream: S,
}

/// Everything one intercepted `CONNECT` needs, from the stage's service.
pub(super) struct Intercept<S, T> {
    pub(super) config: Arc<Config>,
    pub(super) inner: Shared<S>,
    pub(super) tunnel: T,
    pub(super) destination: Address,
    pub(super) facts: ConnFacts,
    /// The addresses the egress rules judged, when they resolved the destination.
    pub(super) dial_only: Option<DialOnly>,
}

/// The service behind the intercepted connection's `http::Server`: the request in absolute
/// form, `https://` + its own authority + its path, with a [`ConnectTo`] for the `CONNECT`'s
/// destination, to the stage's inner service.
struct Inside<S> {
    inner: Shared<S>,
    destination: Address,
    /// The `CONNECT`'s, for a request that names none.
    authority: uri::Authority,
    dial_only: Option<DialOnly>,
}

// ===== impl Intercept =====

impl<S, T, B> Intercept<S, T>
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: Into<Body> + 'static,
    T: Service<tunnel::Request<AlreadyOpen<Tunnel>>> + 'static,
    T::Error: Into<BoxError>,
    T::Future: 'static,
{
    /// Queues the tunnel's task on the connection and answers the `CONNECT`: `200`.
    pub(super) fn start(self, mut request: Request<Body>) -> Response<Body> {
        let upgrade = hyper::upgrade::on(&mut request);
        let peer = self.facts.peer_addr();
        tracing::debug!(%peer, destination = %self.destination, "mitm: intercepting");
        let spawned = server::spawn(async move {
            let destination = self.destination.clone();
            match self.run(upgrade).await {
                Ok(()) => tracing::debug!(%peer, %destination, "mitm: tunnel closed"),
                // The HTTP inside ended badly: the client's doing (a reset, no close_notify),
                // as common as it is harmless to everyone else.
                Err(error) if error.is_serve() => {
                    tracing::debug!(%peer, %destination, error = %Chain(&error), "mitm: tunnel ended")
                }
                Err(error) => {
                    tracing::warn!(%peer, %destination, error = %Chain(&error), "mitm: tunnel failed")
                }
            }
        });
        match spawned {
            Ok(()) => Response::new(Body::empty()),
            Err(_) => not_behind_server(),
        }
    }

    async fn run(self, upgrade: hyper::upgrade::OnUpgrade) -> Result<(), Error> {
        let mut stream = TokioIo::new(upgrade.await.map_err(Error::upgrade)?);
        let timeout = self.config.handshake_timeout;
        let mut first = vec![0u8; PEEK];
        let n = tokio::time::timeout(timeout, stream.read(&mut first))
            .await
            .map_err(|_| Error::silent(timeout))?
            .map_err(Error::read)?;
        if n == 0 {
            // The client closed without a word: nothing to intercept.
            return Ok(());
        }
        first.truncate(n);
        // A TLS record of type handshake (0x16), version major 3.
        let tls = first[0] == 0x16 && first.get(1).is_none_or(|&major| major == 0x03);
        let stream = Rewind::new(first, stream);
        let mut info = self.facts.to_info();
        // The facts of a TLS connection to the proxy itself are not the tunnel's: its SNI
        // would stand for a ClientHello inside that sent none (and name the origin's TLS).
        info.extensions_mut().remove::<tls::ServerName>();
        info.extensions_mut().remove::<tls::Alpn>();
        info.extensions_mut().insert(self.destination.clone());
        if !tls {
            return match self.config.not_tls {
                NotTls::Close => Err(Error::not_tls()),
                NotTls::Relay => {
                    tracing::debug!(peer = %info.peer_addr(), destination = %self.destination, "mitm: not tls, relaying plain bytes");
                    let request =
                        tunnel::Request::new(self.destination, AlreadyOpen { stream }, info);
                    self.tunnel
                        .oneshot(request)
                        .await
                        .map(drop)
                        .map_err(|error| Error::relay(error.into()))
                }
            };
        }
        let host = bare_host(&self.destination);
        let authority = self
            .destination
            .to_string()
            .parse()
            .map_err(|error: uri::InvalidUri| Error::intercepted(error.into()))?;
        let mut config = (*self.config.tls).clone();
        config.cert_resolver = Arc::new(Resolver::new(
            self.config.authority.clone(),
            Some(host.as_str()),
        ));
        let inside = Inside {
            inner: self.inner,
            destination: self.destination,
            authority,
            dial_only: self.dial_only,
        };
        let stack = tls::Acceptor::new(config)
            .handshake_timeout(timeout)
            .layer(self.config.server.layer(inside));
        stack
            .oneshot(Conn::new(stream, info))
            .await
            .map_err(Error::intercepted)
    }
}

// ===== impl Inside =====

impl<S, B> Service<Request<Body>> for Inside<S>
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    B: Into<Body> + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = super::ResponseFuture;

    /// Always ready: each request waits for the stage's inner service in its own future.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The origin gets the authority the client said (HTTP/2's `:authority`, in the URI;
        // HTTP/1.1's `Host`, unless an absolute-form target names one, which wins, RFC 9112
        // 3.2.2), whatever either side speaks, as mitmproxy keeps it: a `Host` left beside
        // it says the same, so `http::Client` drops it for an HTTP/2 origin (RFC 9113 8.3.1:
        // two that differ make the request malformed) and HTTP/1.1 sends that one.
        let host = request.headers().get(header::HOST);
        let authority = match (request.uri().authority(), host) {
            (Some(authority), _) => authority.clone(),
            (None, Some(host)) => {
                uri::Authority::try_from(host.as_bytes()).unwrap_or_else(|_| self.authority.clone())
            }
            (None, None) => self.authority.clone(),
        };
        if let Some(host) = request.headers_mut().get_mut(header::HOST)
            && let Ok(said) = HeaderValue::from_str(authority.as_str())
        {
            *host = said;
        }
        // The connection still goes where the `CONNECT` said (and the egress rules judged),
        // its TLS naming what the client's did (its SNI), else the `CONNECT`'s host.
        let sni = request
            .extensions()
            .get::<ConnFacts>()
            .and_then(|facts| facts.extensions().get::<tls::ServerName>());
        let name = match sni {
            Some(sni) => Host::Name(sni.as_str().into()),
            None => self.destination.host().clone(),
        };
        let route = ConnectTo::new(self.destination.clone()).server_name(name);
        let mut parts = uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(authority);
        parts.path_and_query = request
            .uri()
            .path_and_query()
            .cloned()
            .or(Some(uri::PathAndQuery::from_static("/")));
        match Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(error) => return Box::pin(ready(Err(error.into()))),
        }
        request.extensions_mut().insert(route);
        super::pin(&mut request, self.dial_only.clone());
        let shared = self.inner.clone();
        Box::pin(async move { Ok(call_shared(shared, request).await) })
    }
}

// ===== impl AlreadyOpen =====

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Handshake for AlreadyOpen<S> {
    type Stream = S;
    type Accept = Ready<io::Result<S>>;
    type Reject = Ready<io::Result<()>>;

    fn accept(self, _bound: SocketAddr) -> Self::Accept {
        ready(Ok(self.stream))
    }

    /// The client already heard `200`: all that is left to tell it is the close.
    fn reject(self, _refusal: Refusal) -> Self::Reject {
        ready(Ok(()))
    }
}

impl<S> fmt::Debug for AlreadyOpen<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlreadyOpen").finish_non_exhaustive()
    }
}
