//! The SOCKS5 wire protocol without I/O (RFC 1928, RFC 1929): messages parsed from and encoded
//! to byte slices, and the [server](server::Machine) and [client](client::Machine) handshakes as
//! explicit state machines that are fed bytes and say what to do next.
//!
//! Parsers take `&mut &[u8]` and advance it past the message on success; they return
//! [`ParseError::Incomplete`] (leaving the slice untouched) when more bytes are needed.
//!
//! ```
//! use rama::socks5::proto::{Greeting, ParseError, method};
//!
//! let mut input: &[u8] = &[5, 2, method::NO_AUTH, method::PASSWORD, 0xAA];
//! let greeting = Greeting::parse(&mut input).unwrap();
//! assert!(greeting.offers(method::PASSWORD));
//! assert_eq!(input, &[0xAA]); // the rest is left for the next message
//!
//! let mut short: &[u8] = &[5, 2, 0];
//! assert_eq!(Greeting::parse(&mut short), Err(ParseError::Incomplete));
//! ```

mod auth;
pub mod client;
pub(crate) mod reply;
mod request;
pub mod server;
mod udp;

pub use self::auth::{AuthRequest, Greeting};
pub use self::reply::{Reply, reply_code};
pub use self::request::{Command, Request};
pub use self::udp::UdpHeader;

use crate::{Address, Host};
use std::{
    error::Error as StdError,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The protocol version byte of SOCKS5.
pub const VERSION: u8 = 5;

/// The version byte of the username/password sub-negotiation (RFC 1929).
pub const AUTH_VERSION: u8 = 1;

/// Authentication methods (RFC 1928 section 3).
pub mod method {
    /// No authentication required.
    pub const NO_AUTH: u8 = 0x00;
    /// Username/password (RFC 1929).
    pub const PASSWORD: u8 = 0x02;
    /// No acceptable methods: the server's answer when it can use none of the offered ones.
    pub const NO_ACCEPTABLE: u8 = 0xFF;
}

/// Address types (RFC 1928 section 5).
pub mod atyp {
    /// An IPv4 address, 4 bytes.
    pub const IPV4: u8 = 0x01;
    /// A domain name, one length byte then the name.
    pub const DOMAIN: u8 = 0x03;
    /// An IPv6 address, 16 bytes.
    pub const IPV6: u8 = 0x04;
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// The version byte is not SOCKS5's (or RFC 1929's, in the password sub-negotiation).
    Version(u8),
    /// A request with a command this protocol does not know.
    UnknownCommand(u8),
    /// An address of a type this protocol does not know.
    UnknownAddressType(u8),
    /// A domain name of length zero.
    EmptyDomain,
    /// A domain name that is not a valid host name.
    InvalidDomain,
    /// A reserved byte that must be zero is not, or a length that must not be zero is.
    Malformed,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete => f.write_str("incomplete message"),
            Self::Version(v) => write!(f, "unsupported protocol version {v:#04x}"),
            Self::UnknownCommand(c) => write!(f, "unknown command {c:#04x}"),
            Self::UnknownAddressType(a) => write!(f, "unknown address type {a:#04x}"),
            Self::EmptyDomain => f.write_str("empty domain name"),
            Self::InvalidDomain => f.write_str("invalid domain name"),
            Self::Malformed => f.write_str("malformed message"),
        }
    }
}

impl StdError for ParseError {}

/// Takes `n` bytes off the front of `input`, or reports that more are needed.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], ParseError> {
    if input.len() < n {
        return Err(ParseError::Incomplete);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_u8(input: &mut &[u8]) -> Result<u8, ParseError> {
    take(input, 1).map(|b| b[0])
}

/// Parses `ATYP ADDR PORT` into an [`Address`].
pub(crate) fn parse_address(input: &mut &[u8]) -> Result<Address, ParseError> {
    let host = match take_u8(input)? {
        atyp::IPV4 => {
            let b: [u8; 4] = take(input, 4)?.try_into().expect("4 bytes");
            Host::Ip(IpAddr::V4(Ipv4Addr::from(b)))
        }
        atyp::IPV6 => {
            let b: [u8; 16] = take(input, 16)?.try_into().expect("16 bytes");
            Host::Ip(IpAddr::V6(Ipv6Addr::from(b)))
        }
        atyp::DOMAIN => {
            let len = usize::from(take_u8(input)?);
            let name = take(input, len)?;
            // The port must be there too before a verdict on the name.
            if input.len() < 2 {
                return Err(ParseError::Incomplete);
            }
            if len == 0 {
                return Err(ParseError::EmptyDomain);
            }
            host_from_name(name)?
        }
        other => return Err(ParseError::UnknownAddressType(other)),
    };
    let port = take(input, 2)?;
    Ok(Address::new(host, u16::from_be_bytes([port[0], port[1]])))
}

/// A domain name as sent by a client: an IP address written as text counts as the address.
fn host_from_name(name: &[u8]) -> Result<Host, ParseError> {
    let name = std::str::from_utf8(name).map_err(|_| ParseError::InvalidDomain)?;
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(ParseError::InvalidDomain);
    }
    Ok(Host::Name(name.into()))
}

/// Appends `ATYP ADDR PORT` for `address`; `None` when a name is longer than 255 bytes.
pub(crate) fn encode_address(address: &Address, out: &mut Vec<u8>) -> Option<()> {
    match address.host() {
        Host::Ip(IpAddr::V4(ip)) => {
            out.push(atyp::IPV4);
            out.extend_from_slice(&ip.octets());
        }
        Host::Ip(IpAddr::V6(ip)) => {
            out.push(atyp::IPV6);
            out.extend_from_slice(&ip.octets());
        }
        Host::Name(name) => {
            let len = u8::try_from(name.len()).ok()?;
            out.push(atyp::DOMAIN);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&address.port().to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for text in ["1.2.3.4:80", "[::1]:443", "example.test:8080"] {
            let address: Address = text.parse().unwrap();
            let mut bytes = Vec::new();
            encode_address(&address, &mut bytes).unwrap();
            let mut input = &bytes[..];
            assert_eq!(parse_address(&mut input).unwrap(), address);
            assert!(input.is_empty());
            // Every strict prefix asks for more.
            for cut in 0..bytes.len() {
                let mut short = &bytes[..cut];
                assert_eq!(parse_address(&mut short), Err(ParseError::Incomplete));
            }
        }
    }

    #[test]
    fn bad_addresses() {
        let cases: &[(&[u8], ParseError)] = &[
            (&[0x09, 1, 2], ParseError::UnknownAddressType(9)),
            (&[atyp::DOMAIN, 0, 0, 80], ParseError::EmptyDomain),
            (
                &[atyp::DOMAIN, 3, b'a', b' ', b'b', 0, 80],
                ParseError::InvalidDomain,
            ),
            (
                &[atyp::DOMAIN, 2, 0xC3, 0x28, 0, 80],
                ParseError::InvalidDomain,
            ),
        ];
        for (bytes, error) in cases {
            let mut input = *bytes;
            assert_eq!(parse_address(&mut input), Err(*error), "{bytes:?}");
        }
    }

    #[test]
    fn ip_written_as_a_name_is_an_ip() {
        let mut input: &[u8] = &[
            atyp::DOMAIN,
            9,
            b'1',
            b'2',
            b'7',
            b'.',
            b'0',
            b'.',
            b'0',
            b'.',
            b'1',
            0,
            80,
        ];
        let address = parse_address(&mut input).unwrap();
        assert_eq!(address.to_string(), "127.0.0.1:80");
    }

    #[test]
    fn overlong_names_are_not_encoded() {
        let name = "a".repeat(256);
        let address = Address::new(Host::Name(name.into()), 1);
        assert!(encode_address(&address, &mut Vec::new()).is_none());
    }
}
