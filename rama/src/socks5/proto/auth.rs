//! Method negotiation (RFC 1928 section 3) and the username/password sub-negotiation
//! (RFC 1929).

use super::{AUTH_VERSION, ParseError, VERSION, take, take_u8};

/// The client's first message: the authentication methods it can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    methods: Vec<u8>,
}

/// A username/password request (RFC 1929).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The username, as sent (1 to 255 bytes, not necessarily UTF-8).
    pub username: Vec<u8>,
    /// The password, as sent (1 to 255 bytes).
    pub password: Vec<u8>,
}

// ===== impl Greeting =====

impl Greeting {
    /// A greeting offering `methods`.
    pub fn new(methods: Vec<u8>) -> Self {
        Self { methods }
    }

    /// Parses `VER NMETHODS METHODS...`.
    pub fn parse(input: &mut &[u8]) -> Result<Self, ParseError> {
        let mut rest = *input;
        let version = take_u8(&mut rest)?;
        if version != VERSION {
            return Err(ParseError::Version(version));
        }
        let count = usize::from(take_u8(&mut rest)?);
        let methods = take(&mut rest, count)?.to_vec();
        *input = rest;
        Ok(Self { methods })
    }

    /// Appends the wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(u8::try_from(self.methods.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.methods[..self.methods.len().min(255)]);
    }

    /// Whether the client offered `method`.
    pub fn offers(&self, method: u8) -> bool {
        self.methods.contains(&method)
    }

    /// The methods offered, in the client's order.
    pub fn methods(&self) -> &[u8] {
        &self.methods
    }
}

// ===== impl AuthRequest =====

impl AuthRequest {
    /// Parses `VER ULEN UNAME PLEN PASSWD`.
    pub fn parse(input: &mut &[u8]) -> Result<Self, ParseError> {
        let mut rest = *input;
        let version = take_u8(&mut rest)?;
        if version != AUTH_VERSION {
            return Err(ParseError::Version(version));
        }
        let ulen = usize::from(take_u8(&mut rest)?);
        let username = take(&mut rest, ulen)?.to_vec();
        let plen = usize::from(take_u8(&mut rest)?);
        let password = take(&mut rest, plen)?.to_vec();
        // RFC 1929 gives both fields a length of 1 to 255; curl sends an empty password when
        // given `user:`, so only the username must not be empty.
        if ulen == 0 {
            return Err(ParseError::Malformed);
        }
        *input = rest;
        Ok(Self { username, password })
    }

    /// Appends the wire form; `None` when a field is longer than 255 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<()> {
        let ulen = u8::try_from(self.username.len()).ok()?;
        let plen = u8::try_from(self.password.len()).ok()?;
        out.push(AUTH_VERSION);
        out.push(ulen);
        out.extend_from_slice(&self.username);
        out.push(plen);
        out.extend_from_slice(&self.password);
        Some(())
    }
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks5::proto::method;

    #[test]
    fn greeting_round_trip() {
        let greeting = Greeting::new(vec![method::NO_AUTH, method::PASSWORD]);
        let mut bytes = Vec::new();
        greeting.encode(&mut bytes);
        assert_eq!(bytes, [5, 2, 0, 2]);
        let mut input = &bytes[..];
        assert_eq!(Greeting::parse(&mut input).unwrap(), greeting);
        assert!(input.is_empty());
        for cut in 0..bytes.len() {
            let mut short = &bytes[..cut];
            assert_eq!(Greeting::parse(&mut short), Err(ParseError::Incomplete));
            assert_eq!(short.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn greeting_with_wrong_version() {
        let mut input: &[u8] = &[4, 1, 0];
        assert_eq!(Greeting::parse(&mut input), Err(ParseError::Version(4)));
    }

    #[test]
    fn auth_round_trip() {
        let request = AuthRequest {
            username: b"alice".to_vec(),
            password: b"s3cret".to_vec(),
        };
        let mut bytes = Vec::new();
        request.encode(&mut bytes).unwrap();
        assert_eq!(bytes[..2], [1, 5]);
        let mut input = &bytes[..];
        assert_eq!(AuthRequest::parse(&mut input).unwrap(), request);
        for cut in 0..bytes.len() {
            let mut short = &bytes[..cut];
            assert_eq!(AuthRequest::parse(&mut short), Err(ParseError::Incomplete));
        }
        assert!(!format!("{request:?}").contains("s3cret"));
    }

    #[test]
    fn auth_bad_input() {
        let mut wrong_version: &[u8] = &[5, 1, b'a', 1, b'b'];
        assert_eq!(
            AuthRequest::parse(&mut wrong_version),
            Err(ParseError::Version(5))
        );
        let mut empty_user: &[u8] = &[1, 0, 1, b'b'];
        assert_eq!(
            AuthRequest::parse(&mut empty_user),
            Err(ParseError::Malformed)
        );
        let mut empty_password: &[u8] = &[1, 1, b'a', 0];
        assert!(AuthRequest::parse(&mut empty_password).is_ok());
    }
}
