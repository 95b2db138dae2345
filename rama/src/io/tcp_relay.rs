//! The relay every tunnel ends in once its upstream is a TCP stream: spliced when the client
//! is a plain TCP socket, else a buffered copy.

use super::{Relay, Relayed, relay};
#[cfg(target_os = "linux")]
use crate::tcp;
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

/// A relay from a client stream to a TCP upstream: spliced when asked to and the client is a
/// plain accepted TCP stream, else a buffered copy.
pub(crate) enum TcpRelay<S> {
    Copy(Relay<S, TcpStream>),
    #[cfg(target_os = "linux")]
    Splice(super::SpliceRelay),
}

impl<S> TcpRelay<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    pub(crate) fn new(
        peer: SocketAddr,
        client: S,
        upstream: TcpStream,
        buffer_size: usize,
        splice: bool,
    ) -> Self {
        #[cfg(target_os = "linux")]
        let client = if splice {
            match as_tcp::<S>(client) {
                Ok(tcp) => {
                    tracing::trace!(%peer, "splicing");
                    return Self::Splice(super::splice_accepted(tcp, upstream));
                }
                Err(client) => client,
            }
        } else {
            client
        };
        #[cfg(not(target_os = "linux"))]
        let _ = (peer, splice);
        Self::Copy(relay(client, upstream, buffer_size))
    }
}

impl<S> Future for TcpRelay<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<Relayed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Copy(relay) => Pin::new(relay).poll(cx),
            #[cfg(target_os = "linux")]
            Self::Splice(relay) => Pin::new(relay).poll(cx),
        }
    }
}

/// `S` is generic; only an accepted TCP stream has the socket that splice needs.
#[cfg(target_os = "linux")]
/// A SOCKS5 tunnel's client is a `Prefixed` stream, the raw socket once nothing the client
/// sent early is left to replay.
fn as_tcp<S: 'static>(client: S) -> Result<tcp::Stream, S> {
    let client = match cast::<S, tcp::Stream>(client) {
        Ok(tcp) => return Ok(tcp),
        Err(client) => client,
    };
    let prefixed = cast::<S, crate::socks5::Prefixed<tcp::Stream>>(client)?;
    prefixed
        .into_drained()
        .map_err(|prefixed| cast(prefixed).unwrap_or_else(|_| unreachable!("S is Prefixed")))
}

/// Moves `value` out as a `U` when `T` and `U` are the same type.
#[cfg(target_os = "linux")]
fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<U>>() {
        Some(same) => Ok(same.take().expect("filled above")),
        None => Err(slot.expect("not taken")),
    }
}

/// Logs the end of a relay with the peer and the upstream.
pub(crate) fn relay_finished(
    peer: SocketAddr,
    upstream: &crate::Address,
    result: io::Result<Relayed>,
) -> io::Result<Relayed> {
    if let Ok(moved) = &result {
        tracing::debug!(
            %peer,
            %upstream,
            sent = moved.sent,
            received = moved.received,
            "relay finished"
        );
    }
    result
}
