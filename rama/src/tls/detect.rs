//! [`Detect`]: TLS and plain text on one port.
//!
//! [`crate::detect::Detect`] with the [`TlsHandshake`] classifier: a TLS handshake record
//! (`0x16 0x03 ..`, a ClientHello) goes to the TLS branch, anything else to the plain branch,
//! each as a [`Conn`](crate::Conn) of a [`Rewind`](crate::detect::Rewind) that replays the
//! peeked bytes. Readiness, timeout and endings are [`Detect`]'s (see
//! [`crate::detect`]).
//!
//! ```no_run
//! use rama::{tcp, target, tls};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! // `curl https://` and `curl http://` on one port, both relayed in plain to the origin.
//! let both = tls::Detect::new(
//!     tower::Layer::layer(&tls::Acceptor::dev()?, target("127.0.0.1:8000")),
//!     target("127.0.0.1:8000"),
//! );
//! tcp::Server::bind("127.0.0.1:8443").serve(both).await?;
//! # Ok(())
//! # }
//! ```

use crate::detect::{self, Classify};

pub use crate::detect::DEFAULT_DETECT_TIMEOUT;

/// TLS (a handshake record) to one branch, anything else to the other:
/// `tls::Detect::new(tls, plain)`.
pub type Detect<T, P> = detect::Detect<TlsHandshake, T, P>;

/// The classifier of [`Detect`]: matches a TLS handshake record, whose header starts with
/// content type 22 (handshake) and protocol version major 3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsHandshake;

impl<T, P> detect::Detect<TlsHandshake, T, P> {
    /// TLS connections to `tls` (usually an [`Acceptor`](super::Acceptor) over the stack),
    /// the others to `plain`.
    pub fn new(tls: T, plain: P) -> Self {
        Self::with_classifier(TlsHandshake, tls, plain)
    }
}

impl Classify for TlsHandshake {
    fn classify(&self, peeked: &[u8]) -> Option<bool> {
        match peeked {
            [] | [0x16] => None,
            [0x16, 0x03, ..] => Some(true),
            _ => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_client_hello_from_text() {
        let tls = |peeked: &[u8]| TlsHandshake.classify(peeked);
        assert_eq!(tls(b""), None);
        assert_eq!(tls(b"\x16"), None);
        assert_eq!(tls(b"\x16\x03\x01\x02\x00"), Some(true));
        assert_eq!(tls(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(tls(b"\x16\x01"), Some(false));
        assert_eq!(tls(b"\x05\x01\x00"), Some(false));
    }
}
