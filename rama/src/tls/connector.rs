use super::{Error, HandshakeError, pem, provider};
use crate::Host;
use pin_project_lite::pin_project;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName},
};
use std::{
    fmt,
    future::Future,
    io,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Sleep,
};
use tokio_rustls::client::TlsStream;

/// How long a client handshake may take unless told otherwise.
pub const DEFAULT_CONNECT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client side of TLS, for upstreams: the roots to trust, ALPN, an optional client
/// certificate. The server name (SNI, and the name the certificate must match) comes from
/// the destination unless [set](Connector::server_name).
///
/// [`Target::tls`](crate::Target::tls) makes `target` originate TLS with it.
///
/// The default roots are the Mozilla set compiled in by `webpki-roots`: the same on every
/// machine and in a bare container without `ca-certificates`. Trust a CA of your own with
/// [`ConnectorBuilder::ca_pem_file`].
///
/// Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

/// Builds a [`Connector`].
#[derive(Default)]
pub struct ConnectorBuilder {
    roots: Option<RootCertStore>,
    alpn: Vec<Vec<u8>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

pin_project! {
    /// The future of [`Connector::connect`]: the client handshake, bounded by its timeout.
    pub struct Connect<S> {
        state: ConnectState<S>,
        timeout: Duration,
        #[pin]
        deadline: Sleep,
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "the large variant is the one that lives; boxing it costs an allocation per handshake"
)]
enum ConnectState<S> {
    Handshake(tokio_rustls::Connect<S>),
    Failed(Option<HandshakeError>),
}

// ===== impl Connector =====

impl Connector {
    /// Connects with a rustls configuration you built (build it on
    /// [`tls::provider()`](super::provider) to stay on rama's crypto provider).
    pub fn new(config: impl Into<Arc<ClientConfig>>) -> Self {
        Self {
            config: config.into(),
            server_name: None,
            handshake_timeout: DEFAULT_CONNECT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A builder for roots, ALPN and a client certificate.
    pub fn builder() -> ConnectorBuilder {
        ConnectorBuilder::default()
    }

    /// Trusts the webpki roots (Mozilla's), no ALPN, no client certificate.
    pub fn webpki_roots() -> Self {
        Self::builder()
            .webpki_roots()
            .build()
            .expect("the webpki roots make a valid configuration")
    }

    /// Trusts only the CA(s) in the PEM file `ca` (the examples' `--upstream-ca`).
    pub fn with_ca_pem_file(ca: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().ca_pem_file(ca)?.build()
    }

    /// Sends `name` as SNI and requires the upstream's certificate to match it, whatever the
    /// destination (dialing by IP address, say, to a server with a name).
    pub fn server_name(mut self, name: &str) -> Result<Self, Error> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|error| Error::server_name(name, error))?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Bounds each handshake (default [`DEFAULT_CONNECT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// A copy that does not offer `h2` through ALPN, when this one does: for a connection
    /// that must be HTTP/1.1 (an upgrade, which HTTP/2 cannot carry), whatever the server
    /// would prefer.
    pub(crate) fn without_h2(&self) -> Option<Self> {
        let h2 = |protocol: &Vec<u8>| protocol.as_slice() == b"h2";
        if !self.config.alpn_protocols.iter().any(h2) {
            return None;
        }
        let mut config = ClientConfig::clone(&self.config);
        config.alpn_protocols.retain(|protocol| !h2(protocol));
        Some(Self {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
            handshake_timeout: self.handshake_timeout,
        })
    }

    /// Runs the client handshake over `stream` to `host` (its name is the SNI and what the
    /// certificate must match, unless [set](Connector::server_name)).
    pub fn connect<S>(&self, host: &Host, stream: S) -> Connect<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match (&self.server_name, host) {
            (Some(name), _) => Ok(name.clone()),
            (None, Host::Ip(ip)) => Ok(ServerName::IpAddress((*ip).into())),
            (None, Host::Name(name)) => ServerName::try_from(name.to_string()).map_err(|error| {
                HandshakeError::io(io::Error::new(io::ErrorKind::InvalidInput, error))
            }),
        };
        let state = match name {
            Ok(name) => ConnectState::Handshake(
                tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, stream),
            ),
            Err(error) => ConnectState::Failed(Some(error)),
        };
        Connect {
            state,
            timeout: self.handshake_timeout,
            deadline: tokio::time::sleep(self.handshake_timeout),
        }
    }
}

impl From<ClientConfig> for Connector {
    fn from(config: ClientConfig) -> Self {
        Self::new(config)
    }
}

impl From<Arc<ClientConfig>> for Connector {
    fn from(config: Arc<ClientConfig>) -> Self {
        Self::new(config)
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

// ===== impl ConnectorBuilder =====

impl ConnectorBuilder {
    /// Trusts the webpki roots (Mozilla's, compiled in).
    pub fn webpki_roots(mut self) -> Self {
        self.roots
            .get_or_insert_with(RootCertStore::empty)
            .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        self
    }

    /// Trusts the CA(s) in the PEM file `ca`.
    pub fn ca_pem_file(self, ca: impl AsRef<Path>) -> Result<Self, Error> {
        self.ca_pem(&pem::read(ca.as_ref())?)
    }

    /// Trusts the CA(s) in `pem`.
    pub fn ca_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let roots = self.roots.get_or_insert_with(RootCertStore::empty);
        for cert in pem::certs(pem)? {
            roots.add(cert).map_err(Error::rustls)?;
        }
        Ok(self)
    }

    /// The application protocols offered through ALPN, most preferred first.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Presents this client certificate (PEM files) to upstreams that ask for one.
    pub fn client_cert_pem_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (chain, key) = pem::cert_and_key_files(cert.as_ref(), key.as_ref())?;
        Ok(self.client_cert_der(chain, key))
    }

    /// Presents this client certificate (PEM text).
    pub fn client_cert_pem(self, cert: &[u8], key: &[u8]) -> Result<Self, Error> {
        Ok(self.client_cert_der(pem::certs(cert)?, pem::key(key)?))
    }

    /// Presents this client certificate chain (end-entity first) and key, in DER.
    pub fn client_cert_der(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_cert = Some((chain, key));
        self
    }

    /// The connector; without any roots configured it trusts the webpki roots.
    pub fn build(self) -> Result<Connector, Error> {
        let this = match self.roots {
            Some(_) => self,
            None => self.webpki_roots(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::rustls)?
            .with_root_certificates(this.roots.unwrap_or_else(RootCertStore::empty));
        let mut config = match this.client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(Error::rustls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = this.alpn;
        Ok(Connector::new(config))
    }
}

impl fmt::Debug for ConnectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorBuilder")
            .field("roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("client_cert", &self.client_cert.is_some())
            .finish_non_exhaustive()
    }
}

// ===== impl Connect =====

impl<S> Future for Connect<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<TlsStream<S>, HandshakeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let handshake = match this.state {
            ConnectState::Handshake(handshake) => handshake,
            ConnectState::Failed(error) => {
                return Poll::Ready(Err(error.take().expect("Connect polled after completion")));
            }
        };
        // Progress first, the deadline second.
        match Pin::new(handshake).poll(cx) {
            Poll::Ready(result) => Poll::Ready(result.map_err(HandshakeError::io)),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(HandshakeError::timeout(*this.timeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S> fmt::Debug for Connect<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
