//! The errors of rama's HTTP stages.

use crate::BoxError;
use std::{error::Error as StdError, fmt};

/// Why an HTTP connection (or a client request) ended in failure. Opaque: ask with the
/// predicates, find the cause with [`source`](StdError::source) or
/// [`cause_ref`](crate::error::cause_ref).
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    HeaderTimeout,
    Protocol,
    Service,
    Connect,
    Timeout,
    Upstream,
    RequestBody,
    RequestBodyStalled,
    RequestTransferCoding,
}

impl Error {
    pub(crate) fn header_timeout() -> Self {
        Self {
            kind: Kind::HeaderTimeout,
            source: None,
        }
    }

    pub(crate) fn protocol(source: BoxError) -> Self {
        Self {
            kind: Kind::Protocol,
            source: Some(source),
        }
    }

    pub(crate) fn service(source: BoxError) -> Self {
        Self {
            kind: Kind::Service,
            source: Some(source),
        }
    }

    pub(crate) fn upstream(source: BoxError) -> Self {
        let kind = if is_connect(&*source) {
            if is_timed_out(&*source) {
                Kind::Timeout
            } else {
                Kind::Connect
            }
        } else {
            Kind::Upstream
        };
        Self {
            kind,
            source: Some(source),
        }
    }

    /// Dialing the upstream failed (timed out, if the cause says so).
    pub(crate) fn connect(source: BoxError) -> Self {
        let kind = if is_timed_out(&*source) {
            Kind::Timeout
        } else {
            Kind::Connect
        };
        Self {
            kind,
            source: Some(source),
        }
    }

    /// The request's own body failed while it was sent upstream: stalled, when the cause is
    /// the client sending no more of it ([`Stalled`](super::body_timeout::Stalled)).
    pub(crate) fn request_body(source: BoxError) -> Self {
        let kind = if source.is::<super::body_timeout::Stalled>() {
            Kind::RequestBodyStalled
        } else {
            Kind::RequestBody
        };
        Self {
            kind,
            source: Some(source),
        }
    }

    /// The request's `Transfer-Encoding` is not `chunked` alone: its body, decoded of its
    /// chunks by the server, is still in a coding the client would forward unsaid.
    pub(crate) fn request_transfer_coding() -> Self {
        Self {
            kind: Kind::RequestTransferCoding,
            source: None,
        }
    }

    pub(crate) fn timeout() -> Self {
        Self {
            kind: Kind::Timeout,
            source: None,
        }
    }

    /// A client took too long to send its request headers (it was answered `408`), or sent
    /// no more of a request body for the response timeout while it went upstream, or an
    /// upstream took too long to connect or to answer.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            Kind::HeaderTimeout | Kind::Timeout | Kind::RequestBodyStalled
        )
    }

    /// The upstream could not be reached (DNS, refused, unreachable).
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// The connection broke the HTTP protocol, or hyper failed on it (malformed requests,
    /// oversized headers, a reset).
    pub fn is_protocol(&self) -> bool {
        self.kind == Kind::Protocol
    }

    /// The request's own body failed while the client sent it upstream: it came malformed
    /// or cut short from whoever sent it, or it was longer or shorter than its
    /// `Content-Length` said. Not the upstream's fault.
    pub fn is_request_body(&self) -> bool {
        matches!(self.kind, Kind::RequestBody | Kind::RequestBodyStalled)
    }

    /// The request came in a transfer coding other than `chunked` alone (`gzip, chunked`),
    /// which the client does not forward; the proxies answer `501` (RFC 9112 6.1).
    pub fn is_request_transfer_coding(&self) -> bool {
        self.kind == Kind::RequestTransferCoding
    }

    /// The service behind the HTTP stage failed.
    pub fn is_service(&self) -> bool {
        self.kind == Kind::Service
    }

    /// The connection's peer went away under it: reset it, or closed it (or its TLS session,
    /// without `close_notify`) where more was due. Clients do that to connections kept alive
    /// all the time, so the server logs it at `debug`, as nginx does at `info`, and not as a
    /// failure of its own.
    pub fn is_peer_gone(&self) -> bool {
        self.kind == Kind::Protocol && self.source.as_deref().is_some_and(|e| peer_gone(e))
    }
}

/// Whether `error` says the other end went: reset (`error::is_peer_reset`), closed where
/// more was due (TLS without `close_notify`), or hyper's message cut short by a close.
fn peer_gone(error: &(dyn StdError + 'static)) -> bool {
    use crate::error::cause_ref;
    crate::error::is_peer_reset(error)
        || cause_ref::<std::io::Error>(error)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        || cause_ref::<hyper::Error>(error).is_some_and(hyper::Error::is_incomplete_message)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::HeaderTimeout => "the request headers did not arrive in time",
            Kind::Protocol => "http connection error",
            Kind::Service => "the http service failed",
            Kind::Connect => "cannot connect to the upstream",
            Kind::Timeout => "the upstream timed out",
            Kind::Upstream => "the upstream request failed",
            Kind::RequestBody => "the request body failed",
            Kind::RequestBodyStalled => "the request body stalled",
            Kind::RequestTransferCoding => {
                "the request's transfer-encoding is not chunked alone, the only one forwarded"
            }
        })
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Whether hyper-util's client failed while connecting.
fn is_connect(error: &(dyn StdError + 'static)) -> bool {
    crate::error::cause_ref::<hyper_util::client::legacy::Error>(error)
        .is_some_and(hyper_util::client::legacy::Error::is_connect)
}

/// Whether anything in the chain is an I/O timeout, a `tokio` elapsed timer, or a dial of
/// rama's own that timed out.
fn is_timed_out(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(err) = next {
        if err
            .downcast_ref::<crate::tcp::ConnectError>()
            .is_some_and(crate::tcp::ConnectError::is_timeout)
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if err.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        // An `https://` upstream that took its connection and never finished the handshake
        // has timed out as one that never answered has (`504`, as nginx answers it).
        if err
            .downcast_ref::<crate::tls::HandshakeError>()
            .is_some_and(crate::tls::HandshakeError::is_timeout)
        {
            return true;
        }
        next = err.source();
    }
    false
}
