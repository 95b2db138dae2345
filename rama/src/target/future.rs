//! The future of [`Target`].

use super::{Error, Target};
use crate::{
    Address, Conn,
    io::{Relay, Relayed, TcpRelay, relay, relay_cut, relay_finished},
    socks5::auth::User,
    tcp::{self, Connect},
    tunnel::{OpenError, Refusal},
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

pin_project! {
    /// Dials, then relays; resolves with the bytes moved each way.
    pub struct ResponseFuture<S> {
        peer: SocketAddr,
        user: Option<User>,
        upstream: Option<Address>,
        buffer_size: usize,
        splice: bool,
        #[pin]
        state: State<S>,
    }

    impl<S> PinnedDrop for ResponseFuture<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let relaying = matches!(*this.state, State::Relaying { .. } | State::RelayingTls { .. });
            if let (true, Some(upstream)) = (relaying, this.upstream) {
                relay_cut(*this.peer, this.user.as_ref(), upstream);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S> {
        Dialing { #[pin] connect: Connect, client: Option<S>, tls: Option<crate::tls::Connector> },
        Securing { #[pin] handshake: crate::tls::Connect<TcpStream>, client: Option<S> },
        Relaying { relay: TcpRelay<S> },
        RelayingTls { relay: Relay<S, tokio_rustls::client::TlsStream<TcpStream>> },
        Failed { error: Option<Error> },
    }
}

impl<S> ResponseFuture<S> {
    pub(super) fn new(conn: Conn<S>, upstream: Option<Address>, target: &Target) -> Self {
        let (client, info) = conn.into_parts();
        let state = match &upstream {
            Some(addr) => State::Dialing {
                connect: tcp::connect(addr, target.connect_timeout).refusing(info.local_addr()),
                client: Some(client),
                tls: target.tls.clone(),
            },
            None => State::Failed {
                error: Some(Error::no_destination()),
            },
        };
        Self {
            peer: info.peer_addr(),
            user: info.user().cloned(),
            upstream,
            buffer_size: target.buffer_size,
            splice: target.splice,
            state,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Output = Result<Relayed, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Dialing {
                    connect,
                    client,
                    tls,
                } => {
                    let upstream = ready!(connect.poll(cx)).map_err(Error::connect)?;
                    let client = client.take().expect("dialing holds the client");
                    if let (Some(tls), Some(addr)) = (tls.take(), this.upstream.as_ref()) {
                        this.state.set(State::Securing {
                            handshake: tls.connect(addr.host(), upstream),
                            client: Some(client),
                        });
                        continue;
                    }
                    tracing::debug!(
                        peer = %this.peer,
                        upstream = ?upstream.peer_addr().ok(),
                        "upstream connected, relaying"
                    );
                    State::Relaying {
                        relay: TcpRelay::new(
                            *this.peer,
                            client,
                            upstream,
                            *this.buffer_size,
                            *this.splice,
                            None,
                        ),
                    }
                }
                StateProj::Securing { handshake, client } => {
                    let upstream = ready!(handshake.poll(cx)).map_err(|error| {
                        let addr = this.upstream.take().expect("securing has an upstream");
                        Error::tls(addr, error)
                    })?;
                    let client = client.take().expect("securing holds the client");
                    tracing::debug!(peer = %this.peer, "upstream tls handshake done, relaying");
                    State::RelayingTls {
                        relay: relay(client, upstream, *this.buffer_size),
                    }
                }
                StateProj::RelayingTls { relay } => {
                    let result = ready!(Pin::new(relay).poll(cx));
                    let upstream = this.upstream.take().expect("relaying has an upstream");
                    return Poll::Ready(
                        relay_finished(*this.peer, this.user.as_ref(), &upstream, result)
                            .map_err(|error| Error::relay(upstream, error)),
                    );
                }
                StateProj::Relaying { relay } => {
                    let result = ready!(Pin::new(relay).poll(cx));
                    let upstream = this.upstream.take().expect("relaying has an upstream");
                    return Poll::Ready(
                        relay_finished(*this.peer, this.user.as_ref(), &upstream, result)
                            .map_err(|error| Error::relay(upstream, error)),
                    );
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}

impl<S> fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("peer", &self.peer)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// The future of a tunnel through [`Target`]: a plain TCP dial.
pub type TunnelFuture<H> = crate::tunnel::Open<H, Dial, Error>;

/// [`Target`]'s dial, its error in target's terms.
pub type Dial = futures_util::future::MapErr<Connect, fn(tcp::ConnectError) -> Error>;

impl OpenError for Error {
    fn refusal(&self) -> Refusal {
        self.connect_error()
            .map_or(Refusal::Failure, Refusal::from_connect_error)
    }

    fn answer(error: std::io::Error) -> Self {
        Error::answer(error)
    }

    fn relay(upstream: Address, error: std::io::Error) -> Self {
        Error::relay(upstream, error)
    }
}
