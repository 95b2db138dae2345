//! The future of [`Target`](super::Target).

use super::Error;
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
    time::Duration,
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
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S> {
        Dialing { #[pin] connect: Connect, client: Option<S> },
        Relaying { relay: Relay<S, TcpStream> },
        Failed { error: Option<Error> },
    }
}

impl<S> ResponseFuture<S> {
    pub(super) fn new(
        conn: Conn<S>,
        upstream: Option<Address>,
        connect_timeout: Duration,
        buffer_size: usize,
    ) -> Self {
        let (client, info) = conn.into_parts();
        let state = match &upstream {
            Some(addr) => State::Dialing {
                connect: tcp::connect(addr, connect_timeout),
                client: Some(client),
            },
            None => State::Failed {
                error: Some(Error::no_destination()),
            },
        };
        Self {
            peer: info.peer_addr(),
            upstream,
            buffer_size,
            state,
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<Relayed, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let relay = match this.state.as_mut().project() {
                StateProj::Dialing { connect, client } => {
                    let upstream = ready!(connect.poll(cx)).map_err(Error::connect)?;
                    let client = client.take().expect("dialing holds the client");
                    tracing::debug!(
                        peer = %this.peer,
                        upstream = ?upstream.peer_addr().ok(),
                        "upstream connected, relaying"
                    );
                    relay(client, upstream, *this.buffer_size)
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
            this.state.set(State::Relaying { relay });
        }
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
        Relaying { relay: Relay<H::Stream, TcpStream> },
        Rejecting { #[pin] reject: H::Reject, error: Option<Error> },
    }
}

impl<H: Handshake> TunnelFuture<H> {
    pub(super) fn new(
        handshake: H,
        peer: SocketAddr,
        upstream: Address,
        connect_timeout: Duration,
        buffer_size: usize,
    ) -> Self {
        Self {
            peer,
            state: TunnelState::Dialing {
                connect: tcp::connect(&upstream, connect_timeout),
                handshake: Some(handshake),
            },
            upstream: Some(upstream),
            buffer_size,
        }
    }
}

impl<H: Handshake> Future for TunnelFuture<H> {
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
                        relay: relay(client, upstream, *this.buffer_size),
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
