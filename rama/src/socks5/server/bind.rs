//! BIND: a listener next to the connection's local address for one incoming connection from
//! the requested host, announced with two replies, then relayed.

use super::handshake::Write;
use crate::{
    ConnInfo,
    egress::{Rules, Verdict},
    io::{DEFAULT_RELAY_BUFFER, Relay, relay},
    socks5::{error::Error, proto::reply_code},
};
use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    time::Sleep,
};

/// How long the listener waits for the incoming connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) struct Bind<IO> {
    state: State<IO>,
    requested: Option<IpAddr>,
    rules: Option<Rules>,
}

enum State<IO> {
    FirstReply {
        reply: Write<IO>,
        listener: TcpListener,
    },
    Accepting {
        client: IO,
        listener: TcpListener,
        deadline: Pin<Box<Sleep>>,
    },
    SecondReply {
        reply: Write<IO>,
        incoming: Option<TcpStream>,
    },
    Relaying {
        relay: Relay<IO, TcpStream>,
    },
    Done,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Bind<IO> {
    /// Binds the listener and queues the first reply.
    pub(super) fn start(
        io: IO,
        info: &ConnInfo,
        requested: Option<IpAddr>,
        rules: Option<Rules>,
    ) -> Result<Self, (IO, io::Error)> {
        let bind = || -> io::Result<(TcpListener, SocketAddr)> {
            let listener = std::net::TcpListener::bind((info.local_addr().ip(), 0))?;
            listener.set_nonblocking(true)?;
            let bound = listener.local_addr()?;
            Ok((TcpListener::from_std(listener)?, bound))
        };
        match bind() {
            Ok((listener, bound)) => Ok(Self {
                state: State::FirstReply {
                    reply: Write::reply(io, reply_code::SUCCEEDED, bound, false),
                    listener,
                },
                requested: requested.filter(|ip| !ip.is_unspecified()),
                rules,
            }),
            Err(error) => Err((io, error)),
        }
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            // Each step owns the state it leaves; a pending step puts it back.
            self.state = match std::mem::replace(&mut self.state, State::Done) {
                State::FirstReply {
                    mut reply,
                    listener,
                } => match reply.poll_write(cx) {
                    Poll::Pending => {
                        self.state = State::FirstReply { reply, listener };
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => State::Accepting {
                        client: result.map_err(Error::bind)?,
                        listener,
                        deadline: Box::pin(tokio::time::sleep(ACCEPT_TIMEOUT)),
                    },
                },
                State::Accepting {
                    client,
                    listener,
                    mut deadline,
                } => match listener.poll_accept(cx) {
                    Poll::Ready(accepted) => {
                        let (incoming, from) = accepted.map_err(Error::bind)?;
                        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                        if self.allows(from) {
                            State::SecondReply {
                                reply: Write::reply(client, reply_code::SUCCEEDED, from, false),
                                incoming: Some(incoming),
                            }
                        } else {
                            tracing::debug!(%from, "socks5 bind: connection from an unexpected host refused");
                            State::SecondReply {
                                reply: refuse(client, reply_code::NOT_ALLOWED),
                                incoming: None,
                            }
                        }
                    }
                    Poll::Pending => {
                        if deadline.as_mut().poll(cx).is_pending() {
                            self.state = State::Accepting {
                                client,
                                listener,
                                deadline,
                            };
                            return Poll::Pending;
                        }
                        State::SecondReply {
                            reply: refuse(client, reply_code::TTL_EXPIRED),
                            incoming: None,
                        }
                    }
                },
                State::SecondReply {
                    mut reply,
                    incoming,
                } => match reply.poll_write(cx) {
                    Poll::Pending => {
                        self.state = State::SecondReply { reply, incoming };
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => {
                        let client = result.map_err(Error::bind)?;
                        match incoming {
                            Some(incoming) => State::Relaying {
                                relay: relay(client, incoming, DEFAULT_RELAY_BUFFER),
                            },
                            None => return Poll::Ready(Ok(())),
                        }
                    }
                },
                State::Relaying { mut relay } => match Pin::new(&mut relay).poll(cx) {
                    Poll::Pending => {
                        self.state = State::Relaying { relay };
                        return Poll::Pending;
                    }
                    Poll::Ready(result) => {
                        return Poll::Ready(result.map(drop).map_err(Error::bind));
                    }
                },
                State::Done => panic!("bind polled after completion"),
            };
        }
    }

    fn allows(&self, from: SocketAddr) -> bool {
        self.requested
            .is_none_or(|ip| ip.to_canonical() == from.ip())
            && self.rules.as_ref().is_none_or(|rules| {
                rules.verdict(None, Some(from.ip()), from.port()) == Verdict::Allow
            })
    }
}

/// An error reply that closes.
fn refuse<IO: AsyncWrite + Unpin>(client: IO, code: u8) -> Write<IO> {
    Write::reply(client, code, ([0, 0, 0, 0], 0).into(), true)
}
