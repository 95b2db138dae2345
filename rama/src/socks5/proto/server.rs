//! The server side of the handshake as a state machine: fed the client's bytes, it says what
//! to send, when to check a password, and what the client asked for.
//!
//! ```
//! use rama::socks5::proto::{Command, server::{Event, Machine}};
//!
//! let mut machine = Machine::new(false);
//! let mut input: &[u8] = &[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
//! let Event::Send(out) = machine.advance(&mut input) else { panic!() };
//! assert_eq!(out.as_bytes(), &[5, 0]); // no authentication
//! let Event::Request(request) = machine.advance(&mut input) else { panic!() };
//! assert_eq!(request.command, Command::Connect);
//! assert_eq!(request.destination.to_string(), "127.0.0.1:80");
//! ```

use super::{
    AUTH_VERSION, AuthRequest, Greeting, ParseError, Reply, Request, VERSION, method, reply_code,
};
use std::{error::Error as StdError, fmt};

/// The server's handshake state.
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    password: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Password,
    Checking,
    Request,
    Done,
}

/// What the I/O around the machine must do next.
#[derive(Debug)]
pub enum Event {
    /// Send these bytes to the client, then call [`Machine::advance`] again.
    Send(Out),
    /// Read more bytes, then call [`Machine::advance`] again with every unconsumed byte.
    NeedMore,
    /// Check these credentials, then call [`Machine::authenticated`].
    Authenticate(AuthRequest),
    /// The handshake is done: the client asks for this. The server answers it with a
    /// [`Reply`].
    Request(Request),
    /// Send `reply` (when there is one), then close: the handshake failed.
    Fail {
        /// What to tell the client before closing.
        reply: Option<Out>,
        /// Why.
        failure: Failure,
    },
}

/// A short message for the client, held inline.
#[derive(Clone, Copy)]
pub struct Out {
    bytes: [u8; super::reply::MAX_IP_REPLY],
    len: u8,
}

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The client sent bytes that are not the expected message.
    Protocol(ParseError),
    /// None of the client's methods is acceptable.
    NoAcceptableMethod,
    /// The username/password check said no.
    BadCredentials,
}

// ===== impl Machine =====

impl Machine {
    /// A handshake that requires username/password authentication when `password` is true
    /// and accepts "no authentication" otherwise.
    pub fn new(password: bool) -> Self {
        Self {
            state: State::Greeting,
            password,
        }
    }

    /// Consumes what it can of `input` and says what to do next.
    ///
    /// # Panics
    ///
    /// While a password check is pending (after [`Event::Authenticate`], before
    /// [`authenticated`](Self::authenticated)), or after the handshake ended.
    pub fn advance(&mut self, input: &mut &[u8]) -> Event {
        match self.state {
            State::Greeting => self.greeting(input),
            State::Password => self.password(input),
            State::Request => self.request(input),
            State::Checking => panic!("advance called while a password check is pending"),
            State::Done => panic!("advance called after the handshake ended"),
        }
    }

    /// Feeds the verdict of the password check.
    pub fn authenticated(&mut self, ok: bool) -> Event {
        assert_eq!(self.state, State::Checking, "no password check pending");
        if ok {
            self.state = State::Request;
            Event::Send(Out::new(&[AUTH_VERSION, 0x00]))
        } else {
            self.fail(
                Some(Out::new(&[AUTH_VERSION, 0x01])),
                Failure::BadCredentials,
            )
        }
    }

    fn greeting(&mut self, input: &mut &[u8]) -> Event {
        let greeting = match Greeting::parse(input) {
            Ok(greeting) => greeting,
            Err(ParseError::Incomplete) => return Event::NeedMore,
            // Another version (SOCKS4, or not SOCKS at all): nothing in SOCKS5 it would read.
            Err(error) => return self.fail(None, Failure::Protocol(error)),
        };
        let wanted = if self.password {
            method::PASSWORD
        } else {
            method::NO_AUTH
        };
        if !greeting.offers(wanted) {
            let reply = Out::new(&[VERSION, method::NO_ACCEPTABLE]);
            return self.fail(Some(reply), Failure::NoAcceptableMethod);
        }
        self.state = if self.password {
            State::Password
        } else {
            State::Request
        };
        Event::Send(Out::new(&[VERSION, wanted]))
    }

    fn password(&mut self, input: &mut &[u8]) -> Event {
        match AuthRequest::parse(input) {
            Ok(request) => {
                self.state = State::Checking;
                Event::Authenticate(request)
            }
            Err(ParseError::Incomplete) => Event::NeedMore,
            Err(error) => self.fail(
                Some(Out::new(&[AUTH_VERSION, 0x01])),
                Failure::Protocol(error),
            ),
        }
    }

    fn request(&mut self, input: &mut &[u8]) -> Event {
        match Request::parse(input) {
            Ok(request) => {
                self.state = State::Done;
                Event::Request(request)
            }
            Err(ParseError::Incomplete) => Event::NeedMore,
            Err(error) => {
                let code = match error {
                    ParseError::UnknownCommand(_) => reply_code::COMMAND_NOT_SUPPORTED,
                    ParseError::UnknownAddressType(_) => reply_code::ADDRESS_TYPE_NOT_SUPPORTED,
                    _ => reply_code::FAILURE,
                };
                self.fail(Some(Out::reply(code)), Failure::Protocol(error))
            }
        }
    }

    fn fail(&mut self, reply: Option<Out>, failure: Failure) -> Event {
        self.state = State::Done;
        Event::Fail { reply, failure }
    }
}

// ===== impl Out =====

impl Out {
    fn new(bytes: &[u8]) -> Self {
        let mut out = Self {
            bytes: [0; super::reply::MAX_IP_REPLY],
            len: bytes.len() as u8,
        };
        out.bytes[..bytes.len()].copy_from_slice(bytes);
        out
    }

    /// An error reply with `code` and `BND` `0.0.0.0:0`.
    pub fn reply(code: u8) -> Self {
        let (bytes, len) = Reply::encode_ip(code, ([0, 0, 0, 0], 0).into());
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Out").field(&self.as_bytes()).finish()
    }
}

// ===== impl Failure =====

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(_) => f.write_str("protocol error"),
            Self::NoAcceptableMethod => f.write_str("no acceptable authentication method"),
            Self::BadCredentials => f.write_str("wrong username or password"),
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
    use crate::socks5::proto::Command;

    /// Feeds `input` one byte at a time, answering every password check with `verdict`;
    /// collects the bytes sent and how it ended.
    fn run(password: bool, verdict: bool, input: &[u8]) -> (Vec<u8>, Result<Request, Failure>) {
        let mut machine = Machine::new(password);
        let mut sent = Vec::new();
        let mut fed = 0;
        let mut buffered: Vec<u8> = Vec::new();
        loop {
            let mut rest = &buffered[..];
            let event = machine.advance(&mut rest);
            let consumed = buffered.len() - rest.len();
            buffered.drain(..consumed);
            let mut event = event;
            loop {
                match event {
                    Event::Authenticate(_) => event = machine.authenticated(verdict),
                    Event::Send(out) => {
                        sent.extend_from_slice(out.as_bytes());
                        break;
                    }
                    Event::NeedMore => {
                        assert!(fed < input.len(), "machine wants more than the input has");
                        buffered.push(input[fed]);
                        fed += 1;
                        break;
                    }
                    Event::Request(request) => {
                        assert!(buffered.is_empty() && fed == input.len());
                        return (sent, Ok(request));
                    }
                    Event::Fail { reply, failure } => {
                        if let Some(reply) = reply {
                            sent.extend_from_slice(reply.as_bytes());
                        }
                        return (sent, Err(failure));
                    }
                }
            }
        }
    }

    const CONNECT_V4: &[u8] = &[5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90];

    #[test]
    fn no_auth_connect() {
        let input = [&[5, 1, 0][..], CONNECT_V4].concat();
        let (sent, result) = run(false, true, &input);
        assert_eq!(sent, [5, 0]);
        let request = result.unwrap();
        assert_eq!(request.command, Command::Connect);
        assert_eq!(request.destination.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn password_connect() {
        let input = [&[5, 2, 0, 2][..], &[1, 1, b'u', 1, b'p'], CONNECT_V4].concat();
        let (sent, result) = run(true, true, &input);
        assert_eq!(sent, [5, 2, 1, 0]);
        assert!(result.is_ok());
    }

    #[test]
    fn wrong_password_is_refused_with_0x01() {
        let input = [&[5, 1, 2][..], &[1, 1, b'u', 1, b'x']].concat();
        let (sent, result) = run(true, false, &input);
        assert_eq!(sent, [5, 2, 1, 1]);
        assert_eq!(result.unwrap_err(), Failure::BadCredentials);
    }

    #[test]
    fn no_acceptable_method() {
        // Only no-auth offered to a server that wants a password, and the reverse.
        let (sent, result) = run(true, true, &[5, 1, 0]);
        assert_eq!(sent, [5, 0xFF]);
        assert_eq!(result.unwrap_err(), Failure::NoAcceptableMethod);
        let (sent, _) = run(false, true, &[5, 1, 2]);
        assert_eq!(sent, [5, 0xFF]);
        let (sent, _) = run(false, true, &[5, 0]);
        assert_eq!(sent, [5, 0xFF]);
    }

    #[test]
    fn wrong_version_closes_without_reply() {
        let (sent, result) = run(false, true, &[4, 1, 0, 80, 127, 0, 0, 1, 0]);
        assert!(sent.is_empty());
        assert_eq!(
            result.unwrap_err(),
            Failure::Protocol(ParseError::Version(4))
        );
    }

    #[test]
    fn request_errors_get_their_reply_codes() {
        let cases: &[(&[u8], u8)] = &[
            (&[5, 0x09, 0], 0x07),
            (&[5, 1, 0, 0x05, 1], 0x08),
            (&[5, 1, 0, 3, 0, 0, 80], 0x01),
            (&[6, 1, 0, 1, 1, 1, 1, 1, 0, 80], 0x01),
        ];
        for (request, code) in cases {
            let input = [&[5, 1, 0][..], request].concat();
            let (sent, result) = run(false, true, &input);
            assert_eq!(
                sent,
                [5, 0, 5, *code, 0, 1, 0, 0, 0, 0, 0, 0],
                "{request:?}"
            );
            assert!(matches!(result, Err(Failure::Protocol(_))));
        }
    }
}
