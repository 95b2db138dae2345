//! The errors of the WebSocket stages.

use std::{error::Error as StdError, fmt};

/// [`Relay::to`](super::Relay::to) was given something that is not a
/// `ws://host[:port][/path]` or `wss://` URL.
#[derive(Debug)]
pub struct BadUpstream {
    upstream: String,
    reason: &'static str,
}

/// Why the relay could not open the upstream WebSocket: dialing, TLS, the HTTP exchange or the
/// handshake's answer. The client is answered `502` (`504` on timeout) and the error is logged
/// with its peer.
#[derive(Debug)]
pub struct UpstreamError {
    kind: Kind,
    source: Option<crate::BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Tls,
    Http,
    Handshake(&'static str),
    Timeout,
}

/// A WebSocket session failed: the peer broke the protocol, sent an oversized message or
/// went away, or writing to it failed; or the server is shutting down and the session was
/// closed with `1001` ([`is_shutdown`](SessionError::is_shutdown)).
#[derive(Debug)]
pub struct SessionError {
    /// `None` when the session was closed for the server's shutdown.
    source: Option<hyper_tungstenite::tungstenite::Error>,
}

// ===== impl BadUpstream =====

impl BadUpstream {
    pub(super) fn new(upstream: &str, reason: &'static str) -> Self {
        Self {
            upstream: upstream.to_owned(),
            reason,
        }
    }
}

impl fmt::Display for BadUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad websocket upstream `{}`: {}",
            self.upstream, self.reason
        )
    }
}

impl StdError for BadUpstream {}

// ===== impl UpstreamError =====

impl UpstreamError {
    pub(super) fn connect(source: impl Into<crate::BoxError>) -> Self {
        Self {
            kind: Kind::Connect,
            source: Some(source.into()),
        }
    }

    /// The handshake with a `wss://` upstream failed; one that timed out is a timeout
    /// (`504`, as a dial that timed out is).
    pub(super) fn tls(source: crate::tls::HandshakeError) -> Self {
        let kind = if source.is_timeout() {
            Kind::Timeout
        } else {
            Kind::Tls
        };
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    pub(super) fn http(source: impl Into<crate::BoxError>) -> Self {
        Self {
            kind: Kind::Http,
            source: Some(source.into()),
        }
    }

    pub(super) fn handshake(reason: &'static str) -> Self {
        Self {
            kind: Kind::Handshake(reason),
            source: None,
        }
    }

    pub(super) fn timeout() -> Self {
        Self {
            kind: Kind::Timeout,
            source: None,
        }
    }

    /// Whether dialing the upstream failed (resolving or connecting).
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// Whether the TLS handshake with a `wss://` upstream failed (its certificate, say).
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// Whether the upstream's answer to the upgrade was not a valid WebSocket handshake.
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake(_))
    }

    /// Whether opening the upstream took longer than the relay's connect timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Connect => f.write_str("cannot connect to the websocket upstream"),
            Kind::Tls => f.write_str("tls handshake with the websocket upstream failed"),
            Kind::Http => f.write_str("the upgrade request to the websocket upstream failed"),
            Kind::Handshake(reason) => {
                write!(f, "bad websocket handshake from the upstream: {reason}")
            }
            Kind::Timeout => f.write_str("the websocket upstream took too long to open"),
        }
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

// ===== impl SessionError =====

impl SessionError {
    pub(super) fn new(source: hyper_tungstenite::tungstenite::Error) -> Self {
        Self {
            source: Some(source),
        }
    }

    pub(super) fn shutdown() -> Self {
        Self { source: None }
    }

    /// Whether the session had already ended (closed, failed, or closed for the server's
    /// shutdown) when this was tried.
    pub fn is_closed(&self) -> bool {
        use hyper_tungstenite::tungstenite::Error;
        matches!(
            self.source,
            None | Some(Error::ConnectionClosed | Error::AlreadyClosed)
        )
    }

    /// Whether the server is shutting down: the session was closed with `1001` and takes no
    /// more messages.
    pub fn is_shutdown(&self) -> bool {
        self.source.is_none()
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Some(_) => f.write_str("websocket session failed"),
            None => f.write_str("websocket session closed: the server is shutting down"),
        }
    }
}

impl StdError for SessionError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}
