//! The errors of the TLS stages.

use std::{error::Error as StdError, fmt, io, path::PathBuf};

/// Why a TLS configuration (an [`Acceptor`](super::Acceptor), a
/// [`Connector`](super::Connector), a [development certificate](super::dev)) could not be
/// built: a file that cannot be read, PEM without the expected item, a key rustls rejects.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Write {
        path: PathBuf,
        source: io::Error,
    },
    Pem {
        what: &'static str,
        source: Option<BoxSource>,
    },
    Rustls(rustls::Error),
    ClientVerifier(rustls::server::VerifierBuilderError),
    Generate(rcgen::Error),
    NoCertificate,
    ServerName {
        name: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

type BoxSource = Box<dyn StdError + Send + Sync + 'static>;

/// Why a TLS handshake did not complete: the peer's bytes were not TLS, the peer or rustls
/// aborted (a certificate it does not trust, no shared protocol), the stream failed, or the
/// handshake took longer than its timeout.
#[derive(Debug)]
pub struct HandshakeError {
    kind: HandshakeKind,
}

#[derive(Debug)]
enum HandshakeKind {
    Timeout(std::time::Duration),
    Io(io::Error),
}

// ===== impl Error =====

impl Error {
    pub(super) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self {
            kind: Kind::Read {
                path: path.into(),
                source,
            },
        }
    }

    pub(super) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self {
            kind: Kind::Write {
                path: path.into(),
                source,
            },
        }
    }

    pub(super) fn pem(what: &'static str, source: Option<BoxSource>) -> Self {
        Self {
            kind: Kind::Pem { what, source },
        }
    }

    pub(super) fn rustls(source: rustls::Error) -> Self {
        Self {
            kind: Kind::Rustls(source),
        }
    }

    pub(super) fn client_verifier(source: rustls::server::VerifierBuilderError) -> Self {
        Self {
            kind: Kind::ClientVerifier(source),
        }
    }

    pub(super) fn generate(source: rcgen::Error) -> Self {
        Self {
            kind: Kind::Generate(source),
        }
    }

    pub(super) fn no_certificate() -> Self {
        Self {
            kind: Kind::NoCertificate,
        }
    }

    pub(super) fn server_name(name: &str, source: rustls::pki_types::InvalidDnsNameError) -> Self {
        Self {
            kind: Kind::ServerName {
                name: name.to_owned(),
                source,
            },
        }
    }

    /// A file could not be read or written; the cause is the I/O error.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Read { .. } | Kind::Write { .. })
    }
}

impl From<rcgen::Error> for Error {
    fn from(source: rcgen::Error) -> Self {
        Self::generate(source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Read { path, .. } => write!(f, "cannot read {}", path.display()),
            Kind::Write { path, .. } => write!(f, "cannot write {}", path.display()),
            Kind::Pem { what, .. } => write!(f, "no usable {what} in the PEM input"),
            Kind::Rustls(_) => f.write_str("rustls rejected the configuration"),
            Kind::ClientVerifier(_) => f.write_str("cannot verify client certificates"),
            Kind::Generate(_) => f.write_str("cannot generate a certificate"),
            Kind::NoCertificate => f.write_str("no certificate configured"),
            Kind::ServerName { name, .. } => write!(f, "`{name}` is not a valid server name"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::Read { source, .. } | Kind::Write { source, .. } => Some(source),
            Kind::Pem { source, .. } => source.as_deref().map(|e| e as _),
            Kind::Rustls(source) => Some(source),
            Kind::ClientVerifier(source) => Some(source),
            Kind::Generate(source) => Some(source),
            Kind::ServerName { source, .. } => Some(source),
            Kind::NoCertificate => None,
        }
    }
}

// ===== impl HandshakeError =====

impl HandshakeError {
    pub(super) fn timeout(after: std::time::Duration) -> Self {
        Self {
            kind: HandshakeKind::Timeout(after),
        }
    }

    pub(super) fn io(source: io::Error) -> Self {
        Self {
            kind: HandshakeKind::Io(source),
        }
    }

    /// The handshake did not finish within its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, HandshakeKind::Timeout(_))
    }

    /// The TLS error that ended the handshake, when rustls reported one (bad record, a
    /// certificate not trusted, no shared protocol version...).
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match &self.kind {
            HandshakeKind::Io(error) => error.get_ref()?.downcast_ref(),
            HandshakeKind::Timeout(_) => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HandshakeKind::Timeout(after) => write!(f, "tls handshake timed out after {after:?}"),
            HandshakeKind::Io(_) => f.write_str("tls handshake failed"),
        }
    }
}

impl StdError for HandshakeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            HandshakeKind::Timeout(_) => None,
            HandshakeKind::Io(source) => Some(source),
        }
    }
}
