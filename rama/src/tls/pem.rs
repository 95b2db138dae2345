//! Reading certificates and keys from PEM.

use super::Error;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::Path;

/// Reads a whole file, naming it in the error.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|error| Error::read(path, error))
}

/// Every certificate in `pem`, in order; at least one.
pub(super) fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::pem("certificate", Some(Box::new(error))))?;
    if certs.is_empty() {
        return Err(Error::pem("certificate", None));
    }
    Ok(certs)
}

/// The first private key in `pem`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(super) fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|error| Error::pem("private key", Some(Box::new(error))))
}

/// A certificate chain and its key from two PEM files.
pub(super) fn cert_and_key_files(
    cert: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    Ok((certs(&read(cert)?)?, key(&read(key_file)?)?))
}
