//! [`Acceptor`]: the stage that terminates TLS over any byte stream.
//!
//! # Readiness and calls
//!
//! The handshake comes between the connection arriving and the call of the next stage, and
//! rama never clones that stage. [`AcceptorService`] therefore keeps it in a shared,
//! ready-aware cell (see `ARCHITECTURE.md`, TLS): its own `poll_ready` asks the next stage
//! (so a limit behind TLS still stops the accept loop while it is full), and each
//! connection's future, once its handshake is done, waits for the next stage to be ready
//! again and calls it. `poll_ready` reserves nothing of its own.

pub mod future;

use self::future::ResponseFuture;
use super::{Error, dev, pem, provider};
use crate::shared::Shared;
use crate::{BoxError, Conn, stage};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::{ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tower::{Layer, Service};

/// How long a handshake may take unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS termination stage (shorthand `tls(config)`): a tower [`Layer`] whose service runs
/// the server side of a TLS handshake on each connection and hands the next stage a
/// [`Conn`] of a [`TlsStream`], with [`ServerName`](super::ServerName),
/// [`Alpn`](super::Alpn) and [`PeerIdentity`](super::PeerIdentity) recorded.
///
/// Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

/// Builds an [`Acceptor`] from PEM: a default certificate, more chosen by SNI, ALPN, and
/// client certificates (mutual TLS).
#[derive(Default)]
pub struct AcceptorBuilder {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
    alpn: Vec<Vec<u8>>,
    client_roots: Option<RootCertStore>,
    client_optional: bool,
    no_resumption: bool,
    handshake_timeout: Option<Duration>,
}

/// The service of [`Acceptor`]: see the [module docs](self) for its readiness.
pub struct AcceptorService<S> {
    inner: Shared<S>,
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
}

/// Chooses the certificate by the client's SNI, falling back on the default.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

// ===== impl Acceptor =====

impl Acceptor {
    /// Serves with a rustls configuration you built (its certificates, ALPN and client
    /// verification as they are). Build it on [`tls::provider()`](super::provider) to stay
    /// on rama's crypto provider.
    pub fn new(config: impl Into<Arc<ServerConfig>>) -> Self {
        Self {
            config: config.into(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A builder for PEM certificates, SNI, ALPN and mutual TLS.
    pub fn builder() -> AcceptorBuilder {
        AcceptorBuilder::default()
    }

    /// Serves one certificate chain (`cert`, PEM, end-entity first) with its key (`key`,
    /// PEM: PKCS#8, PKCS#1 or SEC1) to every client.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().cert_pem_files(cert, key)?.build()
    }

    /// Serves a development certificate for `localhost` and `127.0.0.1`, signed by a CA
    /// generated for this process and written to a temporary file so that clients can trust
    /// it (`curl --cacert FILE`); both are logged. What a bare `tls` in a diagram means.
    ///
    /// Generated once per process: every call (one per core with
    /// [`PerCore`](crate::tcp::PerCore)) serves the same certificate.
    pub fn dev() -> Result<Self, Error> {
        static DEV: Mutex<Option<Acceptor>> = Mutex::new(None);
        let mut dev = DEV.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(acceptor) = dev.as_ref() {
            return Ok(acceptor.clone());
        }
        let ca = dev::Ca::generate("rama development CA")?;
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let path = std::env::temp_dir().join(format!("rama-dev-ca-{}.pem", std::process::id()));
        match std::fs::write(&path, ca.cert_pem()) {
            Ok(()) => {
                remove_at_exit(&path);
                tracing::info!(
                ca = %path.display(),
                    "tls: serving a development certificate for localhost and 127.0.0.1; \
                     trust it with `curl --cacert {}`",
                    path.display()
                );
            }
            Err(error) => tracing::info!(
                %error,
                "tls: serving a development certificate for localhost and 127.0.0.1 \
                 (its CA could not be written; use `curl -k`)"
            ),
        }
        let acceptor = Self::builder()
            .cert_pem(leaf.cert_pem().as_bytes(), leaf.key_pem().as_bytes())?
            .build()?;
        *dev = Some(acceptor.clone());
        Ok(acceptor)
    }

    /// Bounds each handshake (default [`DEFAULT_HANDSHAKE_TIMEOUT`]); a client that has not
    /// finished by then is disconnected.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

impl From<ServerConfig> for Acceptor {
    fn from(config: ServerConfig) -> Self {
        Self::new(config)
    }
}

impl From<Arc<ServerConfig>> for Acceptor {
    fn from(config: Arc<ServerConfig>) -> Self {
        Self::new(config)
    }
}

impl<S> Layer<S> for Acceptor {
    type Service = AcceptorService<S>;

    fn layer(&self, inner: S) -> AcceptorService<S> {
        AcceptorService {
            inner: Shared::new(inner),
            config: self.config.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }
}

impl stage::Stage for Acceptor {
    type Takes = stage::kind::ByteStream;
    type HandsOn = stage::kind::ByteStream;
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("alpn", &self.config.alpn_protocols.len())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

// ===== impl AcceptorBuilder =====

impl AcceptorBuilder {
    /// The default certificate chain and key, from PEM files: served when the client sends
    /// no SNI or a name without a certificate of its own.
    pub fn cert_pem_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (chain, key) = pem::cert_and_key_files(cert.as_ref(), key.as_ref())?;
        self.cert_der(chain, key)
    }

    /// The default certificate chain and key, from PEM text.
    pub fn cert_pem(self, cert: &[u8], key: &[u8]) -> Result<Self, Error> {
        self.cert_der(pem::certs(cert)?, pem::key(key)?)
    }

    /// The default certificate chain (end-entity first) and key, in DER.
    pub fn cert_der(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        self.default = Some(certified(chain, key)?);
        Ok(self)
    }

    /// The certificate served to clients asking for `name` through SNI, from PEM files.
    /// `name` may be a wildcard (`*.example.com`, one label).
    pub fn cert_pem_files_for(
        self,
        name: &str,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (chain, key) = pem::cert_and_key_files(cert.as_ref(), key.as_ref())?;
        self.cert_der_for(name, chain, key)
    }

    /// The certificate served for `name`, from PEM text.
    pub fn cert_pem_for(self, name: &str, cert: &[u8], key: &[u8]) -> Result<Self, Error> {
        self.cert_der_for(name, pem::certs(cert)?, pem::key(key)?)
    }

    /// The certificate served for `name`, in DER.
    pub fn cert_der_for(
        mut self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        self.by_name
            .insert(name.to_ascii_lowercase(), certified(chain, key)?);
        Ok(self)
    }

    /// The application protocols offered through ALPN, most preferred first (`["h2",
    /// "http/1.1"]`). The one negotiated is recorded as [`Alpn`](super::Alpn). Offer only what
    /// the stages behind can speak.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Requires a client certificate signed by a CA in the PEM file `ca` (mutual TLS); the
    /// verified identity is recorded as [`PeerIdentity`](super::PeerIdentity).
    pub fn client_ca_pem_file(self, ca: impl AsRef<Path>) -> Result<Self, Error> {
        self.client_ca_pem(&pem::read(ca.as_ref())?)
    }

    /// Requires a client certificate signed by a CA in `pem`.
    pub fn client_ca_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let roots = self.client_roots.get_or_insert_with(RootCertStore::empty);
        for cert in pem::certs(pem)? {
            roots.add(cert).map_err(Error::rustls)?;
        }
        Ok(self)
    }

    /// With a client CA: also accept clients that send no certificate (they get no
    /// [`PeerIdentity`](super::PeerIdentity)); a certificate that is sent must still verify.
    pub fn client_auth_optional(mut self) -> Self {
        self.client_optional = true;
        self
    }

    /// Bounds each handshake (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Turns session resumption off: no tickets (TLS 1.2 or 1.3) and no session-ID cache, so
    /// every client does a full handshake. By default a returning client resumes (see
    /// [`build`](Self::build)); this is for measuring the full handshake, or for a policy
    /// that wants fresh keys on every connection.
    pub fn without_resumption(mut self) -> Self {
        self.no_resumption = true;
        self
    }

    /// The acceptor; fails without any certificate.
    ///
    /// Unless [`without_resumption`](Self::without_resumption) was called, returning clients
    /// resume: stateless tickets (TLS 1.2 and 1.3) under a key generated for this acceptor and
    /// rotated by rustls, and a session-ID cache for TLS 1.2 clients without tickets.
    pub fn build(self) -> Result<Acceptor, Error> {
        if self.default.is_none() && self.by_name.is_empty() {
            return Err(Error::no_certificate());
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::rustls)?;
        let builder = match self.client_roots {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = match self.client_optional {
                    true => verifier.allow_unauthenticated(),
                    false => verifier,
                };
                builder.with_client_cert_verifier(verifier.build().map_err(Error::client_verifier)?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniResolver {
            by_name: self.by_name,
            default: self.default,
        }));
        config.alpn_protocols = self.alpn;
        if self.no_resumption {
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        } else {
            // Stateless resumption tickets (TLS 1.2 and 1.3), keyed per process and rotated by
            // rustls: a returning client skips the full handshake on whichever core it lands,
            // as with nginx's and haproxy's defaults. rustls' session-ID cache stays on for
            // TLS 1.2 clients without ticket support.
            config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(Error::rustls)?;
        }
        let acceptor = Acceptor::new(config);
        Ok(match self.handshake_timeout {
            Some(timeout) => acceptor.handshake_timeout(timeout),
            None => acceptor,
        })
    }
}

impl fmt::Debug for AcceptorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptorBuilder")
            .field("default", &self.default.is_some())
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("client_auth", &self.client_roots.is_some())
            .finish_non_exhaustive()
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, Error> {
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(Error::rustls)
}

// ===== impl SniResolver =====

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        by_name.or(self.default.as_ref()).cloned()
    }
}

// ===== impl AcceptorService =====

impl<S> AcceptorService<S> {
    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
}

impl<S, IO> Service<Conn<IO>> for AcceptorService<S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Conn<TlsStream<IO>>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<IO, S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, conn: Conn<IO>) -> Self::Future {
        let (stream, info) = conn.into_parts();
        let accept = tokio_rustls::TlsAcceptor::from(self.config.clone()).accept(stream);
        ResponseFuture::new(accept, info, self.handshake_timeout, self.inner.clone())
    }
}

/// Clones share the next stage (they do not clone it) and reserve nothing.
impl<S> Clone for AcceptorService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }
}

impl<S> fmt::Debug for AcceptorService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptorService")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Removes the development CA's file when the process exits (returning from `main`, or
/// `exit`): one was left in the temporary directory per process before. A process killed
/// by a signal it does not handle still leaves it.
#[cfg(unix)]
#[allow(unsafe_code)]
fn remove_at_exit(path: &Path) {
    static PATH: Mutex<Option<std::ffi::CString>> = Mutex::new(None);
    extern "C" fn remove() {
        let path = PATH.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = path.as_ref() {
            // SAFETY: a NUL-terminated path that lives in the static until the process ends.
            unsafe { libc::unlink(path.as_ptr()) };
        }
    }
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let mut stored = PATH.lock().unwrap_or_else(PoisonError::into_inner);
    if stored.replace(path).is_none() {
        // SAFETY: `remove` is a plain function that only reads the static above.
        unsafe { libc::atexit(remove) };
    }
}

#[cfg(not(unix))]
fn remove_at_exit(_: &Path) {}
