//! The future of [`Target`](super::Target).

use super::{Error, Target};
use crate::{
    Address, Conn,
    io::{Relay, Relayed, relay},
    tcp::{self, Connect},
    tunnel::{Handshake, Refusal},
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
        upstream: Option<Address>,
        buffer_size: usize,
        splice: bool,
        #[pin]
        state: State<S>,
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
                connect: tcp::connect(addr, target.connect_timeout),
                client: Some(client),
                tls: target.tls.clone(),
            },
            None => State::Failed {
                error: Some(Error::no_destination()),
            },
        };
        Self {
            peer: info.peer_addr(),
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
                    return Poll::Ready(relay_finished(*this.peer, upstream, result));
                }
                StateProj::Relaying { relay } => {
                    let result = ready!(Pin::new(relay).poll(cx));
                    let upstream = this.upstream.take().expect("relaying has an upstream");
                    return Poll::Ready(relay_finished(*this.peer, upstream, result));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}

/// A relay from a client stream to a TCP upstream: spliced when asked to and the client is a
/// plain accepted TCP stream, else a buffered copy.
enum TcpRelay<S> {
    Copy(Relay<S, TcpStream>),
    #[cfg(target_os = "linux")]
    Splice(crate::io::SpliceRelay),
}

impl<S> TcpRelay<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    fn new(
        peer: SocketAddr,
        client: S,
        upstream: TcpStream,
        buffer_size: usize,
        splice: bool,
    ) -> Self {
        #[cfg(target_os = "linux")]
        let client = if splice {
            match as_tcp::<S>(client) {
                Ok(tcp) => {
                    tracing::trace!(%peer, "splicing");
                    return Self::Splice(crate::io::splice_accepted(tcp, upstream));
                }
                Err(client) => client,
            }
        } else {
            client
        };
        #[cfg(not(target_os = "linux"))]
        let _ = (peer, splice);
        Self::Copy(relay(client, upstream, buffer_size))
    }
}

impl<S> Future for TcpRelay<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = std::io::Result<Relayed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Copy(relay) => Pin::new(relay).poll(cx),
            #[cfg(target_os = "linux")]
            Self::Splice(relay) => Pin::new(relay).poll(cx),
        }
    }
}

/// `S` is generic; only an accepted TCP stream has the socket that splice needs.
#[cfg(target_os = "linux")]
/// A SOCKS5 tunnel's client is a `Prefixed` stream, the raw socket once nothing the client
/// sent early is left to replay.
fn as_tcp<S: 'static>(client: S) -> Result<tcp::Stream, S> {
    let client = match cast::<S, tcp::Stream>(client) {
        Ok(tcp) => return Ok(tcp),
        Err(client) => client,
    };
    let prefixed = cast::<S, crate::socks5::Prefixed<tcp::Stream>>(client)?;
    prefixed
        .into_drained()
        .map_err(|prefixed| cast(prefixed).unwrap_or_else(|_| unreachable!("S is Prefixed")))
}

/// Moves `value` out as a `U` when `T` and `U` are the same type.
#[cfg(target_os = "linux")]
fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<U>>() {
        Some(same) => Ok(same.take().expect("filled above")),
        None => Err(slot.expect("not taken")),
    }
}

/// Logs the end of a relay and turns its outcome into the service's.
fn relay_finished(
    peer: SocketAddr,
    upstream: Address,
    result: std::io::Result<Relayed>,
) -> Result<Relayed, Error> {
    match result {
        Ok(moved) => {
            tracing::debug!(
                %peer,
                %upstream,
                sent = moved.sent,
                received = moved.received,
                "relay finished"
            );
            Ok(moved)
        }
        Err(error) => Err(Error::relay(upstream, error)),
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

pin_project! {
    /// Dials, answers the client through its [`Handshake`], then relays; resolves with the
    /// bytes moved each way. A failed dial is answered with the matching [`Refusal`] before
    /// the future resolves with the error.
    pub struct TunnelFuture<H>
    where
        H: Handshake,
    {
        peer: SocketAddr,
        upstream: Option<Address>,
        buffer_size: usize,
        splice: bool,
        #[pin]
        state: TunnelState<H>,
    }
}

pin_project! {
    #[project = TunnelProj]
    enum TunnelState<H>
    where
        H: Handshake,
    {
        Dialing { #[pin] connect: Connect, handshake: Option<H> },
        Accepting { #[pin] accept: H::Accept, upstream: Option<TcpStream> },
        Relaying { relay: TcpRelay<H::Stream> },
        Rejecting { #[pin] reject: H::Reject, error: Option<Error> },
    }
}

impl<H: Handshake> TunnelFuture<H> {
    pub(super) fn new(handshake: H, peer: SocketAddr, upstream: Address, target: &Target) -> Self {
        Self {
            peer,
            state: TunnelState::Dialing {
                connect: tcp::connect(&upstream, target.connect_timeout),
                handshake: Some(handshake),
            },
            upstream: Some(upstream),
            buffer_size: target.buffer_size,
            splice: target.splice,
        }
    }
}

impl<H> Future for TunnelFuture<H>
where
    H: Handshake,
    H::Stream: 'static,
{
    type Output = Result<Relayed, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                TunnelProj::Dialing { connect, handshake } => {
                    let dialed = ready!(connect.poll(cx));
                    let handshake = handshake.take().expect("dialing holds the handshake");
                    match dialed {
                        Ok(upstream) => match upstream.local_addr() {
                            Ok(bound) => TunnelState::Accepting {
                                accept: handshake.accept(bound),
                                upstream: Some(upstream),
                            },
                            Err(error) => TunnelState::Rejecting {
                                reject: handshake.reject(Refusal::Failure),
                                error: Some(Error::answer(error)),
                            },
                        },
                        Err(error) => {
                            let refusal = Refusal::from_connect_error(&error);
                            tracing::debug!(peer = %this.peer, %refusal, "dial failed, refusing");
                            TunnelState::Rejecting {
                                reject: handshake.reject(refusal),
                                error: Some(Error::connect(error)),
                            }
                        }
                    }
                }
                TunnelProj::Accepting { accept, upstream } => {
                    let client = ready!(accept.poll(cx)).map_err(Error::answer)?;
                    let upstream = upstream.take().expect("accepting holds the upstream");
                    TunnelState::Relaying {
                        relay: TcpRelay::new(
                            *this.peer,
                            client,
                            upstream,
                            *this.buffer_size,
                            *this.splice,
                        ),
                    }
                }
                TunnelProj::Relaying { relay } => {
                    let result = ready!(Pin::new(relay).poll(cx));
                    let upstream = this.upstream.take().expect("relaying has an upstream");
                    return Poll::Ready(relay_finished(*this.peer, upstream, result));
                }
                TunnelProj::Rejecting { reject, error } => {
                    // The dial error is what matters; failing to deliver the refusal to a
                    // client that may be gone adds nothing.
                    let _ = ready!(reject.poll(cx));
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}

impl<H: Handshake> fmt::Debug for TunnelFuture<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelFuture")
            .field("peer", &self.peer)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}
