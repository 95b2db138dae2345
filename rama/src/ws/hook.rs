//! What a [`Relay`](super::Relay) does with each message: the [`Hook`] trait, the
//! [`Direction`] a message travels and the [`Session`] it belongs to.

use super::Message;
use ::http::Uri;
use std::{fmt, net::SocketAddr};

/// Which way a message travels through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the upstream WebSocket server.
    ClientToUpstream,
    /// From the upstream WebSocket server to the client.
    UpstreamToClient,
}

/// One relayed WebSocket session, as a [`Hook`] sees it: who the client is and where the
/// session goes.
#[derive(Debug, Clone)]
pub struct Session {
    peer: Option<SocketAddr>,
    upstream: Uri,
    protocol: Option<String>,
}

/// Looks at every message the relay carries, in order, one direction at a time: observe it,
/// return it changed, or return `None` to drop it.
///
/// Text, binary, ping and pong messages can be dropped. A `Close` is always carried (a hook
/// may change its code or reason; `None` sends it without either), because each side of the
/// relay must see the session end. The pong that answers a relayed ping is consumed by the
/// relay (the side that pinged was already answered) and is not shown to the hook.
///
/// Any `Fn(&Session, Direction, Message) -> Option<Message>` is a hook:
///
/// ```
/// use rama::ws::{Direction, Message, Relay, Session};
///
/// let relay = Relay::requested().hook(|session: &Session, direction: Direction, message: Message| {
///     tracing::info!(peer = ?session.peer_addr(), ?direction, len = message.len(), "ws message");
///     Some(message)
/// });
/// # let _ = relay;
/// ```
pub trait Hook {
    /// Called with each message, before it is sent on.
    fn on_message(
        &self,
        session: &Session,
        direction: Direction,
        message: Message,
    ) -> Option<Message>;
}

/// The hook that carries every message unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

// ===== impl Direction =====

impl Direction {
    /// The other way round.
    pub fn reverse(self) -> Self {
        match self {
            Self::ClientToUpstream => Self::UpstreamToClient,
            Self::UpstreamToClient => Self::ClientToUpstream,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientToUpstream => "client->upstream",
            Self::UpstreamToClient => "upstream->client",
        })
    }
}

// ===== impl Session =====

impl Session {
    pub(super) fn new(peer: Option<SocketAddr>, upstream: Uri, protocol: Option<String>) -> Self {
        Self {
            peer,
            upstream,
            protocol,
        }
    }

    /// The client's address (`None` when the request did not come through
    /// [`http::Server`](crate::http::Server)).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The upstream's WebSocket URL (`ws://` or `wss://`, with the path and query).
    pub fn upstream(&self) -> &Uri {
        &self.upstream
    }

    /// The subprotocol the upstream selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

// ===== impl Hook =====

impl Hook for PassThrough {
    fn on_message(&self, _: &Session, _: Direction, message: Message) -> Option<Message> {
        Some(message)
    }
}

impl<F> Hook for F
where
    F: Fn(&Session, Direction, Message) -> Option<Message>,
{
    fn on_message(
        &self,
        session: &Session,
        direction: Direction,
        message: Message,
    ) -> Option<Message> {
        self(session, direction, message)
    }
}
