//! Why an intercepted `CONNECT` tunnel ended badly.

use crate::BoxError;
use std::{error::Error as StdError, fmt, io, time::Duration};

/// Why an intercepted tunnel failed, after its `200`: the client went away before the
/// upgrade, did not speak within the timeout, spoke something other than TLS where that is
/// refused, failed its TLS handshake, or the HTTP served inside (or the plain relay) failed.
///
/// Logged by [`http::Mitm`](crate::http::Mitm) with the peer and the destination; it never
/// reaches another connection.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Upgrade(hyper::Error),
    Read(io::Error),
    Silent(Duration),
    NotTls,
    Handshake(BoxError),
    Serve(BoxError),
    Relay(BoxError),
}

impl Error {
    pub(super) fn upgrade(source: hyper::Error) -> Self {
        Self {
            kind: Kind::Upgrade(source),
        }
    }

    pub(super) fn read(source: io::Error) -> Self {
        Self {
            kind: Kind::Read(source),
        }
    }

    pub(super) fn silent(timeout: Duration) -> Self {
        Self {
            kind: Kind::Silent(timeout),
        }
    }

    pub(super) fn not_tls() -> Self {
        Self { kind: Kind::NotTls }
    }

    /// The TLS stage failed: its handshake (a [`tls::HandshakeError`](crate::tls::HandshakeError)),
    /// or, once the handshake is done, the HTTP served over it.
    pub(super) fn intercepted(source: BoxError) -> Self {
        let kind = match source.is::<crate::tls::HandshakeError>() {
            true => Kind::Handshake(source),
            false => Kind::Serve(source),
        };
        Self { kind }
    }

    pub(super) fn relay(source: BoxError) -> Self {
        Self {
            kind: Kind::Relay(source),
        }
    }

    /// The client's first bytes in the tunnel were not a TLS handshake, and the stage was
    /// told to close such tunnels.
    pub fn is_not_tls(&self) -> bool {
        matches!(self.kind, Kind::NotTls)
    }

    /// The client's TLS handshake failed (it refused the minted certificate, sent no
    /// ClientHello, timed out).
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Handshake(_))
    }

    /// The HTTP served inside the tunnel failed (the client reset it, closed without TLS's
    /// close_notify, sent malformed HTTP).
    pub fn is_serve(&self) -> bool {
        matches!(self.kind, Kind::Serve(_))
    }

    /// The client sent nothing within the handshake timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Silent(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Upgrade(_) => f.write_str("the client went away before the tunnel opened"),
            Kind::Read(_) => f.write_str("reading the tunnel's first bytes failed"),
            Kind::Silent(timeout) => write!(f, "the client sent nothing for {timeout:?}"),
            Kind::NotTls => f.write_str("the client does not speak tls in the tunnel"),
            Kind::Handshake(_) => f.write_str("the client's tls handshake failed"),
            Kind::Serve(_) => f.write_str("serving the intercepted http failed"),
            Kind::Relay(_) => f.write_str("relaying the plain tunnel failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Upgrade(source) => Some(source),
            Kind::Read(source) => Some(source),
            Kind::Handshake(source) | Kind::Serve(source) | Kind::Relay(source) => Some(&**source),
            Kind::Silent(_) | Kind::NotTls => None,
        }
    }
}
