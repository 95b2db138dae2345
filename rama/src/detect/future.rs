//! The future of [`Detect`](super::Detect).

use super::{Classify, DetectError, MAX_PEEK, Rewind};
use crate::{
    BoxError, Conn, ConnInfo,
    shared::{Call, Shared},
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
    io::{AsyncRead, ReadBuf},
    time::Sleep,
};
use tower::Service;

pin_project! {
    /// Peeks until the classifier decides, then calls the branch it chose; resolves when that
    /// branch's connection future does.
    pub struct ResponseFuture<S, C, M, O>
    where
        M: Service<Conn<Rewind<S>>>,
        O: Service<Conn<Rewind<S>>>,
    {
        peer: SocketAddr,
        #[pin]
        state: State<S, C, M, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, C, M, O>
    where
        M: Service<Conn<Rewind<S>>>,
        O: Service<Conn<Rewind<S>>>,
    {
        Peeking {
            stream: Option<S>,
            info: Option<ConnInfo>,
            peeked: Vec<u8>,
            classifier: C,
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

/// What the peek ended with.
enum Peeked {
    /// The classifier chose: the matched branch (`true`) or the other.
    Decided(bool),
    /// The client closed before sending anything.
    Nothing,
}

impl<S, C, M, O> ResponseFuture<S, C, M, O>
where
    M: Service<Conn<Rewind<S>>>,
    O: Service<Conn<Rewind<S>>>,
{
    pub(super) fn new(
        conn: Conn<S>,
        classifier: C,
        matched: Shared<M>,
        other: Shared<O>,
        timeout: Duration,
    ) -> Self {
        let (stream, info) = conn.into_parts();
        Self {
            peer: info.peer_addr(),
            state: State::Peeking {
                stream: Some(stream),
                info: Some(info),
                peeked: Vec::new(),
                classifier,
                matched,
                other,
                timeout,
                deadline: tokio::time::sleep(timeout),
            },
        }
    }
}

impl<S, C, M, O> Future for ResponseFuture<S, C, M, O>
where
    S: AsyncRead + Unpin,
    C: Classify,
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
                    peeked,
                    classifier,
                    matched,
                    other,
                    timeout,
                    deadline,
                } => {
                    let io = stream.as_mut().expect("peeking holds the stream");
                    let outcome = loop {
                        if let Some(decided) = classifier.classify(peeked) {
                            break Peeked::Decided(decided);
                        }
                        // A classifier still undecided after `MAX_PEEK` bytes never will be.
                        if peeked.len() >= MAX_PEEK {
                            break Peeked::Decided(false);
                        }
                        let mut chunk = [0u8; MAX_PEEK];
                        let mut read = ReadBuf::new(&mut chunk[..MAX_PEEK - peeked.len()]);
                        match Pin::new(&mut *io).poll_read(cx, &mut read) {
                            // Closed while undecided: the other branch gets what was sent.
                            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                                break match peeked.is_empty() {
                                    true => Peeked::Nothing,
                                    false => Peeked::Decided(false),
                                };
                            }
                            Poll::Ready(Ok(())) => peeked.extend_from_slice(read.filled()),
                            Poll::Ready(Err(error)) => {
                                return Poll::Ready(Err(DetectError::io(error).into()));
                            }
                            Poll::Pending => {
                                ready!(deadline.poll(cx));
                                tracing::debug!(peer = %this.peer, peeked = peeked.len(), "too little to detect the protocol by");
                                return Poll::Ready(Err(DetectError::timeout(*timeout).into()));
                            }
                        }
                    };
                    let is_match = match outcome {
                        Peeked::Decided(is_match) => is_match,
                        Peeked::Nothing => {
                            tracing::debug!(peer = %this.peer, "closed before sending anything");
                            return Poll::Ready(Ok(()));
                        }
                    };
                    tracing::trace!(peer = %this.peer, peeked = peeked.len(), is_match, "detected");
                    let io = stream.take().expect("peeking holds the stream");
                    let info = info.take().expect("peeking holds the facts");
                    let conn = Conn::new(Rewind::new(std::mem::take(peeked), io), info);
                    match is_match {
                        true => State::CallMatched {
                            call: Call::new(matched.clone(), conn),
                        },
                        false => State::CallOther {
                            call: Call::new(other.clone(), conn),
                        },
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

impl<S, C, M, O> fmt::Debug for ResponseFuture<S, C, M, O>
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
