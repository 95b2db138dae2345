//! The access log: an `info` event under the target [`TARGET`] for each request an HTTP proxy
//! stage answers and for each tunnel or relay when it ends, with the client's address, as
//! squid's `access.log` or nginx's `access_log` keep. Its own target lets a subscriber's
//! filter turn it on or off alone (`RUST_LOG=info,rama::access=off`).

use crate::{http::ConnFacts, socks5::auth::User};
use ::http::{Method, Request, StatusCode, Uri};
use std::{net::SocketAddr, time::Instant};

/// The tracing target of access events.
pub(crate) const TARGET: &str = "rama::access";

/// What an HTTP access event says of a request, taken before the request is handed on. The
/// event is logged when it is dropped: with the answer's status, or, for a request dropped
/// unanswered (its client closed the connection or reset the stream), as `abandoned` with
/// nginx's `499`.
pub(crate) struct Exchange {
    started: Instant,
    method: Method,
    uri: Uri,
    peer: Option<SocketAddr>,
    user: Option<User>,
    status: Option<StatusCode>,
}

impl Exchange {
    /// `None`, with nothing cloned and no clock read, while the access log is off: the
    /// request path pays one cached level check for it. Boxed: it waits inside each
    /// request's future, which grew past glibc's per-thread cache sizes with it in place
    /// (+470 instructions per request with the log off).
    ///
    /// With `path_only` (a reverse proxy, whose clients name no origin) the target is its
    /// path and query alone, as nginx logs it: an HTTP/2 request carries its scheme and
    /// authority in its URI, and would be logged unlike the same request over HTTP/1.1.
    pub(crate) fn start<B>(request: &Request<B>, path_only: bool) -> Option<Box<Self>> {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return None;
        }
        let uri = request.uri();
        let uri = match uri.path_and_query() {
            Some(path) if path_only => Uri::from(path.clone()),
            _ => uri.clone(),
        };
        Some(Box::new(Self {
            started: Instant::now(),
            method: request.method().clone(),
            uri,
            peer: request
                .extensions()
                .get::<ConnFacts>()
                .map(ConnFacts::peer_addr),
            user: None,
            status: None,
        }))
    }

    /// Notes the user the request authenticated as (`Proxy-Authorization`), for the event to
    /// name, as squid's access log does.
    pub(crate) fn user(&mut self, user: User) {
        self.user = Some(user);
    }

    /// Notes the status the request was answered with; the event, with how long the answer
    /// took (to its head: a body streams on after), is logged as the exchange is dropped.
    pub(crate) fn answered(&mut self, status: StatusCode) {
        self.status = Some(status);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        let peer = crate::http::forward::Peer(self.peer);
        let (method, uri) = (&self.method, &self.uri);
        let user = self.user.as_ref().map(User::name);
        match self.status {
            Some(status) => tracing::info!(
                target: TARGET,
                %peer, user, %method, %uri, status = status.as_u16(), ms = format_args!("{ms:.1}"),
                "answered"
            ),
            None => tracing::info!(
                target: TARGET,
                %peer, user, %method, %uri, status = 499, ms = format_args!("{ms:.1}"),
                "abandoned: the client went before the answer"
            ),
        }
    }
}
