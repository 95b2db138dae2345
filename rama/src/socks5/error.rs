//! Errors of the SOCKS5 server and client.

use super::proto::{client, server};
use crate::{BoxError, tcp::ConnectError};
use std::{error::Error as StdError, fmt, io};

/// Why the [`Server`](super::Server) ended a connection before (or instead of) handing it on.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Handshake(server::Failure),
    Timeout,
    Closed,
    Io(io::Error),
    Auth(BoxError),
    UnsupportedCommand(u8),
    Udp(io::Error),
    Bind(io::Error),
}

/// Why the [`Client`](super::Client) could not open a tunnel through its upstream proxy.
#[derive(Debug)]
pub struct ClientError {
    kind: ClientKind,
}

#[derive(Debug)]
enum ClientKind {
    Dial(ConnectError),
    Handshake(client::Failure),
    Io(io::Error),
    Timeout,
    Answer(io::Error),
    Relay(io::Error),
}

// ===== impl Error =====

impl Error {
    pub(super) fn handshake(failure: server::Failure) -> Self {
        Self {
            kind: Kind::Handshake(failure),
        }
    }

    pub(super) fn timeout() -> Self {
        Self {
            kind: Kind::Timeout,
        }
    }

    pub(super) fn closed() -> Self {
        Self { kind: Kind::Closed }
    }

    pub(super) fn io(error: io::Error) -> Self {
        Self {
            kind: Kind::Io(error),
        }
    }

    pub(super) fn auth(error: BoxError) -> Self {
        Self {
            kind: Kind::Auth(error),
        }
    }

    pub(super) fn unsupported_command(code: u8) -> Self {
        Self {
            kind: Kind::UnsupportedCommand(code),
        }
    }

    pub(super) fn udp(error: io::Error) -> Self {
        Self {
            kind: Kind::Udp(error),
        }
    }

    pub(super) fn bind(error: io::Error) -> Self {
        Self {
            kind: Kind::Bind(error),
        }
    }

    /// The client did not finish the handshake within the handshake timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }

    /// The client sent something that is not a valid SOCKS5 handshake, offered no acceptable
    /// method, failed authentication, or asked for a command this server does not serve.
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake(_) | Kind::UnsupportedCommand(_))
    }

    /// The client failed authentication.
    pub fn is_bad_credentials(&self) -> bool {
        matches!(self.kind, Kind::Handshake(server::Failure::BadCredentials))
    }

    /// The client closed the connection in the middle of the handshake.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Handshake(_) => f.write_str("socks5 handshake failed"),
            Kind::Timeout => f.write_str("socks5 handshake timed out"),
            Kind::Closed => f.write_str("client closed the connection during the socks5 handshake"),
            Kind::Io(_) => f.write_str("socks5 handshake i/o failed"),
            Kind::Auth(_) => f.write_str("socks5 password check failed"),
            Kind::UnsupportedCommand(code) => {
                write!(
                    f,
                    "socks5 command {code:#04x} is not enabled on this server"
                )
            }
            Kind::Udp(_) => f.write_str("socks5 udp association failed"),
            Kind::Bind(_) => f.write_str("socks5 bind failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Handshake(failure) => Some(failure),
            Kind::Io(error) | Kind::Udp(error) | Kind::Bind(error) => Some(error),
            Kind::Auth(error) => Some(&**error),
            Kind::Timeout | Kind::Closed | Kind::UnsupportedCommand(_) => None,
        }
    }
}

// ===== impl ClientError =====

impl ClientError {
    pub(super) fn dial(error: ConnectError) -> Self {
        Self {
            kind: ClientKind::Dial(error),
        }
    }

    pub(super) fn handshake(failure: client::Failure) -> Self {
        Self {
            kind: ClientKind::Handshake(failure),
        }
    }

    pub(super) fn io(error: io::Error) -> Self {
        Self {
            kind: ClientKind::Io(error),
        }
    }

    pub(super) fn timeout() -> Self {
        Self {
            kind: ClientKind::Timeout,
        }
    }

    pub(super) fn answer(error: io::Error) -> Self {
        Self {
            kind: ClientKind::Answer(error),
        }
    }

    pub(super) fn relay(error: io::Error) -> Self {
        Self {
            kind: ClientKind::Relay(error),
        }
    }

    /// What this failure means for a client waiting on rama (the SOCKS5 reply or HTTP status
    /// it gets).
    pub fn refusal(&self) -> crate::tunnel::Refusal {
        use crate::tunnel::Refusal;
        match &self.kind {
            // The upstream proxy itself could not be reached.
            ClientKind::Dial(error) => Refusal::from_connect_error(error),
            ClientKind::Handshake(failure) => failure.refusal(),
            ClientKind::Timeout => Refusal::TimedOut,
            _ => Refusal::Failure,
        }
    }

    /// The upstream proxy could not be dialed.
    pub fn is_dial(&self) -> bool {
        matches!(self.kind, ClientKind::Dial(_))
    }

    /// The upstream proxy answered the request with this error reply code.
    pub fn reply_code(&self) -> Option<u8> {
        match self.kind {
            ClientKind::Handshake(client::Failure::Refused(code)) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ClientKind::Dial(_) => f.write_str("cannot reach the upstream socks5 proxy"),
            ClientKind::Handshake(_) => f.write_str("socks5 upstream refused the tunnel"),
            ClientKind::Io(_) => f.write_str("socks5 upstream handshake i/o failed"),
            ClientKind::Timeout => f.write_str("socks5 upstream handshake timed out"),
            ClientKind::Answer(_) => f.write_str("answering the client failed"),
            ClientKind::Relay(_) => f.write_str("relay through the socks5 upstream failed"),
        }
    }
}

impl StdError for ClientError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            ClientKind::Dial(error) => Some(error),
            ClientKind::Handshake(failure) => Some(failure),
            ClientKind::Io(error) | ClientKind::Answer(error) | ClientKind::Relay(error) => {
                Some(error)
            }
            ClientKind::Timeout => None,
        }
    }
}
