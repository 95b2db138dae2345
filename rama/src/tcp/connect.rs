use crate::{Address, Host};
use pin_project_lite::pin_project;
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
    vec,
};
use tokio::{net::TcpStream, time::Sleep};

/// Dials `addr`: resolves a name (on tokio's blocking pool, like `tokio::net::lookup_host`),
/// then tries each resolved address in turn until one connects, all within `timeout`.
///
/// The names RFC 6761 reserves never reach the system resolver: `localhost` and every name
/// under it are `127.0.0.1` then `::1`, and a name under `invalid` fails at once (as
/// [`ConnectError::is_resolve`]).
///
/// The returned stream has `TCP_NODELAY` set: a proxy forwards what it gets, it should not
/// add Nagle's delay on top.
///
/// ```no_run
/// # async fn run() -> Result<(), rama::tcp::ConnectError> {
/// use std::time::Duration;
///
/// let upstream = rama::tcp::connect(&"localhost:5201".parse().unwrap(), Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
pub fn connect(addr: &Address, timeout: Duration) -> Connect {
    let state = match addr.host() {
        Host::Ip(ip) => State::Next {
            addrs: vec![SocketAddr::new(*ip, addr.port())].into_iter(),
            last: None,
        },
        Host::Name(name) => State::Resolving {
            lookup: super::lookup(name, addr.port()),
        },
    };
    Connect {
        addr: Some(addr.clone()),
        state,
        deadline: tokio::time::sleep(timeout),
        own: None,
    }
}

/// Dials the first of `addrs` that connects, in order, within `timeout`: addresses resolved
/// (and checked) before, which must not be resolved again. Errors name the first of them.
pub(crate) fn connect_any(addrs: Vec<SocketAddr>, timeout: Duration) -> Connect {
    let addr = addrs.first().map_or_else(
        || Address::from(SocketAddr::from(([0, 0, 0, 0], 0))),
        |a| (*a).into(),
    );
    Connect {
        addr: Some(addr),
        state: State::Next {
            addrs: addrs.into_iter(),
            last: None,
        },
        deadline: tokio::time::sleep(timeout),
        own: None,
    }
}

pin_project! {
    /// The future returned by [`connect`].
    #[derive(Debug)]
    pub struct Connect {
        addr: Option<Address>,
        state: State,
        #[pin]
        deadline: Sleep,
        own: Option<SocketAddr>,
    }
}

#[derive(Debug)]
enum State {
    Resolving {
        lookup: super::Lookup,
    },
    Next {
        addrs: vec::IntoIter<SocketAddr>,
        last: Option<io::Error>,
    },
    Connecting {
        stream: TcpStream,
        addrs: vec::IntoIter<SocketAddr>,
    },
    Done,
}

/// Why dialing failed: the destination, what failed (resolving, connecting, the timeout) and
/// the I/O error underneath.
#[derive(Debug)]
pub struct ConnectError {
    addr: Address,
    kind: Kind,
    source: Option<io::Error>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Resolve,
    Connect,
    Timeout,
}

// ===== impl Connect =====

impl Connect {
    /// Never dials `own`, the address the client reached the proxy on: a connection from
    /// the proxy to itself would be served like the client's, and one client request could
    /// nest them (a `CONNECT` to the proxy carries the next one) or a relay to itself repeat
    /// them until the proxy runs out of file descriptors. The dial (of a name that resolves
    /// to `own` too, whatever its other addresses) fails as refused by the rules
    /// ([`io::ErrorKind::PermissionDenied`]: SOCKS5 `0x02`, HTTP `403`).
    pub fn refusing(mut self, own: SocketAddr) -> Self {
        self.own = Some(own);
        self
    }
}

impl Future for Connect {
    type Output = Result<TcpStream, ConnectError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Progress first, the deadline second: a connect that completes together with the
        // timer still counts.
        let progress = Self::poll_state(this.state, *this.own, cx);
        let (kind, source) = match progress {
            Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
            Poll::Ready(Err((kind, source))) => (kind, source),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                *this.state = State::Done;
                (Kind::Timeout, None)
            }
        };
        let addr = this.addr.take().expect("Connect polled after completion");
        Poll::Ready(Err(ConnectError { addr, kind, source }))
    }
}

impl Connect {
    fn poll_state(
        state: &mut State,
        own: Option<SocketAddr>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<TcpStream, (Kind, Option<io::Error>)>> {
        loop {
            match state {
                State::Resolving { lookup } => {
                    let resolved = match ready!(Pin::new(lookup).poll(cx)) {
                        Ok(addrs) => addrs,
                        Err(error) => {
                            *state = State::Done;
                            return Poll::Ready(Err((Kind::Resolve, Some(error))));
                        }
                    };
                    *state = State::Next {
                        addrs: resolved,
                        last: None,
                    };
                }
                State::Next { addrs, last } => {
                    let Some(addr) = addrs.next() else {
                        let error = last.take().unwrap_or_else(|| {
                            io::Error::new(io::ErrorKind::NotFound, "name resolved to no address")
                        });
                        let kind = if error.kind() == io::ErrorKind::NotFound {
                            Kind::Resolve
                        } else {
                            Kind::Connect
                        };
                        *state = State::Done;
                        return Poll::Ready(Err((kind, Some(error))));
                    };
                    // Refused whatever the name's other addresses would do, so that the
                    // answer does not depend on the order they resolved in.
                    if own == Some(addr) {
                        *state = State::Done;
                        return Poll::Ready(Err((Kind::Connect, Some(own_address()))));
                    }
                    match start_connect(addr) {
                        Ok(stream) => {
                            let addrs = std::mem::take(addrs);
                            *state = State::Connecting { stream, addrs };
                        }
                        Err(error) => *last = Some(error),
                    }
                }
                State::Connecting { stream, addrs } => {
                    let ready = ready!(stream.poll_write_ready(cx));
                    let outcome = ready.and_then(|()| match stream.take_error()? {
                        Some(error) => Err(error),
                        // Writable without a pending error: connected. `peer_addr` catches the
                        // rare spurious wake-up before the handshake finished.
                        None => stream.peer_addr().map(drop),
                    });
                    let addrs = std::mem::take(addrs);
                    match outcome {
                        Ok(()) => {
                            let State::Connecting { stream, .. } =
                                std::mem::replace(state, State::Done)
                            else {
                                unreachable!()
                            };
                            return Poll::Ready(Ok(stream));
                        }
                        Err(error) => {
                            *state = State::Next {
                                addrs,
                                last: Some(error),
                            }
                        }
                    }
                }
                State::Done => panic!("Connect polled after completion"),
            }
        }
    }
}

/// The error of a dial refused because it would reach the proxy itself.
pub(crate) fn own_address() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "it is this proxy's own address",
    )
}

/// Starts a non-blocking connect; completion is signalled by writability.
fn start_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    TcpStream::from_std(socket.into())
}

// ===== impl ConnectError =====

impl ConnectError {
    /// The destination that could not be reached.
    pub fn addr(&self) -> &Address {
        &self.addr
    }

    /// The dial did not finish within its timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// The name could not be resolved.
    pub fn is_resolve(&self) -> bool {
        self.kind == Kind::Resolve
    }

    /// The I/O error underneath, when there is one (its kind tells refused from unreachable).
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Resolve => write!(f, "cannot resolve {}", self.addr),
            Kind::Connect => write!(f, "cannot connect to {}", self.addr),
            Kind::Timeout => write!(f, "connecting to {} timed out", self.addr),
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_any_tries_each_address_in_turn_and_names_the_first() {
        // A port just released: nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap();
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = open.local_addr().unwrap();
        let timeout = Duration::from_secs(10);

        let stream = connect_any(vec![closed, open], timeout).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);

        let error = connect_any(vec![closed], timeout).await.unwrap_err();
        assert_eq!(error.addr(), &Address::from(closed));
        assert_eq!(
            error.io_error().map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }

    #[test]
    fn only_the_proxys_own_refusal_is_a_denial() {
        use crate::tunnel::Refusal;
        let failed = |source| ConnectError {
            addr: Address::from(SocketAddr::from(([10, 98, 0, 1], 80))),
            kind: Kind::Connect,
            source: Some(source),
        };
        assert_eq!(
            Refusal::from_connect_error(&failed(own_address())),
            Refusal::Denied
        );
        for errno in [libc::EACCES, libc::EPERM] {
            let system = failed(io::Error::from_raw_os_error(errno));
            assert_eq!(Refusal::from_connect_error(&system), Refusal::Failure);
        }
    }
}
