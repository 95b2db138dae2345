//! Futures of [`Client`](super::Client).

use crate::{
    Address,
    io::{Relay, Relayed, relay},
    socks5::{
        error::ClientError,
        proto::{
            AuthRequest,
            client::{Machine, Next},
        },
    },
    tcp,
    tunnel::{Handshake, Refusal},
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Sleep,
};

/// The longest answer: a reply with a 255-byte name.
const MAX_ANSWER: usize = 4 + 1 + 255 + 2;

pin_project! {
    /// Dials the proxy and runs the client handshake; resolves with the stream and the
    /// address the proxy reported as bound.
    pub struct Connect {
        #[pin]
        deadline: Sleep,
        #[pin]
        dial: Option<tcp::Connect>,
        stream: Option<TcpStream>,
        machine: Option<Machine>,
        out: Vec<u8>,
        written: usize,
        answer: [u8; MAX_ANSWER],
        filled: usize,
        failed: Option<ClientError>,
    }
}

impl Connect {
    pub(super) fn new(
        proxy: &Address,
        destination: &Address,
        credentials: Option<AuthRequest>,
        timeout: Duration,
    ) -> Self {
        let (machine, out, failed) = match Machine::new(destination, credentials) {
            Ok((machine, greeting)) => (Some(machine), greeting, None),
            Err(failure) => (None, Vec::new(), Some(ClientError::handshake(failure))),
        };
        Self {
            deadline: tokio::time::sleep(timeout),
            dial: Some(tcp::connect(proxy, timeout)),
            stream: None,
            machine,
            out,
            written: 0,
            answer: [0; MAX_ANSWER],
            filled: 0,
            failed,
        }
    }
}

impl Future for Connect {
    type Output = Result<(TcpStream, Address), ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Err(error));
        }
        if let Some(dial) = this.dial.as_mut().as_pin_mut() {
            let stream = ready!(dial.poll(cx)).map_err(ClientError::dial)?;
            this.dial.set(None);
            *this.stream = Some(stream);
        }
        match poll_handshake(
            cx,
            this.stream.as_mut().expect("dialed"),
            this.machine.as_mut().expect("a machine"),
            this.out,
            this.written,
            this.answer,
            this.filled,
        ) {
            Poll::Ready(Ok(bound)) => Poll::Ready(Ok((this.stream.take().expect("dialed"), bound))),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                ready!(this.deadline.poll(cx));
                Poll::Ready(Err(ClientError::timeout()))
            }
        }
    }
}

/// Writes what is queued, reads the answer the machine expects (never more), feeds it.
fn poll_handshake(
    cx: &mut Context<'_>,
    stream: &mut TcpStream,
    machine: &mut Machine,
    out: &mut Vec<u8>,
    written: &mut usize,
    answer: &mut [u8; MAX_ANSWER],
    filled: &mut usize,
) -> Poll<Result<Address, ClientError>> {
    loop {
        while *written < out.len() {
            let n = ready!(Pin::new(&mut *stream).poll_write(cx, &out[*written..]))
                .map_err(ClientError::io)?;
            if n == 0 {
                return Poll::Ready(Err(ClientError::io(io::ErrorKind::WriteZero.into())));
            }
            *written += n;
        }
        let wanted = machine.wants(&answer[..*filled]).min(MAX_ANSWER);
        if *filled < wanted {
            let mut read = ReadBuf::new(&mut answer[*filled..wanted]);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read)).map_err(ClientError::io)?;
            let n = read.filled().len();
            if n == 0 {
                return Poll::Ready(Err(ClientError::io(io::ErrorKind::UnexpectedEof.into())));
            }
            *filled += n;
            continue;
        }
        // The reply's full length is known only after its first five bytes.
        if machine.wants(&answer[..*filled]) > *filled {
            continue;
        }
        let next = machine
            .on_message(&answer[..*filled])
            .map_err(ClientError::handshake)?;
        *filled = 0;
        match next {
            Next::Send(bytes) => {
                *out = bytes;
                *written = 0;
            }
            Next::Done(bound) => return Poll::Ready(Ok(bound)),
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect").finish_non_exhaustive()
    }
}

pin_project! {
    /// Opens the tunnel through the proxy, answers the client, then relays.
    pub struct TunnelFuture<H>
    where
        H: Handshake,
    {
        peer: SocketAddr,
        destination: Address,
        buffer_size: usize,
        #[pin]
        state: State<H>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<H>
    where
        H: Handshake,
    {
        Connecting { #[pin] connect: Connect, handshake: Option<H> },
        Accepting { #[pin] accept: H::Accept, upstream: Option<TcpStream> },
        Relaying { relay: Relay<H::Stream, TcpStream> },
        Rejecting { #[pin] reject: H::Reject, error: Option<ClientError> },
    }
}

impl<H: Handshake> TunnelFuture<H> {
    pub(super) fn new(
        connect: Connect,
        handshake: H,
        peer: SocketAddr,
        destination: Address,
        buffer_size: usize,
    ) -> Self {
        Self {
            peer,
            destination,
            buffer_size,
            state: State::Connecting {
                connect,
                handshake: Some(handshake),
            },
        }
    }
}

impl<H: Handshake> Future for TunnelFuture<H> {
    type Output = Result<Relayed, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Connecting { connect, handshake } => {
                    let connected = ready!(connect.poll(cx));
                    let handshake = handshake.take().expect("connecting holds the handshake");
                    match connected {
                        Ok((upstream, _)) => {
                            let bound = upstream.local_addr().unwrap_or(([0, 0, 0, 0], 0).into());
                            State::Accepting {
                                accept: handshake.accept(bound),
                                upstream: Some(upstream),
                            }
                        }
                        Err(error) => {
                            let refusal: Refusal = error.refusal();
                            tracing::debug!(
                                peer = %this.peer,
                                destination = %this.destination,
                                %refusal,
                                "socks5 upstream failed, refusing"
                            );
                            State::Rejecting {
                                reject: handshake.reject(refusal),
                                error: Some(error),
                            }
                        }
                    }
                }
                StateProj::Accepting { accept, upstream } => {
                    let client = ready!(accept.poll(cx)).map_err(ClientError::answer)?;
                    let upstream = upstream.take().expect("accepting holds the upstream");
                    State::Relaying {
                        relay: relay(client, upstream, *this.buffer_size),
                    }
                }
                StateProj::Relaying { relay } => {
                    return Pin::new(relay).poll(cx).map_err(ClientError::relay);
                }
                StateProj::Rejecting { reject, error } => {
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
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}
