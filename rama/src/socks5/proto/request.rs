//! The client's request (RFC 1928 section 4).

use super::{ParseError, VERSION, encode_address, parse_address, take};
use crate::Address;

/// What the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Open a TCP connection to the destination (0x01).
    Connect,
    /// Listen for one connection from the destination (0x02).
    Bind,
    /// Relay UDP datagrams (0x03).
    UdpAssociate,
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// The destination (for UDP ASSOCIATE: where the client will send datagrams from).
    pub destination: Address,
}

// ===== impl Command =====

impl Command {
    /// The command's byte.
    pub fn code(self) -> u8 {
        match self {
            Self::Connect => 0x01,
            Self::Bind => 0x02,
            Self::UdpAssociate => 0x03,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Self::Connect),
            0x02 => Some(Self::Bind),
            0x03 => Some(Self::UdpAssociate),
            _ => None,
        }
    }
}

// ===== impl Request =====

impl Request {
    /// Parses a request. An unknown command is reported as soon as its byte arrives (the
    /// server answers 0x07 without waiting for the address).
    pub fn parse(input: &mut &[u8]) -> Result<Self, ParseError> {
        let mut rest = *input;
        let head = take(&mut rest, 3)?;
        if head[0] != VERSION {
            return Err(ParseError::Version(head[0]));
        }
        let command = Command::from_code(head[1]).ok_or(ParseError::UnknownCommand(head[1]))?;
        // RSV (head[2]) must be 0, but clients in the wild send garbage: ignore it as
        // dante and microsocks do.
        let destination = parse_address(&mut rest)?;
        *input = rest;
        Ok(Self {
            command,
            destination,
        })
    }

    /// Appends the wire form; `None` when the destination's name is longer than 255 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(&[VERSION, self.command.code(), 0]);
        encode_address(&self.destination, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_command_and_address() {
        for command in [Command::Connect, Command::Bind, Command::UdpAssociate] {
            for dest in ["10.0.0.1:80", "[2001:db8::1]:443", "localhost:8080"] {
                let request = Request {
                    command,
                    destination: dest.parse().unwrap(),
                };
                let mut bytes = Vec::new();
                request.encode(&mut bytes).unwrap();
                let mut input = &bytes[..];
                assert_eq!(Request::parse(&mut input).unwrap(), request);
                assert!(input.is_empty());
                for cut in 0..bytes.len() {
                    let mut short = &bytes[..cut];
                    assert_eq!(Request::parse(&mut short), Err(ParseError::Incomplete));
                }
            }
        }
    }

    #[test]
    fn captured_curl_request() {
        // curl --socks5-hostname to localhost:8000
        let bytes = [
            5, 1, 0, 3, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't', 0x1F, 0x40,
        ];
        let mut input = &bytes[..];
        let request = Request::parse(&mut input).unwrap();
        assert_eq!(request.command, Command::Connect);
        assert_eq!(request.destination.to_string(), "localhost:8000");
    }

    #[test]
    fn bad_requests() {
        let cases: &[(&[u8], ParseError)] = &[
            (&[4, 1, 0, 1, 127, 0, 0, 1, 0, 80], ParseError::Version(4)),
            (&[5, 9, 0], ParseError::UnknownCommand(9)),
            (&[5, 1, 0, 7, 1, 2, 3], ParseError::UnknownAddressType(7)),
            (&[5, 1, 0, 3, 0, 0, 80], ParseError::EmptyDomain),
        ];
        for (bytes, error) in cases {
            let mut input = *bytes;
            assert_eq!(Request::parse(&mut input), Err(*error), "{bytes:?}");
        }
    }
}
