//! Protocol detection: one port, several protocols, told apart by the client's first bytes.
//!
//! [`FirstByte`] peeks at the first byte of each connection without consuming it and calls one
//! of two branches with a [`Conn`] of a [`Rewind`] that replays what was peeked, so the branch
//! sees the connection from its first byte. [`socks5_or_http`] is the all-in-one proxy's
//! split: a SOCKS5 greeting starts with `0x05`, an HTTP request with a method's letter.
//! ([`tls::Detect`](crate::tls::Detect) is the TLS-or-plain split.)
//!
//! ```no_run
//! use rama::{detect, http, proxy, socks5, tcp, Target};
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // curl --socks5-hostname 127.0.0.1:8080 ... and curl -x http://127.0.0.1:8080 ... alike.
//! let socks5 = ServiceBuilder::new()
//!     .layer(socks5::Server::new())
//!     .service(Target::requested());
//! let http = ServiceBuilder::new()
//!     .layer(http::Server::new())
//!     .layer(http::ForwardProxy::new())
//!     .service(Target::requested());
//! proxy! { tcp::Server::bind("127.0.0.1:8080") => detect::socks5_or_http(socks5, http) }
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Readiness
//!
//! Which branch a connection takes is known only once its first byte arrived, so `FirstByte`
//! is always ready, and each connection waits for its branch to be ready after the peek (each
//! branch sits in a shared, ready-aware cell; neither is cloned). To stop accepting at a
//! limit, put the limit before `FirstByte`.

pub use crate::io::Rewind;

use crate::{
    BoxError, Conn, ConnInfo,
    shared::{Call, Shared},
    stage,
};
use pin_project_lite::pin_project;
use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tower::Service;

/// How long [`FirstByte`] waits for a client's first byte unless told otherwise.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every SOCKS5 greeting (the protocol version).
pub const SOCKS5_VERSION: u8 = 0x05;

/// How much is read at most while peeking (all of it is replayed).
const PEEK_BUF: usize = 512;

/// Routes each connection by its first byte: `byte` to `matched`, anything else to `other`.
/// A terminal that takes a byte stream. See the [module docs](self).
pub struct FirstByte<M, O> {
    byte: u8,
    matched: Shared<M>,
    other: Shared<O>,
    timeout: Duration,
}

/// SOCKS5 (first byte `0x05`) to `socks5`, anything else (HTTP) to `http`: the split of the
/// all-in-one proxy, [`FirstByte::new`] with [`SOCKS5_VERSION`].
pub fn socks5_or_http<S, H>(socks5: S, http: H) -> FirstByte<S, H> {
    FirstByte::new(SOCKS5_VERSION, socks5, http)
}

/// Why a connection ended before detection chose a branch.
#[derive(Debug)]
pub struct DetectError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    Timeout(Duration),
    Closed,
    Io(std::io::Error),
}

// ===== impl FirstByte =====

impl<M, O> FirstByte<M, O> {
    /// Connections whose first byte is `byte` to `matched`, the others to `other`.
    pub fn new(byte: u8, matched: M, other: O) -> Self {
        Self {
            byte,
            matched: Shared::new(matched),
            other: Shared::new(other),
            timeout: DEFAULT_DETECT_TIMEOUT,
        }
    }

    /// Bounds the wait for a client's first byte (default [`DEFAULT_DETECT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<M, O, S> Service<Conn<S>> for FirstByte<M, O>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Service<Conn<Rewind<S>>>,
    M::Error: Into<BoxError>,
    O: Service<Conn<Rewind<S>>>,
    O::Error: Into<BoxError>,
{
    type Response = ();
    type Error = BoxError;
    type Future = ResponseFuture<S, M, O>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<S>) -> Self::Future {
        let (stream, info) = conn.into_parts();
        ResponseFuture {
            peer: info.peer_addr(),
            state: State::Peeking {
                stream: Some(stream),
                info: Some(info),
                byte: self.byte,
                matched: self.matched.clone(),
                other: self.other.clone(),
                timeout: self.timeout,
                deadline: tokio::time::sleep(self.timeout),
            },
        }
    }
}

/// `FirstByte` in a diagram: the terminal of a byte stream (each branch is a stack of its own).
impl<M, O> stage::Stage for FirstByte<M, O> {
    type Takes = stage::kind::ByteStream;
    type HandsOn = stage::kind::Nothing;
}

impl<M, O> fmt::Debug for FirstByte<M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstByte")
            .field("byte", &format_args!("{:#04x}", self.byte))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Peeks, then calls the branch the first byte chose; resolves when that branch's
    /// connection future does.
    pub struct ResponseFuture<S, M, O>
    where
        M: Service<Conn<Rewind<S>>>,
        O: Service<Conn<Rewind<S>>>,
    {
        peer: SocketAddr,
        #[pin]
        state: State<S, M, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, M, O>
    where
        M: Service<Conn<Rewind<S>>>,
        O: Service<Conn<Rewind<S>>>,
    {
        Peeking {
            stream: Option<S>,
            info: Option<ConnInfo>,
            byte: u8,
            matched: Shared<M>,
            other: Shared<O>,
            timeout: Duration,
            #[pin]
            deadline: Sleep,
        },
        CallMatched { call: Call<M, Conn<Rewind<S>>> },
        CallOther { call: Call<O, Conn<Rewind<S>>> },
        Matched { #[pin] future: M::Future },
        Other { #[pin] future: O::Future },
    }
}

impl<S, M, O> Future for ResponseFuture<S, M, O>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Service<Conn<Rewind<S>>>,
    M::Error: Into<BoxError>,
    O: Service<Conn<Rewind<S>>>,
    O::Error: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Peeking {
                    stream,
                    info,
                    byte,
                    matched,
                    other,
                    timeout,
                    deadline,
                } => {
                    let Some(io) = stream.as_mut() else {
                        return Poll::Ready(Err(DetectError::new(ErrorKind::Closed).into()));
                    };
                    let mut chunk = [0u8; PEEK_BUF];
                    let mut read = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut *io).poll_read(cx, &mut read) {
                        Poll::Ready(Ok(())) if read.filled().is_empty() => {
                            tracing::debug!(peer = %this.peer, "closed before sending anything");
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) => {
                            return Poll::Ready(Err(DetectError::new(ErrorKind::Io(error)).into()));
                        }
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            tracing::debug!(peer = %this.peer, "no first byte to detect the protocol by");
                            return Poll::Ready(Err(DetectError::new(ErrorKind::Timeout(
                                *timeout,
                            ))
                            .into()));
                        }
                    }
                    let peeked = read.filled().to_vec();
                    let is_match = peeked[0] == *byte;
                    tracing::trace!(peer = %this.peer, first = peeked[0], is_match, "detected");
                    let (Some(io), Some(info)) = (stream.take(), info.take()) else {
                        return Poll::Ready(Err(DetectError::new(ErrorKind::Closed).into()));
                    };
                    let conn = Conn::new(Rewind::new(peeked, io), info);
                    if is_match {
                        State::CallMatched {
                            call: Call::new(matched.clone(), conn),
                        }
                    } else {
                        State::CallOther {
                            call: Call::new(other.clone(), conn),
                        }
                    }
                }
                StateProj::CallMatched { call } => State::Matched {
                    future: ready!(call.poll(cx)).map_err(Into::into)?,
                },
                StateProj::CallOther { call } => State::Other {
                    future: ready!(call.poll(cx)).map_err(Into::into)?,
                },
                StateProj::Matched { future } => {
                    return future.poll(cx).map(|r| r.map(drop).map_err(Into::into));
                }
                StateProj::Other { future } => {
                    return future.poll(cx).map(|r| r.map(drop).map_err(Into::into));
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, M, O> fmt::Debug for ResponseFuture<S, M, O>
where
    M: Service<Conn<Rewind<S>>>,
    O: Service<Conn<Rewind<S>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

// ===== impl DetectError =====

impl DetectError {
    fn new(kind: ErrorKind) -> Self {
        Self { kind }
    }

    /// The client sent nothing within the detection timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout(_))
    }
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Timeout(timeout) => {
                write!(f, "the client sent nothing within {timeout:?}")
            }
            ErrorKind::Closed => f.write_str("the connection was polled after it ended"),
            ErrorKind::Io(_) => f.write_str("reading the first byte failed"),
        }
    }
}

impl StdError for DetectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            ErrorKind::Io(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graceful;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tower::{ServiceExt, service_fn};

    /// A branch that reads everything and answers its name and what it read.
    fn branch(
        name: &'static str,
    ) -> impl Service<Conn<Rewind<tokio::io::DuplexStream>>, Response = (), Error = BoxError> {
        service_fn(
            move |conn: Conn<Rewind<tokio::io::DuplexStream>>| async move {
                let (mut io, _) = conn.into_parts();
                let mut got = Vec::new();
                io.read_to_end(&mut got).await?;
                io.write_all(name.as_bytes()).await?;
                io.write_all(&got).await?;
                io.shutdown().await?;
                Ok::<_, BoxError>(())
            },
        )
    }

    fn info() -> ConnInfo {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        ConnInfo::new(addr, addr, graceful::Signal::new())
    }

    async fn route(sent: &[u8]) -> Vec<u8> {
        let mut detect = socks5_or_http(branch("socks5:"), branch("http:"));
        let (mut client, server) = duplex(1024);
        let conn = detect
            .ready()
            .await
            .unwrap()
            .call(Conn::new(server, info()));
        client.write_all(sent).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        let (done, _) = tokio::join!(conn, client.read_to_end(&mut got));
        done.unwrap();
        got
    }

    #[tokio::test]
    async fn routes_by_the_first_byte_and_replays_it() {
        assert_eq!(route(b"\x05\x01\x00").await, b"socks5:\x05\x01\x00");
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n").await,
            b"http:GET / HTTP/1.1\r\n"
        );
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let mut detect =
            socks5_or_http(branch("socks5:"), branch("http:")).timeout(Duration::from_millis(20));
        let (_client, server) = duplex(1024);
        let error = detect
            .ready()
            .await
            .unwrap()
            .call(Conn::new(server, info()))
            .await
            .unwrap_err();
        assert!(error.downcast_ref::<DetectError>().unwrap().is_timeout());
    }
}
