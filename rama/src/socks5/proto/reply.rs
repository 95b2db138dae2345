//! The server's reply (RFC 1928 section 6).

use super::{ParseError, VERSION, encode_address, parse_address, take};
use crate::{Address, tunnel::Refusal};
use std::net::{Ipv4Addr, SocketAddr};

/// Reply codes (the `REP` byte).
pub mod reply_code {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0x00;
    /// General SOCKS server failure.
    pub const FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 0x02;
    /// Network unreachable.
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 0x04;
    /// Connection refused.
    pub const CONNECTION_REFUSED: u8 = 0x05;
    /// TTL expired (rama also uses it for timeouts).
    pub const TTL_EXPIRED: u8 = 0x06;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The `REP` byte (see [`reply_code`]).
    pub code: u8,
    /// `BND.ADDR`/`BND.PORT`.
    pub bound: Address,
}

/// The longest reply: an IPv6 address.
pub(crate) const MAX_IP_REPLY: usize = 22;

// ===== impl Reply =====

impl Reply {
    /// A success reply naming `bound`.
    pub fn success(bound: SocketAddr) -> Self {
        Self {
            code: reply_code::SUCCEEDED,
            bound: bound.into(),
        }
    }

    /// An error reply with `code` (`BND` is `0.0.0.0:0`).
    pub fn error(code: u8) -> Self {
        Self {
            code,
            bound: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into(),
        }
    }

    /// The error reply that tells the client about `refusal`.
    pub fn refusal(refusal: Refusal) -> Self {
        Self::error(code_of(refusal))
    }

    /// Parses a reply (the client side).
    pub fn parse(input: &mut &[u8]) -> Result<Self, ParseError> {
        let mut rest = *input;
        let head = take(&mut rest, 3)?;
        if head[0] != VERSION {
            return Err(ParseError::Version(head[0]));
        }
        let code = head[1];
        let bound = parse_address(&mut rest)?;
        *input = rest;
        Ok(Self { code, bound })
    }

    /// How many bytes the reply starting with `head` has in all, once that is known (after 5
    /// bytes); the client reads exactly that much so it never reads tunnel data.
    pub fn wire_len(head: &[u8]) -> Option<usize> {
        let tail = match (head.get(3), head.get(4)) {
            (Some(&super::atyp::IPV4), _) => 4,
            (Some(&super::atyp::IPV6), _) => 16,
            (Some(&super::atyp::DOMAIN), Some(&len)) => 1 + usize::from(len),
            (Some(_), Some(_)) => return Some(5), // unknown type: parse reports it
            _ => return None,
        };
        Some(4 + tail + 2)
    }

    /// Appends the wire form. A name longer than 255 bytes is replaced by `0.0.0.0:0`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[VERSION, self.code, 0]);
        let start = out.len();
        if encode_address(&self.bound, out).is_none() {
            out.truncate(start);
            encode_address(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into(), out);
        }
    }

    /// The wire form of a reply with an IP address, without allocating.
    pub(crate) fn encode_ip(code: u8, bound: SocketAddr) -> ([u8; MAX_IP_REPLY], usize) {
        let mut buf = [0u8; MAX_IP_REPLY];
        buf[0] = VERSION;
        buf[1] = code;
        let len = match bound {
            SocketAddr::V4(v4) => {
                buf[3] = super::atyp::IPV4;
                buf[4..8].copy_from_slice(&v4.ip().octets());
                buf[8..10].copy_from_slice(&v4.port().to_be_bytes());
                10
            }
            SocketAddr::V6(v6) => {
                buf[3] = super::atyp::IPV6;
                buf[4..20].copy_from_slice(&v6.ip().octets());
                buf[20..22].copy_from_slice(&v6.port().to_be_bytes());
                22
            }
        };
        (buf, len)
    }

    /// What a failed reply from an upstream proxy means to rama's own client.
    pub fn refusal_of(code: u8) -> Refusal {
        match code {
            reply_code::NOT_ALLOWED => Refusal::Denied,
            reply_code::NETWORK_UNREACHABLE => Refusal::NetworkUnreachable,
            reply_code::HOST_UNREACHABLE => Refusal::HostUnreachable,
            reply_code::CONNECTION_REFUSED => Refusal::ConnectionRefused,
            reply_code::TTL_EXPIRED => Refusal::TimedOut,
            _ => Refusal::Failure,
        }
    }
}

/// The reply code for `refusal`.
pub(crate) fn code_of(refusal: Refusal) -> u8 {
    match refusal {
        Refusal::Denied => reply_code::NOT_ALLOWED,
        Refusal::ConnectionRefused => reply_code::CONNECTION_REFUSED,
        Refusal::HostUnreachable => reply_code::HOST_UNREACHABLE,
        Refusal::NetworkUnreachable => reply_code::NETWORK_UNREACHABLE,
        Refusal::TimedOut => reply_code::TTL_EXPIRED,
        _ => reply_code::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_replies_round_trip_and_match_the_allocating_encoder() {
        for bound in ["127.0.0.1:1080", "[::1]:443"] {
            let bound: SocketAddr = bound.parse().unwrap();
            let reply = Reply::success(bound);
            let mut bytes = Vec::new();
            reply.encode(&mut bytes);
            let (fixed, len) = Reply::encode_ip(reply_code::SUCCEEDED, bound);
            assert_eq!(&fixed[..len], &bytes[..]);
            assert_eq!(Reply::wire_len(&bytes[..5]), Some(bytes.len()));
            let mut input = &bytes[..];
            assert_eq!(Reply::parse(&mut input).unwrap(), reply);
        }
    }

    #[test]
    fn refusals_map_to_rfc_codes_and_back() {
        let table = [
            (Refusal::Denied, 0x02),
            (Refusal::NetworkUnreachable, 0x03),
            (Refusal::HostUnreachable, 0x04),
            (Refusal::ConnectionRefused, 0x05),
            (Refusal::TimedOut, 0x06),
            (Refusal::Failure, 0x01),
        ];
        for (refusal, code) in table {
            let mut bytes = Vec::new();
            Reply::refusal(refusal).encode(&mut bytes);
            assert_eq!(bytes, [5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
            assert_eq!(Reply::refusal_of(code), refusal);
        }
    }

    #[test]
    fn domain_reply_length() {
        let reply = Reply {
            code: 0,
            bound: "proxy.test:1".parse().unwrap(),
        };
        let mut bytes = Vec::new();
        reply.encode(&mut bytes);
        assert_eq!(Reply::wire_len(&bytes[..5]), Some(bytes.len()));
        assert_eq!(Reply::wire_len(&bytes[..4]), None);
    }
}
