//! The future of [`Socks5`](super::Socks5): one connection, from the greeting to the end of
//! its tunnel.

use super::{
    Config,
    bind::Bind,
    handshake::{Handshake, Write},
    udp::Association,
};
use crate::{
    BoxError, Conn, ConnInfo, Host,
    socks5::{
        auth::{Authenticator, Credentials, User},
        error::Error,
        proto::{
            Command, reply_code,
            server::{Event, Machine, Out},
        },
    },
    tunnel,
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tower::Service;

/// Room for the longest message (a password request, 513 bytes) plus what a client may
/// pipeline behind it.
const HANDSHAKE_BUFFER: usize = 1024;

pin_project! {
    /// Runs the handshake, then the inner service's future (CONNECT) or the stage's own relay
    /// (UDP ASSOCIATE, BIND).
    pub struct ResponseFuture<IO, S, A>
    where
        S: Service<tunnel::Request<Handshake<IO>>>,
        A: Authenticator,
    {
        io: Option<IO>,
        info: Option<ConnInfo>,
        inner: Option<S>,
        auth: Option<A>,
        config: Arc<Config>,
        machine: Machine,
        buf: Vec<u8>,
        filled: usize,
        // A message on its way to the client, and the error to end with once it is sent.
        out: Option<Write<IO>>,
        failure: Option<Error>,
        #[pin]
        deadline: Option<Sleep>,
        #[pin]
        state: State<IO, S::Future, A::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<IO, F, C> {
        Handshake,
        Checking { #[pin] check: C, username: Option<String> },
        Calling { #[pin] call: F },
        Udp { association: Association<IO> },
        Bind { bind: Bind<IO> },
    }
}

impl<IO, S, A> ResponseFuture<IO, S, A>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<tunnel::Request<Handshake<IO>>>,
    A: Authenticator,
{
    pub(super) fn new(conn: Conn<IO>, inner: S, auth: A, config: Arc<Config>) -> Self {
        let (io, info) = conn.into_parts();
        let deadline = config.handshake_timeout.map(tokio::time::sleep);
        Self {
            io: Some(io),
            info: Some(info),
            inner: Some(inner),
            machine: Machine::new(auth.required()),
            auth: Some(auth),
            config,
            buf: vec![0; HANDSHAKE_BUFFER],
            filled: 0,
            out: None,
            failure: None,
            deadline,
            state: State::Handshake,
        }
    }
}

impl<IO, S, A> Future for ResponseFuture<IO, S, A>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<tunnel::Request<Handshake<IO>>>,
    S::Error: Into<BoxError>,
    A: Authenticator,
{
    type Output = Result<Option<S::Response>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The handshake deadline covers reading, the password check and the error replies.
        if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
            && deadline.poll(cx).is_ready()
        {
            this.deadline.set(None);
            return Poll::Ready(Err(Error::timeout().into()));
        }
        loop {
            match this.state.as_mut().project() {
                StateProj::Handshake => {}
                StateProj::Checking { check, username } => {
                    let verdict = ready!(check.poll(cx));
                    let username = username.take().expect("checking holds the username");
                    let ok = match verdict {
                        Ok(ok) => ok,
                        Err(error) => {
                            *this.failure = Some(Error::auth(error));
                            false
                        }
                    };
                    if ok {
                        let info = this.info.as_mut().expect("info until dispatch");
                        info.extensions_mut().insert(User::new(&username));
                    }
                    let event = this.machine.authenticated(ok);
                    let io = this.io.take().expect("io until dispatch");
                    match event {
                        Event::Send(out) => *this.out = Some(Write::new(io, out.as_bytes(), false)),
                        Event::Fail { reply, failure } => {
                            let bytes = reply.as_ref().map_or(&[][..], Out::as_bytes);
                            *this.out = Some(Write::new(io, bytes, true));
                            this.failure.get_or_insert(Error::handshake(failure));
                        }
                        _ => unreachable!("a verdict answers with a message"),
                    }
                    this.state.set(State::Handshake);
                    continue;
                }
                StateProj::Calling { call } => {
                    return call.poll(cx).map(|r| r.map(Some).map_err(Into::into));
                }
                StateProj::Udp { association } => {
                    return association
                        .poll(cx)
                        .map(|r| r.map(|()| None).map_err(Into::into));
                }
                StateProj::Bind { bind } => {
                    return bind.poll(cx).map(|r| r.map(|()| None).map_err(Into::into));
                }
            }

            // The handshake: first deliver what is on its way to the client.
            if let Some(out) = this.out.as_mut() {
                let io = ready!(out.poll_write(cx)).map_err(Error::io)?;
                *this.out = None;
                *this.io = Some(io);
                if let Some(failure) = this.failure.take() {
                    // The reply (if any) is out and the write side shut: end here.
                    return Poll::Ready(Err(failure.into()));
                }
            }

            let mut input = &this.buf[..*this.filled];
            let event = this.machine.advance(&mut input);
            let consumed = *this.filled - input.len();
            this.buf.copy_within(consumed..*this.filled, 0);
            *this.filled -= consumed;

            match event {
                Event::Send(out) => {
                    let io = this.io.take().expect("io during the handshake");
                    *this.out = Some(Write::new(io, out.as_bytes(), false));
                }
                Event::NeedMore => {
                    let io = this.io.as_mut().expect("io during the handshake");
                    let mut read = ReadBuf::new(&mut this.buf[*this.filled..]);
                    ready!(Pin::new(io).poll_read(cx, &mut read)).map_err(Error::io)?;
                    let n = read.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(Error::closed().into()));
                    }
                    *this.filled += n;
                }
                Event::Authenticate(request) => {
                    let auth = this.auth.take().expect("one password check");
                    match (
                        String::from_utf8(request.username),
                        String::from_utf8(request.password),
                    ) {
                        (Ok(username), Ok(password)) => {
                            let check = auth.check(Credentials::new(username.clone(), password));
                            this.state.set(State::Checking {
                                check,
                                username: Some(username),
                            });
                        }
                        // Not UTF-8: no user can match.
                        _ => {
                            let Event::Fail { reply, failure } = this.machine.authenticated(false)
                            else {
                                unreachable!("a failed check fails")
                            };
                            fail(
                                this.io,
                                this.out,
                                this.failure,
                                reply,
                                Error::handshake(failure),
                            );
                        }
                    }
                }
                Event::Fail { reply, failure } => {
                    fail(
                        this.io,
                        this.out,
                        this.failure,
                        reply,
                        Error::handshake(failure),
                    );
                }
                Event::Request(request) => {
                    this.deadline.set(None);
                    let io = this.io.take().expect("io during the handshake");
                    let info = this.info.take().expect("info until dispatch");
                    let peer = info.peer_addr();
                    let user = info.extensions().get::<User>().cloned();
                    let command = request.command;
                    tracing::debug!(
                        %peer,
                        user = user.as_ref().map(User::name),
                        ?command,
                        destination = %request.destination,
                        "socks5 request"
                    );
                    match command {
                        Command::Connect => {
                            let early = this.buf[..*this.filled].to_vec();
                            *this.buf = Vec::new();
                            let handshake = Handshake::new(io, early);
                            let request =
                                tunnel::Request::new(request.destination, handshake, info);
                            let mut inner = this.inner.take().expect("one call");
                            let call = inner.call(request);
                            this.state.set(State::Calling { call });
                        }
                        Command::UdpAssociate if this.config.udp => {
                            match Association::start(
                                io,
                                &info,
                                &request.destination,
                                this.config.rules.clone(),
                            ) {
                                Ok(association) => this.state.set(State::Udp { association }),
                                Err((io, error)) => fail(
                                    &mut Some(io),
                                    this.out,
                                    this.failure,
                                    Some(Out::reply(reply_code::FAILURE)),
                                    Error::udp(error),
                                ),
                            }
                        }
                        Command::Bind if this.config.bind => {
                            let requested = match request.destination.host() {
                                Host::Ip(ip) => Some(*ip),
                                Host::Name(_) => None,
                            };
                            match Bind::start(io, &info, requested, this.config.rules.clone()) {
                                Ok(bind) => this.state.set(State::Bind { bind }),
                                Err((io, error)) => fail(
                                    &mut Some(io),
                                    this.out,
                                    this.failure,
                                    Some(Out::reply(reply_code::FAILURE)),
                                    Error::bind(error),
                                ),
                            }
                        }
                        other => fail(
                            &mut Some(io),
                            this.out,
                            this.failure,
                            Some(Out::reply(reply_code::COMMAND_NOT_SUPPORTED)),
                            Error::unsupported_command(other.code()),
                        ),
                    }
                }
            }
        }
    }
}

/// Queues `reply` (if any) and a shutdown, to end with `error` once they are out.
fn fail<IO: AsyncWrite + Unpin>(
    io: &mut Option<IO>,
    out: &mut Option<Write<IO>>,
    failure: &mut Option<Error>,
    reply: Option<Out>,
    error: Error,
) {
    let io = io.take().expect("io to answer on");
    let bytes = reply.as_ref().map_or(&[][..], Out::as_bytes);
    *out = Some(Write::new(io, bytes, true));
    *failure = Some(error);
}

impl<IO, S, A> fmt::Debug for ResponseFuture<IO, S, A>
where
    S: Service<tunnel::Request<Handshake<IO>>>,
    A: Authenticator,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("peer", &self.info.as_ref().map(ConnInfo::peer_addr))
            .finish_non_exhaustive()
    }
}
