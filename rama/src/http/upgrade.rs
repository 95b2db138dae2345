//! Upgrades through the proxies (WebSocket, any HTTP/1.1 `Upgrade`), one way for
//! [`ForwardProxy`](super::ForwardProxy) and [`ReverseProxy`](super::ReverseProxy): the
//! request keeps its upgrade headers, the client's upgraded connection is asked for before the
//! request goes upstream, and on the upstream's `101` both upgraded connections are joined and
//! relayed as bytes on the connection's own task ([`server::spawn`]), so the server's graceful
//! drain waits for them.
//!
//! A WebSocket on an HTTP/2 stream (RFC 8441) comes with the stream's [`ResetSignal`] in the
//! request (`http::Server` puts it there): the client resetting the stream, or its connection
//! going, ends the relay even while it waits on an upstream that does not read. An HTTP/1.1
//! upgrade over a TCP socket comes with one that watches the socket for the client's `RST`.

use super::{Body, connect::Stream, forward, headers, server};
use crate::{
    error::Chain,
    io::{self, Relayed, ResetSignal, Rewind},
};
use ::http::{Request, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// The client's side of an upgrade a proxy forwards: taken from the request before it goes
/// upstream (hyper hands the client's upgraded connection over through it), empty when the
/// request asks for no upgrade.
pub(crate) struct ClientUpgrade(Option<(OnUpgrade, Option<ResetSignal>)>);

impl ClientUpgrade {
    /// The client's upgrade, when `request` asks for one that goes on to the next hop
    /// ([`headers::upgrade_of`]).
    pub(crate) fn take(request: &mut Request<Body>) -> Self {
        let asked = headers::upgrade_of(request.headers()).is_some();
        Self(asked.then(|| {
            let stream_end = request.extensions().get::<ResetSignal>().cloned();
            (hyper::upgrade::on(request), stream_end)
        }))
    }

    /// What the client gets for the upstream's `response` to its request, which went to
    /// `destination` for `peer`: any response but a `101` as it is; a `101` once the relay of
    /// both upgraded connections is queued on the connection's task set. A `101` the client
    /// did not ask for (its connection could never be joined) becomes `502`, one with no task set
    /// to relay it on (no [`http::Server`](super::Server) in front) `500`. `proxy` names the
    /// proxy in the logs.
    pub(crate) fn relay(
        self,
        mut response: Response<Body>,
        peer: forward::Peer,
        destination: &str,
        proxy: &'static str,
    ) -> Response<Body> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return response;
        }
        let Some((client, stream_end)) = self.0 else {
            tracing::warn!(%peer, %destination, "{proxy}: upstream switched protocols unasked");
            return forward::text(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols without being asked",
            );
        };
        let upstream = hyper::upgrade::on(&mut response);
        let relay = join(
            client,
            stream_end,
            upstream,
            peer,
            destination.to_owned(),
            proxy,
        );
        if server::spawn(relay).is_err() {
            tracing::error!(%peer, %destination, "{proxy}: an upgrade, but no http::Server task set to relay it on");
            return forward::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "an upgrade needs http::Server in front of the proxy",
            );
        }
        response
    }
}

/// Joins the client's and the upstream's upgraded connections and relays bytes until both
/// directions end, or the client's `stream_end` is raised.
async fn join(
    client: OnUpgrade,
    stream_end: Option<ResetSignal>,
    upstream: OnUpgrade,
    peer: forward::Peer,
    destination: String,
    proxy: &'static str,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::warn!(%peer, %destination, error = %Chain(&error), "{proxy}: upgrade failed");
            return;
        }
    };
    let client = TokioIo::new(client);
    // The client's own connection type (hyper-util's pool hands the upgraded connection over
    // as it dialed it), so that a reset ends the upstream's TCP connection with `RST`: RFC 8441
    // 5 has a WebSocket stream's `RST_STREAM` stand for the TCP `RST` of RFC 6455, and a FIN
    // would wait behind whatever the upstream has not read.
    let result = match upstream.downcast::<Stream>() {
        Ok(parts) => {
            // Watched while the relay neither reads nor writes it (see `io::Relay`): an
            // upstream's reset towards a client that stopped reading ends the relay at once.
            let watched = io::SocketWatch::upstream(parts.io.tcp());
            let upstream = Rewind::new(parts.read_buf.to_vec(), TokioIo::new(parts.io));
            let (result, upstream) = relay(client, upstream, stream_end, watched).await;
            if result.as_ref().is_err_and(io::is_reset) {
                upstream.get_ref().inner().reset_on_drop();
            }
            result
        }
        Err(upstream) => {
            relay(client, TokioIo::new(upstream), stream_end, None)
                .await
                .0
        }
    };
    match result {
        Ok(moved) => {
            let (sent, received) = (moved.sent, moved.received);
            tracing::debug!(%peer, %destination, sent, received, "{proxy}: upgraded connection closed")
        }
        Err(error) if io::is_reset(&error) => {
            tracing::debug!(%peer, %destination, "{proxy}: upgraded stream reset by the client")
        }
        Err(error) => {
            tracing::debug!(%peer, %destination, error = %Chain(&error), "{proxy}: upgraded connection failed")
        }
    }
}

/// Relays bytes between `client` and `upstream` until both directions end or `stream_end` is
/// raised, watching `upstream_socket` (the upstream's) for an error; the upstream back, for
/// its close.
async fn relay<U>(
    client: TokioIo<Upgraded>,
    upstream: U,
    stream_end: Option<ResetSignal>,
    upstream_socket: Option<io::SocketWatch>,
) -> (std::io::Result<Relayed>, U)
where
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut relay =
        io::relay(client, upstream, io::DEFAULT_RELAY_BUFFER).watching_upstream(upstream_socket);
    if let Some(signal) = stream_end {
        relay = relay.with_reset(signal);
    }
    let result = (&mut relay).await;
    (result, relay.into_inner().1)
}
