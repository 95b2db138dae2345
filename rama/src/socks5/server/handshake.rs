//! The answer to a CONNECT: [`Handshake`] (what [`Target`](crate::Target) accepts or rejects),
//! and its reply futures. The client stream handed to the relay is a [`Rewind`] that replays
//! what an optimistic client sent before its reply.

use crate::{
    io::Rewind,
    socks5::proto::{Reply, reply::code_of, reply_code},
    tunnel::{self, Refusal},
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
use tokio::io::{AsyncRead, AsyncWrite};

/// A SOCKS5 client waiting for the answer to its CONNECT: implements [`tunnel::Handshake`].
pub struct Handshake<S> {
    stream: S,
    /// Bytes the client sent after its request, before our reply (optimistic clients).
    early: Vec<u8>,
}

pin_project! {
    /// Sends the success reply, then yields the client's stream.
    pub struct Accept<S> {
        reply: Write<S>,
        early: Vec<u8>,
    }
}

pin_project! {
    /// Sends an error reply, then closes the client's write side.
    pub struct Reject<S> {
        reply: Write<S>,
    }
}

/// Writes a short message, flushes, and optionally shuts the write side.
pub(super) struct Write<S> {
    stream: Option<S>,
    bytes: [u8; 22],
    len: u8,
    pos: u8,
    shutdown: bool,
}

// ===== impl Handshake =====

impl<S> Handshake<S> {
    pub(super) fn new(stream: S, early: Vec<u8>) -> Self {
        Self { stream, early }
    }
}

impl<S> tunnel::Handshake for Handshake<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Stream = Rewind<S>;
    type Accept = Accept<S>;
    type Reject = Reject<S>;

    fn accept(self, bound: SocketAddr) -> Accept<S> {
        Accept {
            reply: Write::reply(self.stream, reply_code::SUCCEEDED, bound, false),
            early: self.early,
        }
    }

    fn reject(self, refusal: Refusal) -> Reject<S> {
        Reject {
            reply: Write::reply(
                self.stream,
                code_of(refusal),
                ([0, 0, 0, 0], 0).into(),
                true,
            ),
        }
    }
}

impl<S> fmt::Debug for Handshake<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

// ===== impl Accept, Reject =====

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Accept<S> {
    type Output = io::Result<Rewind<S>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let stream = ready!(this.reply.poll_write(cx))?;
        Poll::Ready(Ok(Rewind::new(std::mem::take(this.early), stream)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Reject<S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().reply.poll_write(cx).map_ok(drop)
    }
}

impl<S> fmt::Debug for Accept<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for Reject<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reject").finish_non_exhaustive()
    }
}

// ===== impl Write =====

impl<S: AsyncWrite + Unpin> Write<S> {
    pub(super) fn reply(stream: S, code: u8, bound: SocketAddr, shutdown: bool) -> Self {
        let (bytes, len) = Reply::encode_ip(code, bound);
        Self::new(stream, &bytes[..len], shutdown)
    }

    pub(super) fn new(stream: S, message: &[u8], shutdown: bool) -> Self {
        let mut bytes = [0u8; 22];
        bytes[..message.len()].copy_from_slice(message);
        Self {
            stream: Some(stream),
            bytes,
            len: message.len() as u8,
            pos: 0,
            shutdown,
        }
    }

    /// Writes what is left, flushes, shuts down if asked, then gives the stream back.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<S>> {
        let stream = self.stream.as_mut().expect("polled after completion");
        while self.pos < self.len {
            let n = ready!(Pin::new(&mut *stream).poll_write(
                cx,
                &self.bytes[usize::from(self.pos)..usize::from(self.len)]
            ))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n as u8;
        }
        ready!(Pin::new(&mut *stream).poll_flush(cx))?;
        if self.shutdown {
            match ready!(Pin::new(&mut *stream).poll_shutdown(cx)) {
                Err(error) if error.kind() != io::ErrorKind::NotConnected => {
                    return Poll::Ready(Err(error));
                }
                _ => {}
            }
        }
        Poll::Ready(Ok(self.stream.take().expect("checked above")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tunnel::Handshake as _;

    #[tokio::test]
    async fn accept_sends_success_then_replays_early_bytes() {
        let (mut client, server) = duplex(64);
        let handshake = Handshake::new(server, b"early".to_vec());
        let mut stream = handshake
            .accept("127.0.0.1:4000".parse().unwrap())
            .await
            .unwrap();
        let mut reply = [0u8; 10];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [5, 0, 0, 1, 127, 0, 0, 1, 0x0F, 0xA0]);
        client.write_all(b" late").await.unwrap();
        let mut got = [0u8; 10];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early late");
    }

    #[tokio::test]
    async fn reject_sends_the_code_and_closes() {
        let (mut client, server) = duplex(64);
        Handshake::new(server, Vec::new())
            .reject(Refusal::ConnectionRefused)
            .await
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
