//! The interception CA behind [`http::Mitm`](crate::http::Mitm): a certificate authority the
//! user's clients trust, and leaf certificates minted from it per host on first use.
//!
//! ```
//! use rama::tls::intercept::Authority;
//!
//! # fn main() -> Result<(), rama::tls::Error> {
//! # let dir = std::env::temp_dir().join(format!("rama-intercept-doc-{}", std::process::id()));
//! // ca.pem and ca.key in `dir`: loaded when they exist, generated (key mode 0600) otherwise.
//! let authority = Authority::load_or_create(&dir)?;
//! let leaf = authority.certificate("example.com")?; // minted once, then cached
//! assert!(std::sync::Arc::ptr_eq(&leaf, &authority.certificate("example.com")?));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(())
//! # }
//! ```
//!
//! # Minting
//!
//! A leaf is valid for exactly the name the client asked for (a DNS name, or an IP address as
//! an IP SAN), for [`LEAF_VALIDITY`] from a day ago, and is signed by the CA. Every leaf
//! shares one key pair generated when the authority is made, so minting costs one signature
//! and no key generation (what mitmproxy does too); each leaf gets its own serial number,
//! since clients refuse two certificates with the same issuer and serial.
//!
//! Leaves are kept in a bounded least-recently-used cache ([`DEFAULT_CACHE_CAPACITY`]): a
//! host costs one signature while it stays in the cache, and clients that ask for the same new
//! host at once wait for one mint. A leaf cached for 300 days is minted again, so a process
//! that runs for years never serves an expired one.

use super::{Error, dev::Ca, provider};
use crate::error::Chain;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, SerialNumber,
};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::{CertifiedKey, SigningKey},
};
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Write as _,
    path::Path,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How many minted leaves an [`Authority`] keeps unless told otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// How long a minted leaf is valid (from a day before it was minted): under the 398 days
/// clients accept for a leaf.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(397 * 24 * 60 * 60);

/// The common name of a CA that [`Authority::generate`] and
/// [`load_or_create`](Authority::load_or_create) make.
pub const DEFAULT_CA_NAME: &str = "rama interception CA";

/// An interception CA: signs a leaf for each host on first use and caches it. See the
/// [module docs](self).
///
/// Share it with an `Arc`: every [`Resolver`] and every core uses the same cache.
pub struct Authority {
    ca: Ca,
    /// The one key pair of every leaf, and the same key as rustls signs with.
    leaf_key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    cache: Mutex<Cache>,
    serial: AtomicU64,
}

/// A rustls certificate resolver that mints: the certificate for the client's SNI, or for
/// `fallback` (the host the client asked the proxy for) when the ClientHello has no SNI, as
/// clients do for IP addresses.
pub struct Resolver {
    authority: Arc<Authority>,
    fallback: Option<Box<str>>,
}

/// A leaf being minted or minted (with when): clients that ask for the same new host at once
/// share it.
type Slot = Arc<OnceLock<Option<(Arc<CertifiedKey>, Instant)>>>;

/// How long a cached leaf is served: well inside its validity, so that a process running
/// for longer than [`LEAF_VALIDITY`] mints a fresh one instead of serving an expired one.
const LEAF_REUSE: Duration = Duration::from_secs(300 * 24 * 60 * 60);

/// The least-recently-used cache of minted leaves, by lower-case host.
struct Cache {
    capacity: usize,
    clock: u64,
    entries: HashMap<Box<str>, Entry>,
    /// Last use → host: the first entry is the one to evict.
    by_use: BTreeMap<u64, Box<str>>,
}

struct Entry {
    slot: Slot,
    used: u64,
}

// ===== impl Authority =====

impl Authority {
    /// A new CA named `name` (its subject common name), held in memory only; write it with
    /// [`write`](Self::write) so that clients can trust it.
    pub fn generate(name: &str) -> Result<Self, Error> {
        Self::from_ca(Ca::generate(name)?)
    }

    /// A CA loaded from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        Self::from_ca(Ca::from_pem(cert_pem, key_pem)?)
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, or, when `ca.pem` does not exist, generates a
    /// CA ([`DEFAULT_CA_NAME`]) and writes them there (see [`write`](Self::write)).
    pub fn load_or_create(dir: &Path) -> Result<Self, Error> {
        if dir.join("ca.pem").exists() {
            return Self::from_ca(Ca::load_or_create(dir, DEFAULT_CA_NAME)?);
        }
        let authority = Self::generate(DEFAULT_CA_NAME)?;
        authority.write(dir)?;
        Ok(authority)
    }

    fn from_ca(ca: Ca) -> Result<Self, Error> {
        let leaf_key = KeyPair::generate()?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = provider()
            .key_provider
            .load_private_key(der)
            .map_err(Error::rustls)?;
        Ok(Self {
            ca,
            leaf_key,
            signing_key,
            cache: Mutex::new(Cache::new(DEFAULT_CACHE_CAPACITY)),
            serial: AtomicU64::new(0),
        })
    }

    /// Keeps at most `capacity` leaves (at least one; default [`DEFAULT_CACHE_CAPACITY`]),
    /// evicting the least recently used. Leaves already minted are dropped.
    pub fn cache_capacity(self, capacity: usize) -> Self {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Cache::new(capacity);
        self
    }

    /// The CA certificate, PEM: what clients trust (`curl --cacert`, `--proxy-cacert`).
    pub fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Writes `ca.pem` and `ca.key` into `dir` (created if need be). The key file is created
    /// with mode 0600 (owner only) before any byte is written, and must not exist yet.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|error| Error::write(dir, error))?;
        let key = dir.join("ca.key");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&key)
            .and_then(|mut file| file.write_all(self.ca.key_pem().as_bytes()))
            .map_err(|error| Error::write(&key, error))?;
        let cert = dir.join("ca.pem");
        std::fs::write(&cert, self.cert_pem()).map_err(|error| Error::write(&cert, error))
    }

    /// The leaf for `host` (a DNS name or an IP address; case does not matter): from the
    /// cache, or minted now. Callers asking for the same new host at once wait for one mint.
    pub fn certificate(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        let host = host.to_ascii_lowercase();
        let slot = self.lock().slot(&host);
        let mut failure = None;
        let minted = slot.get_or_init(|| match self.mint(&host) {
            Ok(leaf) => Some((leaf, Instant::now())),
            Err(error) => {
                failure = Some(error);
                None
            }
        });
        match minted {
            Some((leaf, at)) if at.elapsed() < LEAF_REUSE => return Ok(leaf.clone()),
            // Old: replaced by a fresh mint in a fresh slot.
            Some(_) => {
                self.lock().forget(&host, &slot);
                return self.certificate(&host);
            }
            None => {}
        }
        // A failed mint is not cached: the next client tries again.
        self.lock().forget(&host, &slot);
        match failure {
            Some(error) => Err(error),
            // Someone else's attempt failed while this caller waited: try once for itself.
            None => self.mint(&host),
        }
    }

    /// How many leaves the cache holds.
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mint(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let mut params = CertificateParams::new(vec![bare.to_owned()])?;
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, bare);
        params.distinguished_name = subject;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        super::dev::leaf_usages(&mut params);
        params.serial_number = Some(self.next_serial());
        super::dev::valid_for(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&self.leaf_key, self.ca.issuer())?;
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        tracing::debug!(host = bare, "tls: minted a certificate");
        Ok(Arc::new(CertifiedKey::new(chain, self.signing_key.clone())))
    }

    /// A serial number unique to this leaf: the time in nanoseconds (unique across runs with
    /// the same CA) and a counter (unique within the run), positive.
    fn next_serial(&self) -> SerialNumber {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let count = self.serial.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..].copy_from_slice(&count.to_be_bytes());
        bytes[0] &= 0x7f;
        SerialNumber::from_slice(&bytes)
    }

    /// The rustls configuration of the intercepting side: minted certificates (SNI, else
    /// `fallback`), ALPN `h2` and `http/1.1`, resumption tickets.
    pub fn server_config(self: &Arc<Self>, fallback: Option<&str>) -> Result<ServerConfig, Error> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::rustls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver::new(self.clone(), fallback)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(Error::rustls)?;
        Ok(config)
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

// ===== impl Resolver =====

impl Resolver {
    /// Mints from `authority`; `fallback` names the certificate for clients without SNI.
    pub fn new(authority: Arc<Authority>, fallback: Option<&str>) -> Self {
        Self {
            authority,
            fallback: fallback.map(Into::into),
        }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name().or(self.fallback.as_deref())?;
        match self.authority.certificate(host) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                // The handshake then fails and is logged with the peer by the stage.
                tracing::warn!(host, error = %Chain(&error), "tls: cannot mint a certificate");
                None
            }
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

// ===== impl Cache =====

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// The slot for `host`, marked as used now; a new one (evicting the least recently used
    /// when full) if the host is not cached.
    fn slot(&mut self, host: &str) -> Slot {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.entries.get_mut(host) {
            if let Some(key) = self.by_use.remove(&entry.used) {
                self.by_use.insert(now, key);
            }
            entry.used = now;
            return entry.slot.clone();
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let slot = Slot::default();
        self.entries.insert(
            host.into(),
            Entry {
                slot: slot.clone(),
                used: now,
            },
        );
        self.by_use.insert(now, host.into());
        slot
    }

    /// Drops `host`'s entry if it is still `slot` (a failed mint).
    fn forget(&mut self, host: &str, slot: &Slot) {
        if let Some(entry) = self.entries.get(host)
            && Arc::ptr_eq(&entry.slot, slot)
        {
            let used = entry.used;
            self.entries.remove(host);
            self.by_use.remove(&used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS handshake over an in-memory pipe: the client trusts only `authority`'s CA and
    /// asks for `name` (an IP address is not sent as SNI, as with every client).
    async fn handshake(authority: &Arc<Authority>, name: &str, fallback: Option<&str>) {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pki_types_certs(authority.cert_pem()) {
            roots.add(cert).unwrap();
        }
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = authority.server_config(fallback).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(b)
                .await?;
            tls.write_all(b"hi").await?;
            tls.shutdown().await
        });
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, a)
            .await
            .expect("the client accepts the minted certificate");
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hi");
        server.await.unwrap().unwrap();
    }

    fn rustls_pki_types_certs(pem: &str) -> Vec<CertificateDer<'static>> {
        crate::tls::pem::certs(pem.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn a_minted_leaf_verifies_for_a_name_and_for_an_ip_without_sni() {
        let authority = Arc::new(Authority::generate("test CA").unwrap());
        handshake(&authority, "example.test", None).await;
        handshake(&authority, "127.0.0.1", Some("127.0.0.1")).await;
        handshake(&authority, "::1", Some("[::1]")).await;
        assert_eq!(authority.cached(), 3);
    }

    #[test]
    fn leaves_sign_only_and_nothing_is_valid_for_centuries() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let authority = Authority::generate("test CA").unwrap();
        let minted = authority.certificate("a.test").unwrap();
        let issued = super::super::dev::Ca::generate("dev CA")
            .unwrap()
            .issue_server(&["localhost"])
            .unwrap();
        let issued = crate::tls::pem::certs(issued.cert_pem().as_bytes()).unwrap();
        let ca = rustls_pki_types_certs(authority.cert_pem());
        let now = x509_parser::time::ASN1Time::now().timestamp();
        let days =
            |cert: &X509Certificate<'_>| (cert.validity().not_after.timestamp() - now) / 86_400;
        for leaf in [&minted.cert[0], &issued[0]] {
            let (_, leaf) = X509Certificate::from_der(leaf).unwrap();
            let usage = leaf.key_usage().unwrap().expect("a key usage").value;
            // An ECDSA key: RFC 5480 3 forbids keyEncipherment.
            assert!(usage.digital_signature() && !usage.key_encipherment());
            assert!((396..=397).contains(&days(&leaf)), "{}", days(&leaf));
        }
        let (_, ca) = X509Certificate::from_der(&ca[0]).unwrap();
        assert!((3649..=3650).contains(&days(&ca)), "{}", days(&ca));
        assert!(ca.validity().not_before.timestamp() <= now - 86_000);
    }

    #[test]
    fn leaves_are_cached_per_host_and_get_distinct_serials() {
        let authority = Authority::generate("test CA").unwrap();
        let a = authority.certificate("a.test").unwrap();
        assert!(Arc::ptr_eq(&a, &authority.certificate("A.TEST").unwrap()));
        let b = authority.certificate("b.test").unwrap();
        let serial = |leaf: &CertifiedKey| {
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
            cert.raw_serial().to_vec()
        };
        assert_ne!(serial(&a), serial(&b));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let authority = Authority::generate("test CA").unwrap().cache_capacity(2);
        let a = authority.certificate("a.test").unwrap();
        authority.certificate("b.test").unwrap();
        // `a` is used again, so `b` is the one to go.
        authority.certificate("a.test").unwrap();
        authority.certificate("c.test").unwrap();
        assert_eq!(authority.cached(), 2);
        assert!(Arc::ptr_eq(&a, &authority.certificate("a.test").unwrap()));
        let cache = authority.lock();
        assert!(cache.entries.contains_key("c.test"));
        assert!(!cache.entries.contains_key("b.test"));
        assert_eq!(cache.by_use.len(), 2);
    }

    #[test]
    fn concurrent_first_uses_of_a_host_mint_once() {
        let authority = Arc::new(Authority::generate("test CA").unwrap());
        let leaves: Vec<_> = (0..8)
            .map(|_| {
                let authority = authority.clone();
                std::thread::spawn(move || authority.certificate("same.test").unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        assert!(leaves.iter().all(|leaf| Arc::ptr_eq(leaf, &leaves[0])));
        assert_eq!(
            authority.serial.load(Ordering::Relaxed),
            1,
            "minted more than once"
        );
    }

    #[test]
    fn a_name_that_cannot_be_a_certificate_name_fails_and_is_not_cached() {
        let authority = Authority::generate("test CA").unwrap();
        assert!(authority.certificate("bäd.test").is_err());
        assert_eq!(authority.cached(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn load_or_create_writes_the_key_owner_only_and_loads_it_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rama-intercept-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let created = Authority::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Authority::load_or_create(&dir).unwrap();
        assert_eq!(loaded.cert_pem(), created.cert_pem());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
