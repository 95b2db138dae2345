//! The header of a relayed UDP datagram (RFC 1928 section 7).

use super::{ParseError, encode_address, parse_address, take};
use crate::Address;

/// `RSV(2) FRAG ATYP DST.ADDR DST.PORT`, in front of each relayed datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// The fragment number; rama does not reassemble and drops any datagram where it is not 0.
    pub frag: u8,
    /// Where the datagram goes (client to relay) or came from (relay to client).
    pub address: Address,
}

impl UdpHeader {
    /// Parses the header; what is left in `input` is the payload.
    pub fn parse(input: &mut &[u8]) -> Result<Self, ParseError> {
        let mut rest = *input;
        let head = take(&mut rest, 3)?;
        if head[..2] != [0, 0] {
            return Err(ParseError::Malformed);
        }
        let frag = head[2];
        let address = parse_address(&mut rest)?;
        *input = rest;
        Ok(Self { frag, address })
    }

    /// Appends the wire form; `None` when the name is longer than 255 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(&[0, 0, self.frag]);
        encode_address(&self.address, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_payload() {
        let header = UdpHeader {
            frag: 0,
            address: "127.0.0.1:5353".parse().unwrap(),
        };
        let mut bytes = Vec::new();
        header.encode(&mut bytes).unwrap();
        bytes.extend_from_slice(b"payload");
        let mut input = &bytes[..];
        assert_eq!(UdpHeader::parse(&mut input).unwrap(), header);
        assert_eq!(input, b"payload");
    }

    #[test]
    fn nonzero_reserved_is_malformed() {
        let mut input: &[u8] = &[0, 1, 0, 1, 127, 0, 0, 1, 0, 53];
        assert_eq!(UdpHeader::parse(&mut input), Err(ParseError::Malformed));
    }
}
