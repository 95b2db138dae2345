//! Upgrades through the proxies (WebSocket, any HTTP/1.1 `Upgrade`), one way for
//! [`ForwardProxy`](super::ForwardProxy) and [`ReverseProxy`](super::ReverseProxy): the
//! request keeps its upgrade headers, the client's upgraded connection is asked for before the
//! request goes upstream, and on the upstream's `101` both upgraded connections are joined and
//! relayed as bytes on the connection's own task ([`server::spawn`]), so the server's graceful
//! drain waits for them.

use super::{Body, forward, headers, server};
use crate::error::Chain;
use ::http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The client's side of an upgrade a proxy forwards: taken from the request before it goes
/// upstream (hyper hands the client's upgraded connection over through it), empty when the
/// request asks for no upgrade.
pub(crate) struct ClientUpgrade(Option<OnUpgrade>);

impl ClientUpgrade {
    /// The client's upgrade, when `request` asks for one that goes on to the next hop
    /// ([`headers::upgrade_of`]).
    pub(crate) fn take(request: &mut Request<Body>) -> Self {
        let asked = headers::upgrade_of(request.headers()).is_some();
        Self(asked.then(|| hyper::upgrade::on(request)))
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
        let Some(client) = self.0 else {
            tracing::warn!(%peer, %destination, "{proxy}: upstream switched protocols unasked");
            return forward::text(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols without being asked",
            );
        };
        let upstream = hyper::upgrade::on(&mut response);
        let relay = join(client, upstream, peer, destination.to_owned(), proxy);
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
/// directions end.
async fn join(
    client: OnUpgrade,
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
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => {
            tracing::debug!(%peer, %destination, sent, received, "{proxy}: upgraded connection closed")
        }
        Err(error) => {
            tracing::debug!(%peer, %destination, error = %Chain(&error), "{proxy}: upgraded connection failed")
        }
    }
}
