//! What a TLS handshake teaches the later stages, recorded in the connection's extensions.

use rustls::{CipherSuite, ProtocolVersion, pki_types::CertificateDer};
use std::{fmt, sync::Arc};

/// What a completed handshake settled: the protocol version and the cipher suite. Recorded
/// for every TLS connection (SNI and ALPN are there only when the client sent them), so it
/// alone says that the client came over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    version: ProtocolVersion,
    cipher_suite: CipherSuite,
}

/// The server name the client asked for (SNI), lower-cased by rustls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerName(Arc<str>);

/// The application protocol negotiated through ALPN (`h2`, `http/1.1`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alpn(Arc<[u8]>);

/// The client certificate a mutual-TLS handshake verified against the configured CA.
///
/// The names are read from the verified certificate: its subject common name and its
/// subject-alternative DNS names, e-mail addresses and URIs.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    inner: Arc<Identity>,
}

#[derive(Debug)]
struct Identity {
    common_name: Option<String>,
    alt_names: Vec<String>,
    chain: Vec<CertificateDer<'static>>,
}

// ===== impl Negotiated =====

impl Negotiated {
    /// What a handshake settled.
    pub fn new(version: ProtocolVersion, cipher_suite: CipherSuite) -> Self {
        Self {
            version,
            cipher_suite,
        }
    }

    /// The protocol version (TLS 1.2 or 1.3).
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The cipher suite.
    pub fn cipher_suite(&self) -> CipherSuite {
        self.cipher_suite
    }
}

// ===== impl ServerName =====

impl ServerName {
    /// A server name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ===== impl Alpn =====

impl Alpn {
    /// HTTP/2's protocol id.
    pub const H2: &'static [u8] = b"h2";
    /// HTTP/1.1's protocol id.
    pub const HTTP_11: &'static [u8] = b"http/1.1";

    /// A negotiated protocol id.
    pub fn new(protocol: impl Into<Arc<[u8]>>) -> Self {
        Self(protocol.into())
    }

    /// The protocol id, as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the protocol is HTTP/2.
    pub fn is_h2(&self) -> bool {
        &*self.0 == Self::H2
    }
}

impl fmt::Display for Alpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

// ===== impl PeerIdentity =====

impl PeerIdentity {
    /// The identity of a verified chain (end-entity certificate first). Names that cannot be
    /// parsed are left out; the chain is kept as it is.
    pub fn from_chain(chain: Vec<CertificateDer<'static>>) -> Self {
        let (common_name, alt_names) = chain.first().map(|leaf| names(leaf)).unwrap_or_default();
        Self {
            inner: Arc::new(Identity {
                common_name,
                alt_names,
                chain,
            }),
        }
    }

    /// The subject's common name (`CN=`), if it has one.
    pub fn common_name(&self) -> Option<&str> {
        self.inner.common_name.as_deref()
    }

    /// The subject-alternative DNS names, e-mail addresses and URIs.
    pub fn alt_names(&self) -> &[String] {
        &self.inner.alt_names
    }

    /// The verified chain as the client sent it, end-entity certificate first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }
}

impl fmt::Display for PeerIdentity {
    /// The common name, or else the first alternative name, or `unnamed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .common_name()
            .or_else(|| self.alt_names().first().map(String::as_str));
        f.write_str(name.unwrap_or("unnamed"))
    }
}

/// The subject common name and alternative names of a DER certificate.
fn names(der: &CertificateDer<'_>) -> (Option<String>, Vec<String>) {
    use x509_parser::{extensions::GeneralName, prelude::FromDer};
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return (None, Vec::new());
    };
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let alt_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (common_name, alt_names)
}
