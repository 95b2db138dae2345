//! [`Detect`]: TLS and plain text on one port.
//!
//! The service peeks at the first bytes of each connection without consuming them: a TLS
//! handshake record (`0x16 0x03 ..`, a ClientHello) goes to the TLS branch, anything else to
//! the plain branch, each as a [`Conn`] of a [`Rewind`] that replays the peeked bytes.
//!
//! ```no_run
//! use rama::{tcp, target, tls};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // `curl https://` and `curl http://` on one port, both relayed in plain to the origin.
//! let both = tls::Detect::new(
//!     tower::Layer::layer(&tls::Acceptor::dev()?, target("127.0.0.1:8000")),
//!     target("127.0.0.1:8000"),
//! );
//! tcp::Server::bind("127.0.0.1:8443").serve(both).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Readiness
//!
//! Which branch a connection takes is known only once its first bytes arrived, so `Detect` is
//! always ready, and each connection waits for its branch to be ready after the peek (each
//! branch sits in a shared, ready-aware cell; neither is cloned). To stop accepting at a
//! limit, put the limit before `Detect`.

use super::Rewind;
use crate::shared::{Call, Shared};
use crate::{BoxError, Conn, ConnInfo, stage};
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

/// How long `Detect` waits for a client's first bytes unless told otherwise.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes that tell a TLS record from anything else: content type 22 (handshake), then
/// protocol version major 3.
const PEEK: usize = 2;

/// Routes each connection by its first bytes: TLS to `tls`, anything else to `plain`. See the
/// [module docs](self).
pub struct Detect<T, P> {
    tls: Shared<T>,
    plain: Shared<P>,
    timeout: Duration,
}

/// The client sent nothing within the detection timeout.
#[derive(Debug)]
pub struct DetectTimeout(Duration);

// ===== impl Detect =====

impl<T, P> Detect<T, P> {
    /// TLS connections to `tls` (usually an [`Acceptor`](super::Acceptor) over the stack),
    /// the others to `plain`.
    pub fn new(tls: T, plain: P) -> Self {
        Self {
            tls: Shared::new(tls),
            plain: Shared::new(plain),
            timeout: DEFAULT_DETECT_TIMEOUT,
        }
    }

    /// Bounds the wait for a client's first bytes (default [`DEFAULT_DETECT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<T, P, S, R> Service<Conn<S>> for Detect<T, P>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Service<Conn<Rewind<S>>, Response = R>,
    T::Error: Into<BoxError>,
    P: Service<Conn<Rewind<S>>, Response = R>,
    P::Error: Into<BoxError>,
{
    type Response = R;
    type Error = BoxError;
    type Future = ResponseFuture<S, T, P>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Conn<S>) -> Self::Future {
        let (stream, info) = conn.into_parts();
        ResponseFuture {
            peer: info.peer_addr(),
            state: State::Peeking {
                stream: Some(stream),
                buf: Vec::with_capacity(PEEK),
                info: Some(info),
                tls: self.tls.clone(),
                plain: self.plain.clone(),
                timeout: self.timeout,
                deadline: tokio::time::sleep(self.timeout),
            },
        }
    }
}

impl<T, P> stage::Stage for Detect<T, P> {
    type Takes = stage::kind::ByteStream;
    type HandsOn = stage::kind::Nothing;
}

impl<T, P> fmt::Debug for Detect<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detect")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether `peeked` starts like a TLS record: `None` while it cannot tell yet.
fn looks_like_tls(peeked: &[u8]) -> Option<bool> {
    match peeked {
        [] => None,
        [0x16] => None,
        [0x16, 0x03, ..] => Some(true),
        _ => Some(false),
    }
}

pin_project! {
    /// Peeks, then calls the branch the first bytes chose.
    pub struct ResponseFuture<S, T, P>
    where
        T: Service<Conn<Rewind<S>>>,
        P: Service<Conn<Rewind<S>>>,
    {
        peer: SocketAddr,
        #[pin]
        state: State<S, T, P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, T, P>
    where
        T: Service<Conn<Rewind<S>>>,
        P: Service<Conn<Rewind<S>>>,
    {
        Peeking {
            stream: Option<S>,
            buf: Vec<u8>,
            info: Option<ConnInfo>,
            tls: Shared<T>,
            plain: Shared<P>,
            timeout: Duration,
            #[pin]
            deadline: Sleep,
        },
        CallTls { call: Call<T, Conn<Rewind<S>>> },
        CallPlain { call: Call<P, Conn<Rewind<S>>> },
        Tls { #[pin] future: T::Future },
        Plain { #[pin] future: P::Future },
    }
}

impl<S, T, P, R> Future for ResponseFuture<S, T, P>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Service<Conn<Rewind<S>>, Response = R>,
    T::Error: Into<BoxError>,
    P: Service<Conn<Rewind<S>>, Response = R>,
    P::Error: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Peeking {
                    stream,
                    buf,
                    info,
                    tls,
                    plain,
                    timeout,
                    deadline,
                } => {
                    let io = stream.as_mut().expect("peeking holds the stream");
                    let is_tls = loop {
                        if let Some(decided) = looks_like_tls(buf) {
                            break decided;
                        }
                        let mut chunk = [0u8; 512];
                        let mut read = ReadBuf::new(&mut chunk);
                        match Pin::new(&mut *io).poll_read(cx, &mut read) {
                            Poll::Ready(Ok(())) if read.filled().is_empty() => break false,
                            Poll::Ready(Ok(())) => buf.extend_from_slice(read.filled()),
                            Poll::Ready(Err(error)) => return Poll::Ready(Err(error.into())),
                            Poll::Pending => {
                                ready!(deadline.poll(cx));
                                tracing::debug!(peer = %this.peer, "no bytes to detect tls by");
                                return Poll::Ready(Err(DetectTimeout(*timeout).into()));
                            }
                        }
                    };
                    tracing::trace!(peer = %this.peer, is_tls, "detected");
                    let stream = Rewind::new(
                        std::mem::take(buf),
                        stream.take().expect("peeking holds the stream"),
                    );
                    let conn = Conn::new(stream, info.take().expect("peeking holds the facts"));
                    match is_tls {
                        true => State::CallTls {
                            call: Call::new(tls.clone(), conn),
                        },
                        false => State::CallPlain {
                            call: Call::new(plain.clone(), conn),
                        },
                    }
                }
                StateProj::CallTls { call } => State::Tls {
                    future: ready!(call.poll(cx)).map_err(Into::into)?,
                },
                StateProj::CallPlain { call } => State::Plain {
                    future: ready!(call.poll(cx)).map_err(Into::into)?,
                },
                StateProj::Tls { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Plain { future } => return future.poll(cx).map_err(Into::into),
            };
            this.state.set(next);
        }
    }
}

impl<S, T, P> fmt::Debug for ResponseFuture<S, T, P>
where
    T: Service<Conn<Rewind<S>>>,
    P: Service<Conn<Rewind<S>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

// ===== impl DetectTimeout =====

impl fmt::Display for DetectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the client sent nothing within {:?}", self.0)
    }
}

impl StdError for DetectTimeout {}

#[cfg(test)]
mod tests {
    use super::looks_like_tls;

    #[test]
    fn tells_a_client_hello_from_text() {
        assert_eq!(looks_like_tls(b""), None);
        assert_eq!(looks_like_tls(b"\x16"), None);
        assert_eq!(looks_like_tls(b"\x16\x03\x01\x02\x00"), Some(true));
        assert_eq!(looks_like_tls(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(looks_like_tls(b"\x16\x01"), Some(false));
        assert_eq!(looks_like_tls(b"\x05\x01\x00"), Some(false));
    }
}
