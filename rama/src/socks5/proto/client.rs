//! The client side of the handshake as a state machine: it says what to send and how many
//! bytes the next answer has, so the I/O around it never reads past the handshake.
//!
//! ```
//! use rama::socks5::proto::client::{Machine, Next};
//!
//! let (mut machine, greeting) = Machine::new(&"example.test:443".parse().unwrap(), None).unwrap();
//! assert_eq!(greeting, [5, 1, 0]);
//! assert_eq!(machine.wants(&[]), 2);
//! let Next::Send(request) = machine.on_message(&[5, 0]).unwrap() else { panic!() };
//! assert_eq!(&request[..5], &[5, 1, 0, 3, 12]);
//! assert_eq!(machine.wants(&[5, 0, 0, 1, 10]), 10);
//! let Next::Done(bound) = machine.on_message(&[5, 0, 0, 1, 10, 0, 0, 1, 0, 80]).unwrap() else { panic!() };
//! assert_eq!(bound.to_string(), "10.0.0.1:80");
//! ```

use super::{
    AUTH_VERSION, AuthRequest, Command, Greeting, ParseError, Reply, Request, VERSION, method,
    reply_code,
};
use crate::{Address, tunnel::Refusal};
use std::{error::Error as StdError, fmt};

/// The client's handshake state.
#[derive(Debug)]
pub struct Machine {
    state: State,
    credentials: Option<AuthRequest>,
    request: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Method,
    AuthStatus,
    Reply,
    Done,
}

/// What to do after a complete answer.
#[derive(Debug)]
pub enum Next {
    /// Send these bytes, then read the next answer ([`Machine::wants`] says how long).
    Send(Vec<u8>),
    /// The tunnel is open; the proxy reported this bound address.
    Done(Address),
}

/// Why the upstream proxy did not open the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The proxy's answer is not SOCKS5.
    Protocol(ParseError),
    /// The proxy accepts none of the offered methods (it wants a password we lack, say).
    NoAcceptableMethod,
    /// The proxy rejected the username/password.
    BadCredentials,
    /// The proxy answered the request with this error code.
    Refused(u8),
    /// The destination's name or a credential is longer than 255 bytes.
    TooLong,
}

// ===== impl Machine =====

impl Machine {
    /// A handshake asking to CONNECT to `destination`, authenticating with `credentials`
    /// when the proxy asks for them. Returns the greeting to send first.
    pub fn new(
        destination: &Address,
        credentials: Option<AuthRequest>,
    ) -> Result<(Self, Vec<u8>), Failure> {
        let mut methods = vec![method::NO_AUTH];
        if credentials.is_some() {
            methods.push(method::PASSWORD);
        }
        let mut greeting = Vec::with_capacity(4);
        Greeting::new(methods).encode(&mut greeting);
        let mut request = Vec::with_capacity(22);
        Request {
            command: Command::Connect,
            destination: destination.clone(),
        }
        .encode(&mut request)
        .ok_or(Failure::TooLong)?;
        let machine = Self {
            state: State::Method,
            credentials,
            request,
        };
        Ok((machine, greeting))
    }

    /// How many bytes the answer being read has in all, given the `buffered` start of it.
    pub fn wants(&self, buffered: &[u8]) -> usize {
        match self.state {
            State::Method | State::AuthStatus => 2,
            State::Reply => Reply::wire_len(buffered).unwrap_or(5),
            State::Done => 0,
        }
    }

    /// Takes one complete answer (exactly [`wants`](Self::wants) bytes).
    pub fn on_message(&mut self, message: &[u8]) -> Result<Next, Failure> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Method => {
                if message.first() != Some(&VERSION) {
                    return Err(Failure::Protocol(ParseError::Version(message[0])));
                }
                match (message[1], self.credentials.take()) {
                    (method::NO_AUTH, _) => self.send_request(),
                    (method::PASSWORD, Some(credentials)) => {
                        let mut out = Vec::new();
                        credentials.encode(&mut out).ok_or(Failure::TooLong)?;
                        self.state = State::AuthStatus;
                        Ok(Next::Send(out))
                    }
                    _ => Err(Failure::NoAcceptableMethod),
                }
            }
            State::AuthStatus => match message {
                [AUTH_VERSION, 0] => self.send_request(),
                [AUTH_VERSION, _] => Err(Failure::BadCredentials),
                _ => Err(Failure::Protocol(ParseError::Version(message[0]))),
            },
            State::Reply => {
                let mut input = message;
                let reply = Reply::parse(&mut input).map_err(Failure::Protocol)?;
                if reply.code != reply_code::SUCCEEDED {
                    return Err(Failure::Refused(reply.code));
                }
                Ok(Next::Done(reply.bound))
            }
            State::Done => panic!("on_message called after the handshake ended"),
        }
    }

    fn send_request(&mut self) -> Result<Next, Failure> {
        self.state = State::Reply;
        Ok(Next::Send(std::mem::take(&mut self.request)))
    }
}

// ===== impl Failure =====

impl Failure {
    /// What the failure means for the client waiting on rama.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Refused(code) => Reply::refusal_of(*code),
            _ => Refusal::Failure,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(_) => f.write_str("upstream proxy spoke no SOCKS5"),
            Self::NoAcceptableMethod => {
                f.write_str("upstream proxy accepts none of the offered methods")
            }
            Self::BadCredentials => f.write_str("upstream proxy rejected the credentials"),
            Self::Refused(code) => write!(f, "upstream proxy refused with reply {code:#04x}"),
            Self::TooLong => f.write_str("destination name or credential longer than 255 bytes"),
        }
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Protocol(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> AuthRequest {
        AuthRequest {
            username: b"u".to_vec(),
            password: b"p".to_vec(),
        }
    }

    #[test]
    fn password_flow() {
        let dest: Address = "127.0.0.1:80".parse().unwrap();
        let (mut machine, greeting) = Machine::new(&dest, Some(credentials())).unwrap();
        assert_eq!(greeting, [5, 2, 0, 2]);
        let Next::Send(auth) = machine.on_message(&[5, 2]).unwrap() else {
            panic!()
        };
        assert_eq!(auth, [1, 1, b'u', 1, b'p']);
        let Next::Send(request) = machine.on_message(&[1, 0]).unwrap() else {
            panic!()
        };
        assert_eq!(request, [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        let reply = [
            5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 9,
        ];
        assert_eq!(machine.wants(&reply[..5]), reply.len());
        let Next::Done(bound) = machine.on_message(&reply).unwrap() else {
            panic!()
        };
        assert_eq!(bound.to_string(), "[::1]:9");
    }

    #[test]
    fn failures() {
        let dest: Address = "127.0.0.1:80".parse().unwrap();
        let (mut m, _) = Machine::new(&dest, None).unwrap();
        assert_eq!(
            m.on_message(&[5, 2]).unwrap_err(),
            Failure::NoAcceptableMethod
        );
        let (mut m, _) = Machine::new(&dest, None).unwrap();
        assert_eq!(
            m.on_message(&[5, 0xFF]).unwrap_err(),
            Failure::NoAcceptableMethod
        );
        let (mut m, _) = Machine::new(&dest, Some(credentials())).unwrap();
        m.on_message(&[5, 2]).unwrap();
        assert_eq!(m.on_message(&[1, 1]).unwrap_err(), Failure::BadCredentials);
        let (mut m, _) = Machine::new(&dest, None).unwrap();
        m.on_message(&[5, 0]).unwrap();
        let refused = m.on_message(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(refused, Failure::Refused(5));
        assert_eq!(refused.refusal(), Refusal::ConnectionRefused);
        let (mut m, _) = Machine::new(&dest, None).unwrap();
        assert!(matches!(
            m.on_message(&[4, 0]).unwrap_err(),
            Failure::Protocol(ParseError::Version(4))
        ));
    }
}
