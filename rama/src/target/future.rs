//! The future of [`Target`](super::Target).

use super::Error;
use crate::{
    Address, Conn,
    io::{Relay, Relayed, relay},
    tcp::{self, Connect},
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
                    return Poll::Ready(match result {
                        Ok(moved) => {
                            tracing::debug!(
                                peer = %this.peer,
                                %upstream,
                                sent = moved.sent,
                                received = moved.received,
                                "relay finished"
                            );
                            Ok(moved)
                        }
                        Err(error) => Err(Error::relay(upstream, error)),
                    });
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
            };
            this.state.set(State::Relaying { relay });
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
