//! The life of a relayed session: messages both ways through the hook, then the close on both
//! legs (the closing side's close goes on, the other side's messages still come back until its
//! own close answers it). Also the answer to a peer that breaks the protocol, shared with
//! [`Socket`](super::Socket).

use super::{
    CloseCode, CloseFrame, Message,
    hook::{Direction, Hook, Session},
};
use crate::{error::Chain, graceful, http::forward::Peer, io::ResetSignal};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper_tungstenite::{
    HyperWebsocketStream, tungstenite,
    tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    },
};
use std::{collections::VecDeque, io, pin::pin, task::Poll, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Relayed pings whose pongs are still due, per side; older ones are forgotten (their pong,
/// if it ever comes, is then carried like an unsolicited one).
const MAX_PENDING_PINGS: usize = 16;

/// Messages relayed back to back before both legs are flushed anyway, so that a sender that
/// never pauses does not hold back what was already relayed.
const MAX_UNFLUSHED: usize = 64;

/// How one leg ends once the relay stops carrying messages.
#[derive(Debug)]
enum End {
    /// The leg's connection is gone, or it never answered the close that went to it in time:
    /// nothing to send; its connection is shut at once.
    Gone,
    /// A close went to it or came from it: read until its connection ends (the close reply).
    /// For a leg whose close came first and was never answered, reading also sends the echo
    /// of that close its tungstenite queued when it read it.
    Closing,
    /// Its close came first, and this (the other side's close, its answer) goes to it, past
    /// its tungstenite ([`Leg::write_past_close`]); then shut the connection and read until
    /// it ends.
    Answer(Message),
    /// Tell it the session is over, then read until its connection ends.
    Close(CloseFrame),
    /// It broke the protocol: answer with this close, shut the connection and discard what it
    /// still sends (its stream cannot be parsed any more).
    Fail(CloseFrame),
}

/// How the message loop ended.
#[derive(Debug)]
enum Ended {
    /// How the client's and the upstream's legs end.
    Legs(End, End),
    /// A close came from one side (travelling this way) and went on to the other, whose
    /// messages are still carried back until its own close answers it ([`carry_back`]).
    Closing(Direction),
}

/// One side of the relay.
struct Leg {
    ws: HyperWebsocketStream,
    /// Whether its frames are masked: the relay is the upstream's client (RFC 6455 5.3).
    masked: bool,
    /// Payloads of the pings relayed *to* this side whose pongs are still due.
    pings: VecDeque<Bytes>,
    /// `client` or `upstream`, for logs.
    name: &'static str,
    /// Whether messages were fed to it and not yet flushed.
    unflushed: bool,
}

/// How a session may end besides its legs' own say: the time each close handshake gets, the
/// server's shutdown, and the client's HTTP/2 stream reset.
pub(super) struct Ends<'a> {
    /// How long a side gets to answer a close.
    pub(super) linger: Duration,
    /// The server's shutdown: both legs get close `1001`.
    pub(super) shutdown: &'a graceful::Signal,
    /// Raised when the client's HTTP/2 stream is reset (`http::Server` puts it in the
    /// request): the client is gone, the upstream gets close `1001`.
    pub(super) stream_end: Option<ResetSignal>,
}

/// Carries messages between `client` and `upstream` through `hook` until either side closes,
/// fails or goes away, the client's stream is reset, or the server shuts down (both legs then
/// get close `1001`), then ends both legs within `linger`. A side's close goes to the other,
/// whose messages are still carried back, then its close (RFC 6455 5.5.1: who sent a close
/// receives data until the peer's close), for at most `linger`.
pub(super) async fn relay<H: Hook>(
    client: HyperWebsocketStream,
    upstream: HyperWebsocketStream,
    hook: &H,
    session: Session,
    ends: Ends<'_>,
) {
    let Ends {
        linger,
        shutdown,
        stream_end,
    } = ends;
    let peer = Peer(session.peer_addr());
    let mut client = Leg::new(client, "client", false);
    let mut upstream = Leg::new(upstream, "upstream", true);
    let carried = carry(&mut client, &mut upstream, hook, &session, shutdown);
    let ended = match &stream_end {
        None => carried.await,
        // Both legs are still open while messages are carried: the signal is the stream's
        // reset (or its connection gone), not the end of the relay's own writing.
        // Over HTTP/1.1 the signal watches the client's socket, whose reset a session blocked
        // handing a message to the upstream (reading no more of the client) would not see.
        Some(signal) => tokio::select! {
            ended = carried => ended,
            what = std::future::poll_fn(|cx| {
                if signal.poll_raised(cx).is_ready() {
                    return Poll::Ready("stream");
                }
                signal.poll_socket_error(cx).map(|()| "connection")
            }) => {
                tracing::debug!(%peer, upstream = %session.upstream(), "ws relay: the client reset its {what}");
                Ended::Legs(End::Gone, End::Close(going_away()))
            }
        },
    };
    let (client_end, upstream_end) = match ended {
        Ended::Legs(client_end, upstream_end) => (client_end, upstream_end),
        Ended::Closing(direction) => {
            let (closer, other) = match direction {
                Direction::ClientToUpstream => (&mut client, &mut upstream),
                Direction::UpstreamToClient => (&mut upstream, &mut client),
            };
            let back = carry_back(other, closer, hook, &session, reverse(direction));
            let (closer_end, other_end) = match tokio::time::timeout(linger, back).await {
                Ok(ends) => ends,
                Err(_) => {
                    tracing::debug!(%peer, upstream = %session.upstream(), side = other.name, "ws relay: no close answered the close in time");
                    (End::Closing, End::Gone)
                }
            };
            match direction {
                Direction::ClientToUpstream => (closer_end, other_end),
                Direction::UpstreamToClient => (other_end, closer_end),
            }
        }
    };
    let finished = tokio::time::timeout(
        linger,
        futures_util::future::join(client.finish(client_end), upstream.finish(upstream_end)),
    )
    .await;
    if finished.is_err() {
        tracing::debug!(%peer, upstream = %session.upstream(), "ws relay: close handshake timed out");
    }
    tracing::debug!(%peer, upstream = %session.upstream(), "ws relay: session closed");
}

/// The message loop: returns how it ended.
async fn carry<H: Hook>(
    client: &mut Leg,
    upstream: &mut Leg,
    hook: &H,
    session: &Session,
    shutdown: &graceful::Signal,
) -> Ended {
    let peer = Peer(session.peer_addr());
    let close_both = || {
        tracing::debug!(%peer, upstream = %session.upstream(), "ws relay: the server is shutting down, closing both legs with 1001");
        Ended::Legs(End::Close(shutting_down()), End::Close(shutting_down()))
    };
    // Polled only while both legs are idle; a busy session sees the flag at its next message.
    let mut triggered = pin!(shutdown.triggered());
    let mut unflushed = 0;
    loop {
        if shutdown.is_triggered() {
            return close_both();
        }
        // Messages are fed to the other leg unflushed while more are already waiting, and
        // written out once none is: one write for a burst instead of one per message.
        let waiting = if unflushed < MAX_UNFLUSHED {
            next(client, upstream).now_or_never().flatten()
        } else {
            None
        };
        let (direction, item) = match waiting {
            Some(event) => event,
            None => {
                if let Err((client_end, upstream_end)) = flush(client, upstream, peer).await {
                    return Ended::Legs(client_end, upstream_end);
                }
                unflushed = 0;
                let event = tokio::select! {
                    biased;
                    event = next(client, upstream) => event,
                    () = &mut triggered => return close_both(),
                };
                // Both legs were just flushed, so both were read; `None` cannot come here.
                let Some(event) = event else { continue };
                event
            }
        };
        let (from, to) = match direction {
            Direction::ClientToUpstream => (&mut *client, &mut *upstream),
            Direction::UpstreamToClient => (&mut *upstream, &mut *client),
        };
        // Each arm returns (how `from` ends, how `to` ends).
        let (from_end, to_end) = match item {
            Some(Ok(message)) => {
                let Some((message, closing)) = pass(from, message, hook, session, direction) else {
                    continue;
                };
                if let Message::Ping(payload) = &message {
                    if to.pings.len() == MAX_PENDING_PINGS {
                        to.pings.pop_front();
                    }
                    to.pings.push_back(payload.clone());
                }
                // A close goes out at once; the session ends with it.
                let sent = if closing {
                    to.ws.send(message).await
                } else {
                    to.ws.feed(message).await
                };
                match sent {
                    Ok(()) if closing => return Ended::Closing(direction),
                    Ok(()) => {
                        to.unflushed = true;
                        unflushed += 1;
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(%peer, side = to.name, error = %Chain(&error), "ws relay: write failed");
                        let end = if closing {
                            End::Closing
                        } else {
                            End::Close(going_away())
                        };
                        (end, End::Gone)
                    }
                }
            }
            Some(Err(error)) => {
                let answer = answer(&error);
                match &answer {
                    Some(close) => {
                        tracing::warn!(%peer, side = from.name, error = %Chain(&error), code = u16::from(close.code), "ws relay: closing a session that broke the protocol")
                    }
                    None => {
                        tracing::debug!(%peer, side = from.name, error = %Chain(&error), "ws relay: connection lost")
                    }
                }
                (
                    answer.map_or(End::Gone, End::Fail),
                    End::Close(going_away()),
                )
            }
            None => (End::Gone, End::Close(going_away())),
        };
        return match direction {
            Direction::ClientToUpstream => Ended::Legs(from_end, to_end),
            Direction::UpstreamToClient => Ended::Legs(to_end, from_end),
        };
    }
}

/// Once `to`'s close went to `from`: carries `from`'s messages (`direction`) to `to` until
/// `from`'s own close, which goes to `to` last; returns how `to` and `from` end. `to`'s
/// tungstenite takes no frame after the close it read, so they go past it
/// ([`Leg::write_past_close`]).
async fn carry_back<H: Hook>(
    from: &mut Leg,
    to: &mut Leg,
    hook: &H,
    session: &Session,
    direction: Direction,
) -> (End, End) {
    let peer = Peer(session.peer_addr());
    loop {
        let message = match from.ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                let answer = answer(&error);
                tracing::debug!(%peer, side = from.name, error = %Chain(&error), "ws relay: error while waiting for the close");
                return (End::Closing, answer.map_or(End::Gone, End::Fail));
            }
            // Gone without answering: `to` gets the echo of its own close.
            None => return (End::Closing, End::Gone),
        };
        let Some((message, closing)) = pass(from, message, hook, session, direction) else {
            continue;
        };
        if closing {
            return (End::Answer(message), End::Closing);
        }
        if let Err(error) = to.write_past_close(message).await {
            tracing::debug!(%peer, side = to.name, %error, "ws relay: write failed");
            return (End::Gone, End::Closing);
        }
    }
}

/// What of `message`, read from `from`, goes on `direction`: nothing for the pong to a
/// relayed ping or what the hook drops, else what the hook made of it and whether it came as
/// a close (which the hook cannot drop: dropped, it goes as a close without a code).
fn pass<H: Hook>(
    from: &mut Leg,
    message: Message,
    hook: &H,
    session: &Session,
    direction: Direction,
) -> Option<(Message, bool)> {
    if from.answers_relayed_ping(&message) {
        return None;
    }
    let closing = message.is_close();
    let message = match hook.on_message(session, direction, message) {
        Some(message) => message,
        None if closing => Message::Close(None),
        None => return None,
    };
    tracing::trace!(peer = %Peer(session.peer_addr()), %direction, opcode = super::opcode(&message), len = message.len(), "ws relay: message");
    Some((message, closing))
}

/// The way back of `direction`.
fn reverse(direction: Direction) -> Direction {
    match direction {
        Direction::ClientToUpstream => Direction::UpstreamToClient,
        Direction::UpstreamToClient => Direction::ClientToUpstream,
    }
}

/// The next message from either leg, read from a leg only while nothing fed to it waits
/// unflushed: a close read from it makes its tungstenite queue the echo behind what waits,
/// and the relay must send what waits without that echo (the other side's messages and close
/// go first). `None` when both legs wait for their flush.
async fn next(
    client: &mut Leg,
    upstream: &mut Leg,
) -> Option<(Direction, Option<Result<Message, tungstenite::Error>>)> {
    tokio::select! {
        item = client.ws.next(), if !client.unflushed => Some((Direction::ClientToUpstream, item)),
        item = upstream.ws.next(), if !upstream.unflushed => Some((Direction::UpstreamToClient, item)),
        else => None,
    }
}

/// Writes out what was fed to either leg; on a failed write, how the legs end (client's,
/// upstream's).
async fn flush(client: &mut Leg, upstream: &mut Leg, peer: Peer) -> Result<(), (End, End)> {
    for (leg, ends) in [
        (&mut *client, (End::Gone, End::Close(going_away()))),
        (&mut *upstream, (End::Close(going_away()), End::Gone)),
    ] {
        if !leg.unflushed {
            continue;
        }
        if let Err(error) = leg.ws.flush().await {
            tracing::debug!(%peer, side = leg.name, error = %Chain(&error), "ws relay: write failed");
            return Err(ends);
        }
        leg.unflushed = false;
    }
    Ok(())
}

/// Reads (and drops) until the session's connection ends: the close reply, and what the
/// peer sent before it saw our close.
pub(super) async fn drain_messages(ws: &mut HyperWebsocketStream) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// The close that answers a read error, or `None` when the connection is gone (nothing can be
/// sent).
pub(super) fn answer(error: &tungstenite::Error) -> Option<CloseFrame> {
    use tungstenite::{Error, error::ProtocolError};
    let (code, reason) = match error {
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Io(_)
        | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
        Error::Capacity(_) => (CloseCode::Size, "message too big"),
        Error::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        Error::Utf8(_) => (CloseCode::Invalid, "invalid utf-8"),
        _ => (CloseCode::Error, "internal error"),
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Answers a peer whose stream cannot be parsed any more: sends `close`, shuts the connection
/// down and discards what it still sends, so that the close is read before the connection
/// ends (closing a socket with unread bytes resets it, and a reset can overtake the close).
/// Bounded by the caller's timeout.
pub(super) async fn fail(ws: &mut HyperWebsocketStream, close: CloseFrame) {
    if ws.send(Message::Close(Some(close))).await.is_ok() {
        shut_and_discard(ws.get_mut()).await;
    }
}

/// Shuts `io`'s sending side down and discards what the peer still sends until it closes.
async fn shut_and_discard<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut discard = vec![0; 16 * 1024];
    while let Ok(1..) = io.read(&mut discard).await {}
}

/// The close every open session gets when the server shuts down: `1001`, as a browser
/// expects from a server that goes away.
pub(super) fn shutting_down() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Away,
        reason: "the server is shutting down".into(),
    }
}

/// The close a healthy leg gets when the other one ended without a close of its own.
fn going_away() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Away,
        reason: "the other side went away".into(),
    }
}

impl Leg {
    fn new(ws: HyperWebsocketStream, name: &'static str, masked: bool) -> Self {
        Self {
            ws,
            masked,
            pings: VecDeque::new(),
            name,
            unflushed: false,
        }
    }

    /// Whether `message` is the pong to a ping relayed to this side, which is then forgotten:
    /// the side that pinged was already answered by its own leg (tungstenite replies on
    /// read), so a second pong must not reach it.
    fn answers_relayed_ping(&mut self, message: &Message) -> bool {
        let Message::Pong(payload) = message else {
            return false;
        };
        let Some(at) = self.pings.iter().position(|p| p == payload) else {
            return false;
        };
        self.pings.remove(at);
        true
    }

    /// Writes `message` as one frame straight to the connection: this side closed first, and
    /// its tungstenite takes no frame after the close it read (and would send the echo of that
    /// close with the next write), while the other side's messages and close are still due.
    async fn write_past_close(&mut self, message: Message) -> io::Result<()> {
        let mut frame = match message {
            Message::Text(text) => Frame::message(text, OpCode::Data(Data::Text), true),
            Message::Binary(data) => Frame::message(data, OpCode::Data(Data::Binary), true),
            Message::Ping(data) => Frame::ping(data),
            Message::Pong(data) => Frame::pong(data),
            Message::Close(close) => Frame::close(close),
            Message::Frame(frame) => frame,
        };
        if self.masked {
            let mut mask = [0; 4];
            crate::tls::provider()
                .secure_random
                .fill(&mut mask)
                .map_err(|_| io::Error::other("no random source for a frame's mask"))?;
            frame.header_mut().mask = Some(mask);
        }
        let mut bytes = Vec::with_capacity(frame.len());
        frame.format(&mut bytes).map_err(io::Error::other)?;
        let io = self.ws.get_mut();
        io.write_all(&bytes).await?;
        io.flush().await
    }

    /// Ends this leg as `end` says.
    async fn finish(&mut self, end: End) {
        match end {
            // Shut now, not when the session ends: the legs are dropped only then (and a
            // client's connection, which hyper's upgraded stream shares with the HTTP
            // connection, ends only with that), so a peer that never answered a close would be
            // held open while the other leg's close handshake runs on, up to another close
            // timeout. On a connection that is really gone the shutdown just fails.
            End::Gone => {
                let _ = self.ws.get_mut().shutdown().await;
            }
            End::Closing => drain_messages(&mut self.ws).await,
            End::Answer(close) => {
                if self.write_past_close(close).await.is_ok() {
                    shut_and_discard(self.ws.get_mut()).await;
                }
            }
            End::Close(close) => {
                if self.ws.send(Message::Close(Some(close))).await.is_ok() {
                    drain_messages(&mut self.ws).await;
                }
            }
            End::Fail(close) => fail(&mut self.ws, close).await,
        }
    }
}
