//! Tunnel requests: a client that asked a protocol stage (SOCKS5 `CONNECT`, HTTP `CONNECT`)
//! to be connected somewhere, waiting for the answer.
//!
//! The protocol stage parses the client's request and hands on a [`Request`]: the destination,
//! the connection's facts, and a [`Handshake`] that knows how to answer the client in its own
//! protocol. The terminal ([`Target`](crate::Target) by default) dials the destination and then
//! either [accepts](Handshake::accept) (the client gets its success reply and the stream
//! becomes a byte tunnel) or [rejects](Handshake::reject) with a [`Refusal`] that the protocol
//! maps to its own error reply (a SOCKS5 reply code, an HTTP status).
//!
//! Anything in between (egress rules, logging, routing, chaining through another proxy) is an
//! ordinary tower layer over `Service<tunnel::Request<H>>`.

mod open;

pub use self::open::{Open, OpenError, RelayConfig};

use crate::{Address, ConnInfo, io::ResetSignal, tcp::ConnectError};
use std::{fmt, future::Future, io, net::SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite};

/// A client waiting to be connected to [`destination`](Request::destination).
#[derive(Debug)]
pub struct Request<H> {
    destination: Address,
    handshake: H,
    info: ConnInfo,
}

/// How a protocol stage answers its client once the dial is decided.
///
/// The futures are associated types, not boxed, so that a stack over them stays `Send` exactly
/// when its parts are.
pub trait Handshake {
    /// The client's stream once accepted: the tunnel's client side.
    type Stream: AsyncRead + AsyncWrite + Unpin;
    /// Sends the success reply and yields the stream.
    type Accept: Future<Output = io::Result<Self::Stream>>;
    /// Sends the error reply and closes.
    type Reject: Future<Output = io::Result<()>>;

    /// Tells the client the tunnel is open; `bound` is the proxy's local address of the
    /// upstream connection (SOCKS5 reports it as `BND.ADDR`).
    fn accept(self, bound: SocketAddr) -> Self::Accept;

    /// Tells the client why the tunnel will not open.
    fn reject(self, refusal: Refusal) -> Self::Reject;

    /// A signal raised when the client's side of the tunnel ends abnormally in a way the
    /// stream's reads and writes may not tell while the relay waits on the upstream: an
    /// HTTP/2 `CONNECT` stream reset by its client, an HTTP/1.1 client's TCP `RST` under
    /// hyper's upgraded stream (see [`ResetSignal`]). The relay then ends
    /// and closes the upstream connection with a TCP `RST`. Asked before
    /// [`accept`](Self::accept); `None` (the default) where the stream tells everything
    /// itself.
    fn reset_signal(&self) -> Option<ResetSignal> {
        None
    }
}

/// Why a tunnel was not opened, in the terms every proxy protocol can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Forbidden by the proxy's rules (SOCKS5 0x02, HTTP 403).
    Denied,
    /// The destination refused the connection (SOCKS5 0x05, HTTP 502).
    ConnectionRefused,
    /// No route to the host, or its name did not resolve (SOCKS5 0x04, HTTP 502).
    HostUnreachable,
    /// No route to the network (SOCKS5 0x03, HTTP 502).
    NetworkUnreachable,
    /// The dial timed out (SOCKS5 0x06, HTTP 504).
    TimedOut,
    /// Anything else (SOCKS5 0x01, HTTP 502).
    Failure,
}

// ===== impl Request =====

impl<H> Request<H> {
    /// A request to reach `destination`, answered through `handshake`.
    pub fn new(destination: Address, handshake: H, info: ConnInfo) -> Self {
        Self {
            destination,
            handshake,
            info,
        }
    }

    /// Where the client wants to go.
    pub fn destination(&self) -> &Address {
        &self.destination
    }

    /// Redirects the request (routing, a fixed upstream).
    pub fn set_destination(&mut self, destination: Address) {
        self.destination = destination;
    }

    /// The connection's facts.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The connection's facts, mutably.
    pub fn info_mut(&mut self) -> &mut ConnInfo {
        &mut self.info
    }

    /// Splits the request into its parts.
    pub fn into_parts(self) -> (Address, H, ConnInfo) {
        (self.destination, self.handshake, self.info)
    }
}

// ===== impl Refusal =====

impl Refusal {
    /// What a failed dial means to the client.
    pub fn from_connect_error(error: &ConnectError) -> Self {
        if error.is_timeout() {
            return Self::TimedOut;
        }
        if error.is_resolve() {
            return Self::HostUnreachable;
        }
        let Some(io) = error.io_error() else {
            return Self::Failure;
        };
        match io.kind() {
            io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            io::ErrorKind::HostUnreachable => Self::HostUnreachable,
            io::ErrorKind::NetworkUnreachable => Self::NetworkUnreachable,
            io::ErrorKind::TimedOut => Self::TimedOut,
            // The proxy's own refusal (`tcp::Connect::refusing`); the system's `EACCES` or
            // `EPERM` (a firewall's `prohibit` route) is a failed dial like any other, as
            // the absolute-form path answers it (`502`), not the proxy's rules.
            io::ErrorKind::PermissionDenied if io.raw_os_error().is_none() => Self::Denied,
            _ => Self::Failure,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Denied => "denied by the proxy's rules",
            Self::ConnectionRefused => "connection refused",
            Self::HostUnreachable => "host unreachable",
            Self::NetworkUnreachable => "network unreachable",
            Self::TimedOut => "timed out",
            Self::Failure => "failed",
        })
    }
}
