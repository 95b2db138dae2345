//! [`Serve`]: a WebSocket endpoint at the end of an HTTP diagram, and the [`Socket`] its
//! handler gets.

use super::{
    CloseFrame, Config, Message, error::SessionError, future::Ready, protocol_header, session,
};
use crate::{
    graceful,
    http::{Body, ConnFacts, forward::Peer, server},
};
use ::http::{HeaderValue, Request, Response, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use hyper_tungstenite::HyperWebsocketStream;
use std::{
    convert::Infallible,
    fmt,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower::Service;

/// A WebSocket endpoint: a terminal `Service<http::Request<B>>` behind
/// [`http::Server`](crate::http::Server) that accepts each upgrade and runs `handler` with the
/// session's [`Socket`] on the connection's own task set, so a graceful shutdown waits for it.
///
/// A request that is not a WebSocket upgrade is answered `426 Upgrade Required` (with
/// `Upgrade: websocket`), and a malformed upgrade `400`. `Serve` is an endpoint, not a
/// router: put a router (tower's `Steer`, say) in front of it to serve other paths.
///
/// Always ready; cheap to clone when the handler is. Neither the handler nor its future needs
/// to be `Send`: sessions run on the connection's own task.
///
/// ```no_run
/// use rama::{http, proxy, tcp, ws};
///
/// # async fn run() -> Result<(), rama::BoxError> {
/// // An echo server.
/// proxy! {
///     tcp::Server::bind("127.0.0.1:8080")
///         => http::Server::new()
///         => ws::Serve::new(|mut socket: ws::Socket| async move {
///             while let Some(message) = socket.recv().await {
///                 if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
///                     break;
///                 }
///             }
///         })
/// }
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Serve<F> {
    handler: F,
    config: Config,
    protocols: Arc<[String]>,
}

/// One accepted WebSocket session, as [`Serve`]'s handler gets it.
///
/// [`recv`](Socket::recv) answers pings on its own (the pong goes out with the next read or
/// write) and replies to the peer's close. A peer that breaks the protocol is answered with
/// close `1002` (`1007` for invalid UTF-8, `1009` for a message over the size limit), logged
/// with its address, and `recv` returns `None`.
///
/// # Shutdown
///
/// When the server shuts down gracefully, the socket closes the session with `1001` ("going
/// away", what browsers expect of a server that leaves) and finishes the close handshake
/// within the close timeout: a waiting [`recv`](Socket::recv) does so and returns `None`, and
/// so does the next `recv` of a handler that is busy; a [`send`](Socket::send) does so and
/// returns an error whose [`is_shutdown`](SessionError::is_shutdown) is true. The handler
/// learns why its session ended from [`shutdown`](Socket::shutdown)`().is_triggered()`. A
/// handler that waits on something else between messages (a push feed, say) should also wait
/// on `shutdown().triggered()`, or its session lives on until its next `send` (or until the
/// server's drain deadline drops it without a close).
pub struct Socket {
    ws: HyperWebsocketStream,
    peer: Option<SocketAddr>,
    protocol: Option<String>,
    linger: Duration,
    shutdown: graceful::Signal,
    /// Whether the session was closed with `1001` for the shutdown (it is done only once).
    closed_for_shutdown: bool,
}

// ===== impl Serve =====

impl<F, Fut> Serve<F>
where
    F: Fn(Socket) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    /// Runs `handler` for each accepted session, with the default limits (16 MiB messages).
    pub fn new(handler: F) -> Self {
        Self {
            handler,
            config: Config::default(),
            protocols: Arc::from([]),
        }
    }
}

impl<F> Serve<F> {
    /// The largest message (and frame) a client may send, in bytes (default 16 MiB); a larger
    /// one ends its session with close `1009`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config = self.config.max_message_size(bytes);
        self
    }

    /// How long the close handshake may take once a session is closed (by
    /// [`Socket::close`], a broken peer or the server's shutdown; default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.linger = timeout;
        self
    }

    /// The subprotocols the endpoint speaks, in order of preference: the first one the client
    /// offers (in `Sec-WebSocket-Protocol`) is selected and is [`Socket::protocol`]. Without
    /// any, or when the client offers none of them, no subprotocol is selected.
    pub fn protocols<P: Into<String>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The subprotocol to select for `request`: ours, in our order, among those it offers.
    fn select_protocol<B>(&self, request: &Request<B>) -> Option<String> {
        let offered: Vec<&str> = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        self.protocols
            .iter()
            .find(|ours| offered.contains(&ours.as_str()))
            .cloned()
    }
}

impl<F, Fut, B> Service<Request<B>> for Serve<F>
where
    F: Fn(Socket) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Ready {
        let facts = request.extensions().get::<ConnFacts>();
        let peer = facts.map(ConnFacts::peer_addr);
        // Outside `http::Server` there are no facts, but then `spawn` refuses the session too.
        let shutdown = facts.map(|f| f.shutdown().clone()).unwrap_or_default();
        let log_peer = Peer(peer);
        if !hyper_tungstenite::is_upgrade_request(&request) {
            let mut response =
                super::text(StatusCode::UPGRADE_REQUIRED, "this is a websocket endpoint");
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return Ready::new(response);
        }
        let protocol = self.select_protocol(&request);
        let (response, websocket) =
            match hyper_tungstenite::upgrade(&mut request, Some(self.config.tungstenite())) {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(peer = %log_peer, %error, "ws: bad upgrade request");
                    return Ready::new(super::text(
                        StatusCode::BAD_REQUEST,
                        format!("bad websocket upgrade: {error}"),
                    ));
                }
            };
        let mut response = response.map(|_| Body::empty());
        if let Some(value) = protocol.as_deref().and_then(protocol_header) {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        let handler = self.handler.clone();
        let linger = self.config.linger;
        let session = async move {
            match websocket.await {
                Ok(ws) => {
                    handler(Socket {
                        ws,
                        peer,
                        protocol,
                        linger,
                        shutdown,
                        closed_for_shutdown: false,
                    })
                    .await
                }
                Err(error) => tracing::debug!(peer = %log_peer, %error, "ws: upgrade failed"),
            }
        };
        match server::spawn(session) {
            Ok(()) => Ready::new(response),
            Err(error) => {
                tracing::error!(peer = %log_peer, %error, "ws: cannot run the session");
                Ready::new(super::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ws::Serve runs only behind http::Server",
                ))
            }
        }
    }
}

impl<F> fmt::Debug for Serve<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

// ===== impl Socket =====

impl Socket {
    /// The next message from the peer: text, binary, ping, pong, or its close (after which
    /// `recv` returns `None`). `None` also when the connection is gone, the peer broke the
    /// protocol (it was answered with a close), or the server is shutting down (the session
    /// was closed with `1001`; see [Shutdown](Socket#shutdown)).
    pub async fn recv(&mut self) -> Option<Message> {
        // A busy session may never wait on the signal below, so the flag is checked first.
        let item = if self.shutdown.is_triggered() {
            None
        } else {
            tokio::select! {
                biased;
                item = self.ws.next() => Some(item),
                () = self.shutdown.triggered() => None,
            }
        };
        let Some(item) = item else {
            self.close_for_shutdown().await;
            return None;
        };
        match item? {
            Ok(message) => Some(message),
            Err(error) => {
                match session::answer(&error) {
                    Some(close) => {
                        tracing::warn!(peer = %Peer(self.peer), error = %crate::error::Chain(&error), code = u16::from(close.code), "ws: closing a session that broke the protocol");
                        let _ =
                            tokio::time::timeout(self.linger, session::fail(&mut self.ws, close))
                                .await;
                    }
                    None => {
                        tracing::debug!(peer = %Peer(self.peer), error = %crate::error::Chain(&error), "ws: connection lost");
                    }
                }
                None
            }
        }
    }

    /// Sends `message` and flushes it. Once the server is shutting down, the session is
    /// closed with `1001` instead and the error [`is_shutdown`](SessionError::is_shutdown).
    pub async fn send(&mut self, message: Message) -> Result<(), SessionError> {
        if self.shutdown.is_triggered() {
            self.close_for_shutdown().await;
            return Err(SessionError::shutdown());
        }
        self.ws.send(message).await.map_err(SessionError::new)
    }

    /// Starts the close handshake with `close` (a code and a reason, or none), then reads until
    /// the peer's reply, within the session's close timeout.
    pub async fn close(mut self, close: Option<CloseFrame>) -> Result<(), SessionError> {
        self.ws
            .send(Message::Close(close))
            .await
            .map_err(SessionError::new)?;
        let _ = tokio::time::timeout(self.linger, session::drain_messages(&mut self.ws)).await;
        Ok(())
    }

    /// Closes the session with `1001` (once) and reads until the peer's reply, within the
    /// close timeout.
    async fn close_for_shutdown(&mut self) {
        if self.closed_for_shutdown {
            return;
        }
        self.closed_for_shutdown = true;
        tracing::debug!(peer = %Peer(self.peer), "ws: the server is shutting down, closing the session with 1001");
        let close = async {
            let frame = Message::Close(Some(session::shutting_down()));
            if self.ws.send(frame).await.is_ok() {
                session::drain_messages(&mut self.ws).await;
            }
        };
        let _ = tokio::time::timeout(self.linger, close).await;
    }

    /// The server's shutdown signal: triggered once the server shuts down gracefully, which
    /// ends the session (see [Shutdown](Socket#shutdown)).
    pub fn shutdown(&self) -> &graceful::Signal {
        &self.shutdown
    }

    /// The client's address (`None` when the request did not come through
    /// [`http::Server`](crate::http::Server)).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The selected subprotocol, if any (see [`Serve::protocols`]).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The tokio-tungstenite stream underneath, for `Stream`/`Sink` combinators (errors, and
    /// the shutdown: keep a clone of [`shutdown`](Socket::shutdown), are then yours to answer).
    pub fn into_inner(self) -> HyperWebsocketStream {
        self.ws
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
