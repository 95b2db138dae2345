//! The future of [`AcceptorService`](super::AcceptorService).

use crate::{
    BoxError, Conn, ConnInfo,
    shared::{Call, Shared},
    tls::{Alpn, HandshakeError, Negotiated, PeerIdentity, ServerName},
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Sleep,
};
use tokio_rustls::{Accept, server::TlsStream};
use tower::Service;

pin_project! {
    /// Runs the handshake (bounded by its timeout), records what it learned, waits for the
    /// next stage to be ready, calls it, and resolves with its response.
    pub struct ResponseFuture<IO, S>
    where
        S: Service<Conn<TlsStream<IO>>>,
    {
        peer: SocketAddr,
        #[pin]
        state: State<IO, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<IO, S>
    where
        S: Service<Conn<TlsStream<IO>>>,
    {
        Handshake {
            accept: Accept<IO>,
            #[pin]
            deadline: Sleep,
            timeout: Duration,
            info: Option<ConnInfo>,
            inner: Option<Shared<S>>,
        },
        Ready { call: Call<S, Conn<TlsStream<IO>>> },
        Inner { #[pin] future: S::Future },
    }
}

impl<IO, S> ResponseFuture<IO, S>
where
    S: Service<Conn<TlsStream<IO>>>,
{
    pub(super) fn new(
        accept: Accept<IO>,
        info: ConnInfo,
        timeout: Duration,
        inner: Shared<S>,
    ) -> Self {
        Self {
            peer: info.peer_addr(),
            state: State::Handshake {
                accept,
                deadline: tokio::time::sleep(timeout),
                timeout,
                info: Some(info),
                inner: Some(inner),
            },
        }
    }
}

impl<IO, S> Future for ResponseFuture<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Conn<TlsStream<IO>>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Handshake {
                    accept,
                    deadline,
                    timeout,
                    info,
                    inner,
                } => {
                    // Progress first: a handshake that completes with the timer still counts.
                    let stream = match Pin::new(accept).poll(cx) {
                        Poll::Ready(Ok(stream)) => stream,
                        Poll::Ready(Err(error)) => {
                            let error = HandshakeError::io(error);
                            tracing::debug!(peer = %this.peer, %error, reason = ?error.tls_error(), "tls handshake failed");
                            return Poll::Ready(Err(error.into()));
                        }
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            tracing::debug!(peer = %this.peer, ?timeout, "tls handshake timed out");
                            return Poll::Ready(Err(HandshakeError::timeout(*timeout).into()));
                        }
                    };
                    let mut info = info.take().expect("handshaking holds the facts");
                    record(&stream, &mut info);
                    let inner = inner.take().expect("handshaking holds the service");
                    State::Ready {
                        call: Call::new(inner, Conn::new(stream, info)),
                    }
                }
                StateProj::Ready { call } => {
                    let future = ready!(call.poll(cx)).map_err(Into::into)?;
                    State::Inner { future }
                }
                StateProj::Inner { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            };
            this.state.set(next);
        }
    }
}

/// Records what the handshake negotiated, SNI, ALPN and the verified client identity, and
/// logs the handshake.
fn record<IO>(stream: &TlsStream<IO>, info: &mut ConnInfo) {
    let (_, session) = stream.get_ref();
    // Both are known once a handshake completed.
    let negotiated = session
        .protocol_version()
        .zip(session.negotiated_cipher_suite())
        .map(|(version, suite)| Negotiated::new(version, suite.suite()));
    let sni = session.server_name().map(ServerName::new);
    let alpn = session.alpn_protocol().map(Alpn::new);
    let identity = session
        .peer_certificates()
        .map(|chain| PeerIdentity::from_chain(chain.to_vec()));
    tracing::debug!(
        peer = %info.peer_addr(),
        version = ?session.protocol_version(),
        kind = ?session.handshake_kind(),
        sni = ?sni.as_ref().map(ServerName::as_str),
        alpn = ?alpn.as_ref().map(ToString::to_string),
        client = ?identity.as_ref().map(ToString::to_string),
        "tls handshake done"
    );
    let facts = info.extensions_mut();
    if let Some(negotiated) = negotiated {
        facts.insert(negotiated);
    }
    if let Some(sni) = sni {
        facts.insert(sni);
    }
    if let Some(alpn) = alpn {
        facts.insert(alpn);
    }
    if let Some(identity) = identity {
        facts.insert(identity);
    }
}

impl<IO, S> fmt::Debug for ResponseFuture<IO, S>
where
    S: Service<Conn<TlsStream<IO>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
