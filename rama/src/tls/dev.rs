//! Development certificates (rcgen): a CA of your own and leaves it signs, as PEM, for
//! examples and tests. Nobody needs openssl to try rama.
//!
//! ```
//! use rama::tls::dev;
//!
//! # fn main() -> Result<(), rama::tls::Error> {
//! let ca = dev::Ca::generate("my test CA")?;
//! let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
//! let client = ca.issue_client("alice")?;
//! # let dir = std::env::temp_dir().join(format!("rama-dev-doc-{}", std::process::id()));
//! ca.write(&dir)?;                                 // ca.pem, ca.key
//! let (cert, key) = server.write(&dir, "server")?; // server.pem, server.key
//! # let _ = (client, cert, key, std::fs::remove_dir_all(&dir));
//! # Ok(())
//! # }
//! ```
//!
//! These are for development: the keys are written unencrypted. A CA is valid for ten
//! years, a leaf for [`LEAF_VALIDITY`](super::intercept::LEAF_VALIDITY) (397 days, what
//! browsers take from public CAs), each from a day back.

use super::Error;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How long a generated CA is valid: ten years (rcgen's default, 1975 to 4096, made a trust
/// anchor that outlives everyone who installed it).
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// A certificate authority: its self-signed certificate and its key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// A leaf certificate signed by a [`Ca`], with its key.
#[derive(Clone)]
pub struct Cert {
    cert_pem: String,
    key_pem: String,
}

// ===== impl Ca =====

impl Ca {
    /// A new CA whose subject common name is `name`.
    pub fn generate(name: &str) -> Result<Self, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_for(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, or generates a CA named `name` and writes them
    /// there when `ca.pem` does not exist (the examples' `--ca-dir`).
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, Error> {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert.exists() {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|error| Error::read(path, error))
            };
            return Self::from_pem(&read(&cert)?, &read(&key)?);
        }
        let ca = Self::generate(name)?;
        ca.write(dir)?;
        Ok(ca)
    }

    /// The CA certificate, PEM: what clients trust (`curl --cacert`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The signer of the leaves: shared with the interception CA (`tls::intercept`), which
    /// signs its own leaves with it.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name).
    pub fn issue_server(&self, names: &[&str]) -> Result<Cert, Error> {
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )?;
        params.distinguished_name = subject(names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate (mutual TLS) whose subject common name is `name`.
    pub fn issue_client(&self, name: &str) -> Result<Cert, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Cert, Error> {
        leaf_usages(&mut params);
        valid_for(&mut params, super::intercept::LEAF_VALIDITY);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Cert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and `ca.key` into `dir` (created if need be).
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        write_pair(dir, "ca", &self.cert_pem, &self.key_pem).map(drop)
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

// ===== impl Cert =====

impl Cert {
    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `STEM.pem` and `STEM.key` into `dir` (created if need be); returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), Error> {
        write_pair(dir, stem, &self.cert_pem, &self.key_pem)
    }
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert").finish_non_exhaustive()
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn write_pair(dir: &Path, stem: &str, cert: &str, key: &str) -> Result<(PathBuf, PathBuf), Error> {
    std::fs::create_dir_all(dir).map_err(|error| Error::write(dir, error))?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert).map_err(|error| Error::write(&cert_path, error))?;
    std::fs::write(&key_path, key).map_err(|error| Error::write(&key_path, error))?;
    Ok((cert_path, key_path))
}

/// Makes `params` valid from a day ago (a client whose clock runs behind still accepts a fresh
/// certificate) for `validity` from now.
pub(crate) fn valid_for(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let day = Duration::from_secs(24 * 60 * 60);
    params.not_before = epoch + now.saturating_sub(day);
    params.not_after = epoch + now + validity;
}

/// The key usage of a leaf with an ECDSA key (what `KeyPair::generate` makes): signatures
/// only; `keyEncipherment` is for RSA key transport, and RFC 5480 3 forbids it for EC keys.
pub(crate) fn leaf_usages(params: &mut CertificateParams) {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
}
