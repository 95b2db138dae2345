use crate::{Address, tcp::ConnectError};
use std::{error::Error as StdError, fmt, io};

/// Why [`Target`](super::Target) could not carry a connection through.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    NoDestination,
    Connect(ConnectError),
    Relay {
        upstream: Address,
        source: io::Error,
    },
    Answer(io::Error),
    Tls {
        upstream: Address,
        source: crate::tls::HandshakeError,
    },
}

impl Error {
    pub(super) fn no_destination() -> Self {
        Self {
            kind: Kind::NoDestination,
        }
    }

    pub(super) fn connect(error: ConnectError) -> Self {
        Self {
            kind: Kind::Connect(error),
        }
    }

    pub(super) fn relay(upstream: Address, source: io::Error) -> Self {
        Self {
            kind: Kind::Relay { upstream, source },
        }
    }

    pub(super) fn answer(source: io::Error) -> Self {
        Self {
            kind: Kind::Answer(source),
        }
    }

    pub(super) fn tls(upstream: Address, source: crate::tls::HandshakeError) -> Self {
        Self {
            kind: Kind::Tls { upstream, source },
        }
    }

    /// The TLS handshake with the upstream failed (see [`Target::tls`](super::Target::tls)).
    pub fn tls_error(&self) -> Option<&crate::tls::HandshakeError> {
        match &self.kind {
            Kind::Tls { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The upstream could not be dialed; the cause tells why.
    pub fn connect_error(&self) -> Option<&ConnectError> {
        match &self.kind {
            Kind::Connect(error) => Some(error),
            _ => None,
        }
    }

    /// Neither a fixed upstream nor a requested destination was known.
    pub fn is_no_destination(&self) -> bool {
        matches!(self.kind, Kind::NoDestination)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::NoDestination => f.write_str("no destination known for this connection"),
            Kind::Connect(_) => f.write_str("dial failed"),
            Kind::Relay { upstream, .. } => write!(f, "relay to {upstream} failed"),
            Kind::Answer(_) => f.write_str("answering the client failed"),
            Kind::Tls { upstream, .. } => write!(f, "securing the connection to {upstream} failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::NoDestination => None,
            Kind::Connect(error) => Some(error),
            Kind::Relay { source, .. } | Kind::Answer(source) => Some(source),
            Kind::Tls { source, .. } => Some(source),
        }
    }
}
