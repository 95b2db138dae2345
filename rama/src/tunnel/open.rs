//! Opening a tunnel: dial, answer the client through its [`Handshake`], relay.

use super::{Handshake, Refusal};
use crate::{
    Address,
    io::{Relayed, ResetSignal, TcpRelay},
    socks5::auth::User,
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::net::TcpStream;

/// What a terminal's error must tell [`Open`]: the refusal to answer a failed dial with, and
/// how to carry the I/O errors of the later steps.
pub trait OpenError: Sized {
    /// The protocol-neutral reason the client hears when the dial failed with `self`.
    fn refusal(&self) -> Refusal;
    /// Answering the client (its success reply) failed.
    fn answer(error: io::Error) -> Self;
    /// The relay to `upstream` failed.
    fn relay(upstream: Address, error: io::Error) -> Self;
}

/// How [`Open`] relays once the tunnel is up.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// The buffer size per direction of a copying relay.
    pub buffer_size: usize,
    /// Whether a plain TCP client may be spliced (Linux).
    pub splice: bool,
}

pin_project! {
    /// Dials with `D`, answers the client through its [`Handshake`] (success, or the dial's
    /// [`Refusal`]), then relays; resolves with the bytes moved each way. Every terminal that
    /// opens tunnels ([`Target`](crate::Target), `socks5::Client`) is this future with its
    /// own dial.
    pub struct Open<H, D, E>
    where
        H: Handshake,
    {
        peer: SocketAddr,
        user: Option<User>,
        upstream: Option<Address>,
        relay: RelayConfig,
        #[pin]
        state: State<H, D, E>,
    }

    impl<H, D, E> PinnedDrop for Open<H, D, E>
    where
        H: Handshake,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (State::Relaying { .. }, Some(upstream)) = (&*this.state, this.upstream) {
                crate::io::relay_cut(*this.peer, this.user.as_ref(), upstream);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<H, D, E>
    where
        H: Handshake,
    {
        Dialing { #[pin] dial: D, handshake: Option<H> },
        Accepting {
            #[pin]
            accept: H::Accept,
            upstream: Option<TcpStream>,
            reset: Option<ResetSignal>,
        },
        Relaying { relay: TcpRelay<H::Stream> },
        Rejecting { #[pin] reject: H::Reject, error: Option<E> },
    }
}

impl<H: Handshake, D, E> Open<H, D, E> {
    /// Names `user` (the one the client authenticated as, from its connection's extensions)
    /// in the tunnel's access line.
    pub fn user(mut self, user: Option<User>) -> Self {
        self.user = user;
        self
    }

    /// Opens a tunnel from the client at `peer` to `upstream`, reached by `dial`.
    pub fn new(
        handshake: H,
        peer: SocketAddr,
        upstream: Address,
        dial: D,
        relay: RelayConfig,
    ) -> Self {
        Self {
            peer,
            user: None,
            upstream: Some(upstream),
            relay,
            state: State::Dialing {
                dial,
                handshake: Some(handshake),
            },
        }
    }
}

impl<H, D, E> Future for Open<H, D, E>
where
    H: Handshake,
    H::Stream: 'static,
    D: Future<Output = Result<TcpStream, E>>,
    E: OpenError,
{
    type Output = Result<Relayed, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Dialing { dial, handshake } => {
                    let dialed = ready!(dial.poll(cx));
                    let handshake = handshake.take().expect("dialing holds the handshake");
                    match dialed.and_then(|up| up.local_addr().map(|b| (up, b)).map_err(E::answer))
                    {
                        Ok((upstream, bound)) => State::Accepting {
                            reset: handshake.reset_signal(),
                            accept: handshake.accept(bound),
                            upstream: Some(upstream),
                        },
                        Err(error) => {
                            let refusal = error.refusal();
                            tracing::debug!(peer = %this.peer, %refusal, "dial failed, refusing");
                            State::Rejecting {
                                reject: handshake.reject(refusal),
                                error: Some(error),
                            }
                        }
                    }
                }
                StateProj::Accepting {
                    accept,
                    upstream,
                    reset,
                } => {
                    let client = ready!(accept.poll(cx)).map_err(E::answer)?;
                    let upstream = upstream.take().expect("accepting holds the upstream");
                    tracing::debug!(peer = %this.peer, "tunnel open, relaying");
                    State::Relaying {
                        relay: TcpRelay::new(
                            *this.peer,
                            client,
                            upstream,
                            this.relay.buffer_size,
                            this.relay.splice,
                            reset.take(),
                        ),
                    }
                }
                StateProj::Relaying { relay } => {
                    let result = ready!(Pin::new(relay).poll(cx));
                    let upstream = this.upstream.take().expect("relaying has an upstream");
                    return Poll::Ready(
                        crate::io::relay_finished(
                            *this.peer,
                            this.user.as_ref(),
                            &upstream,
                            result,
                        )
                        .map_err(|error| E::relay(upstream, error)),
                    );
                }
                StateProj::Rejecting { reject, error } => {
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

impl<H: Handshake, D, E> fmt::Debug for Open<H, D, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Open")
            .field("peer", &self.peer)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}
