//! The connector behind [`Client`](super::Client), on both of its paths: hyper-util's
//! `HttpConnector` for the TCP dial, resolving with [`tcp::lookup`] (or
//! [`tcp::connect_any`](crate::tcp) on a request's [`DialOnly`] addresses), never to the
//! proxy's own address, then, for `https://` URIs, a TLS handshake through [`tls::Connector`].

use super::{ConnFacts, ConnectTo, DialOnly};
use crate::{BoxError, Host, tcp, tls};
use ::http::{Uri, uri::Scheme};
use futures_util::{FutureExt, future::Either};
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::TokioIo,
};
use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::TcpStream;
use tower::Service;

/// Dials `http://` upstreams in plain and `https://` ones over TLS.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector<tcp::Resolver>,
    tls: Option<tls::Connector>,
    /// The bound of a [`DialOnly`] dial (the `HttpConnector` has its own copy).
    connect_timeout: Duration,
}

/// Where a request's new upstream connections may go, beyond its URI.
#[derive(Clone, Default)]
pub(crate) struct Dial {
    /// Only these addresses, instead of a lookup of the URI's host (or of `to`'s).
    pub(crate) only: Option<DialOnly>,
    /// This address and TLS name instead of the URI's.
    pub(crate) to: Option<ConnectTo>,
    /// Never this one: the address the request's client reached this proxy on. A proxy
    /// whose upstream is itself would otherwise send each request around again (on HTTP/2,
    /// as one more stream on its own connection each time, until the streams run out).
    pub(crate) own: Option<SocketAddr>,
}

impl Dial {
    /// What `extensions` ask: a [`DialOnly`], and the [`ConnFacts`] of the request's client.
    pub(crate) fn of(extensions: &::http::Extensions) -> Self {
        Self {
            only: extensions.get::<DialOnly>().cloned(),
            to: extensions.get::<ConnectTo>().cloned(),
            own: extensions.get::<ConnFacts>().map(ConnFacts::local_addr),
        }
    }

    /// Whether it asks nothing of a dial.
    pub(crate) fn is_free(&self) -> bool {
        self.only.is_none() && self.to.is_none() && self.own.is_none()
    }
}

tokio::task_local! {
    /// The [`Dial`] of the request being polled. hyper-util's pool asks its connector for a
    /// connection with the URI alone, from within the request's poll (its connect future is
    /// lazy): the [`Client`](super::Client) polls such a request inside [`dial_while`], and
    /// [`Connector::call`] takes the dial along.
    static DIAL: Dial;
}

/// Runs `poll` with `dial` as what any connection it dials must keep to.
pub(crate) fn dial_while<R>(dial: &Dial, poll: impl FnOnce() -> R) -> R {
    DIAL.sync_scope(dial.clone(), poll)
}

/// An upstream connection: plain TCP or TLS over it.
pub(crate) enum Stream {
    Plain(TokioIo<TcpStream>),
    /// Boxed: a TLS session is a kilobyte, a plain stream a few words.
    Tls(Box<TokioIo<tls::ClientStream<TcpStream>>>),
}

impl Stream {
    /// Closes the TCP connection with `RST` once dropped: its end is abnormal, and the peer
    /// is to learn it at once rather than after the bytes it has not read yet.
    pub(crate) fn reset_on_drop(&self) {
        let _ = self.tcp().set_zero_linger();
    }

    /// The TCP connection under it.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp.inner(),
            Stream::Tls(tls) => tls.inner().get_ref().0,
        }
    }
}

/// The future of [`Connector`]'s dial (boxed: the TLS step follows an opaque hyper-util
/// future; one allocation per new upstream connection, none per request).
pub(crate) type Connecting = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

/// An `https://` upstream, but the client has no TLS connector.
#[derive(Debug)]
struct NoTls;

impl std::fmt::Display for NoTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an https:// upstream needs a client with a tls connector (ClientBuilder::tls)")
    }
}

impl std::error::Error for NoTls {}

impl Connector {
    pub(crate) fn new(tls: Option<tls::Connector>, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new_with_resolver(tcp::Resolver);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        Self {
            http,
            tls,
            connect_timeout,
        }
    }

    /// Dials `uri` as `dial` allows: TCP to its host (or to `dial`'s [`ConnectTo`], or only
    /// to its addresses; never to its own), then TLS for `https://`, naming the URI's host
    /// (or the [`ConnectTo`]'s name).
    pub(crate) fn dial(&mut self, uri: Uri, dial: Dial) -> Connecting {
        let secure = uri.scheme() == Some(&Scheme::HTTPS);
        let host = match &dial.to {
            Some(to) => Some(to.name().clone()),
            None => host_of(&uri),
        };
        // HttpConnector resolves and dials what a URI names: the route's address, as one.
        let uri = match &dial.to {
            Some(to) => match Uri::try_from(format!("http://{}", to.address())) {
                Ok(uri) => uri,
                Err(error) => return Box::pin(async move { Err(error.into()) }),
            },
            None => uri,
        };
        let tls = self.tls.clone();
        let tcp = match dial.only {
            Some(only) => {
                let mut connect = tcp::connect_any(only.addresses().to_vec(), self.connect_timeout);
                if let Some(own) = dial.own {
                    connect = connect.refusing(own);
                }
                Either::Left(async move { Ok::<_, BoxError>(connect.await?) })
            }
            None => Either::Right(self.http.call(uri).map(move |dialed| {
                let tcp = dialed?.into_inner();
                // Dialed by name, the address shows only now (one call per new connection).
                if dial.own.is_some() && tcp.peer_addr().ok() == dial.own {
                    return Err(tcp::own_address().into());
                }
                Ok(tcp)
            })),
        };
        Box::pin(async move {
            let tcp = tcp.await?;
            if !secure {
                return Ok(Stream::Plain(TokioIo::new(tcp)));
            }
            let (Some(tls), Some(host)) = (tls, host) else {
                return Err(NoTls.into());
            };
            let stream = tls.connect(&host, tcp).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// The host `uri` names, without IPv6 brackets.
pub(crate) fn host_of(uri: &Uri) -> Option<Host> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.into()),
    })
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let dial = DIAL.try_with(Dial::clone).unwrap_or_default();
        self.dial(uri, dial)
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(tcp) => tcp.connected(),
            Self::Tls(tls) => {
                let (tcp, session) = tls.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}
