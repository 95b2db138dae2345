//! The relay every tunnel ends in once its upstream is a TCP stream: spliced when the client
//! is a plain TCP socket, else a buffered copy.

use super::{Relay, Relayed, ResetSignal, relay};
use crate::socks5::auth::User;
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
/// plain accepted TCP stream, else a buffered copy (watching the client's [`ResetSignal`],
/// when it has one, and the upstream's socket).
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
        reset: Option<ResetSignal>,
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
        let watch = super::SocketWatch::upstream(&upstream);
        let relay = relay(client, upstream, buffer_size).watching_upstream(watch);
        // A spliced client is a TCP socket: its reset is an error its own reads and writes
        // report, and no stage has a signal for it.
        Self::Copy(match reset {
            Some(reset) => relay.with_reset(reset),
            None => relay,
        })
    }
}

impl<S> Future for TcpRelay<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<Relayed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Copy(relay) => {
                let result = std::task::ready!(Pin::new(&mut *relay).poll(cx));
                if let Err(error) = &result
                    && super::is_reset(error)
                {
                    // RFC 9113 8.5: a reset `CONNECT` stream closes its TCP connection, and
                    // with `RST`, the end being abnormal: the upstream learns it now, where a
                    // FIN would wait behind the bytes an upstream that does not read left in
                    // the send buffer. (Failing that, the drop below still closes it.)
                    let _ = relay.b.set_zero_linger();
                }
                Poll::Ready(result)
            }
            #[cfg(target_os = "linux")]
            Self::Splice(relay) => Pin::new(relay).poll(cx),
        }
    }
}

/// `S` is generic; only an accepted TCP stream has the socket that splice needs.
#[cfg(target_os = "linux")]
/// Stages that peeked at the client (SOCKS5's early bytes, first-byte or TLS detection) hand
/// on a [`Rewind`](super::Rewind), one per stage: once its bytes are replayed, the raw socket
/// underneath can be spliced.
fn as_tcp<S: 'static>(client: S) -> Result<tcp::Stream, S> {
    type Once = super::Rewind<tcp::Stream>;
    type Twice = super::Rewind<Once>;
    let client = match cast::<S, tcp::Stream>(client) {
        Ok(tcp) => return Ok(tcp),
        Err(client) => client,
    };
    let client = match cast::<S, Once>(client) {
        Ok(once) => return once.into_drained().map_err(|once| back(once)),
        Err(client) => client,
    };
    let twice = cast::<S, Twice>(client)?;
    match twice.into_drained() {
        Ok(once) => once
            .into_drained()
            .map_err(|once| back(super::Rewind::new(Vec::new(), once))),
        Err(twice) => Err(back(twice)),
    }
}

/// Undoes a successful [`cast`] to `T`.
fn back<T: 'static, S: 'static>(value: T) -> S {
    cast(value).unwrap_or_else(|_| unreachable!("S is T"))
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

/// Logs a relay dropped before its end (the server's drain deadline, its idle or total
/// timeout), as [`relay_finished`] logs one that ended: a tunnel's access line either way.
pub(crate) fn relay_cut(peer: SocketAddr, user: Option<&User>, upstream: &crate::Address) {
    let user = user.map(User::name);
    tracing::info!(target: crate::access::TARGET, %peer, user, %upstream, "relay cut before its end");
}

/// Logs the end of a relay with the peer and the upstream, a reset's too (any other failure is
/// its caller's to log).
pub(crate) fn relay_finished(
    peer: SocketAddr,
    user: Option<&User>,
    upstream: &crate::Address,
    result: io::Result<Relayed>,
) -> io::Result<Relayed> {
    // The user the client authenticated as, when it did (SOCKS5 or `Proxy-Authorization`),
    // as squid's access log names it.
    let user = user.map(User::name);
    match &result {
        Ok(moved) => tracing::info!(
            target: crate::access::TARGET,
            %peer,
            user,
            %upstream,
            sent = moved.sent,
            received = moved.received,
            "relay finished"
        ),
        // The client's doing, not a failure of the relay: a tunnel's access line all the same.
        Err(error) if super::is_reset(error) => tracing::info!(
            target: crate::access::TARGET,
            %peer,
            user,
            %upstream,
            "relay reset by the client"
        ),
        // A TCP reset, by either peer: theirs too.
        Err(error) if crate::error::is_peer_reset(error) => tracing::info!(
            target: crate::access::TARGET,
            %peer,
            user,
            %upstream,
            %error,
            "relay reset"
        ),
        Err(_) => {}
    }
    result
}
