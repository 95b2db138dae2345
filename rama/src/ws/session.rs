//! The life of a relayed session: messages both ways through the hook, then the close on both
//! legs. Also the answer to a peer that breaks the protocol, shared with [`Socket`](super::Socket).

use super::{
    CloseCode, CloseFrame, Message,
    hook::{Direction, Hook, Session},
};
use crate::{error::Chain, graceful, http::forward::Peer};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper_tungstenite::{HyperWebsocketStream, tungstenite};
use std::{collections::VecDeque, pin::pin, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Relayed pings whose pongs are still due, per side; older ones are forgotten (their pong,
/// if it ever comes, is then carried like an unsolicited one).
const MAX_PENDING_PINGS: usize = 16;

/// Messages relayed back to back before both legs are flushed anyway, so that a sender that
/// never pauses does not hold back what was already relayed.
const MAX_UNFLUSHED: usize = 64;

/// How one leg ends once the relay stops carrying messages.
#[derive(Debug)]
enum End {
    /// The leg's connection is gone: nothing to send.
    Gone,
    /// A close went to it or came from it: read until its connection ends (the close reply).
    Closing,
    /// Tell it the session is over, then read until its connection ends.
    Close(CloseFrame),
    /// It broke the protocol: answer with this close, shut the connection and discard what it
    /// still sends (its stream cannot be parsed any more).
    Fail(CloseFrame),
}

/// One side of the relay.
struct Leg {
    ws: HyperWebsocketStream,
    /// Payloads of the pings relayed *to* this side whose pongs are still due.
    pings: VecDeque<Bytes>,
    /// `client` or `upstream`, for logs.
    name: &'static str,
    /// Whether messages were fed to it and not yet flushed.
    unflushed: bool,
}

/// Carries messages between `client` and `upstream` through `hook` until either side closes,
/// fails or goes away, or the server shuts down (both legs then get close `1001`), then ends
/// both legs within `linger`.
pub(super) async fn relay<H: Hook>(
    client: HyperWebsocketStream,
    upstream: HyperWebsocketStream,
    hook: &H,
    session: Session,
    linger: Duration,
    shutdown: &graceful::Signal,
) {
    let mut client = Leg::new(client, "client");
    let mut upstream = Leg::new(upstream, "upstream");
    let (client_end, upstream_end) =
        carry(&mut client, &mut upstream, hook, &session, shutdown).await;
    let finished = tokio::time::timeout(
        linger,
        futures_util::future::join(
            finish(&mut client.ws, client_end),
            finish(&mut upstream.ws, upstream_end),
        ),
    )
    .await;
    if finished.is_err() {
        tracing::debug!(peer = %Peer(session.peer_addr()), upstream = %session.upstream(), "ws relay: close handshake timed out");
    }
    tracing::debug!(peer = %Peer(session.peer_addr()), upstream = %session.upstream(), "ws relay: session closed");
}

/// The message loop: returns how the client's and the upstream's legs end.
async fn carry<H: Hook>(
    client: &mut Leg,
    upstream: &mut Leg,
    hook: &H,
    session: &Session,
    shutdown: &graceful::Signal,
) -> (End, End) {
    let peer = Peer(session.peer_addr());
    let close_both = || {
        tracing::debug!(%peer, upstream = %session.upstream(), "ws relay: the server is shutting down, closing both legs with 1001");
        (End::Close(shutting_down()), End::Close(shutting_down()))
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
            next(client, upstream).now_or_never()
        } else {
            None
        };
        let (direction, item) = match waiting {
            Some(event) => event,
            None => {
                if let Err(ends) = flush(client, upstream, peer).await {
                    return ends;
                }
                unflushed = 0;
                tokio::select! {
                    biased;
                    event = next(client, upstream) => event,
                    () = &mut triggered => return close_both(),
                }
            }
        };
        let (from, to) = match direction {
            Direction::ClientToUpstream => (&mut *client, &mut *upstream),
            Direction::UpstreamToClient => (&mut *upstream, &mut *client),
        };
        // Each arm returns (how `from` ends, how `to` ends).
        let (from_end, to_end) = match item {
            Some(Ok(message)) => {
                if let Message::Pong(payload) = &message
                    && let Some(at) = from.pings.iter().position(|p| p == payload)
                {
                    // The answer to a ping we relayed to `from`: its sender was already
                    // answered by its own leg (tungstenite replies on read), so a second pong
                    // must not reach it.
                    from.pings.remove(at);
                    continue;
                }
                let closing = message.is_close();
                let message = match hook.on_message(session, direction, message) {
                    Some(message) => message,
                    None if closing => Message::Close(None),
                    None => continue,
                };
                tracing::trace!(%peer, %direction, opcode = super::opcode(&message), len = message.len(), "ws relay: message");
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
                    Ok(()) if closing => (End::Closing, End::Closing),
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
            Direction::ClientToUpstream => (from_end, to_end),
            Direction::UpstreamToClient => (to_end, from_end),
        };
    }
}

/// The next message from either leg.
async fn next(
    client: &mut Leg,
    upstream: &mut Leg,
) -> (Direction, Option<Result<Message, tungstenite::Error>>) {
    tokio::select! {
        item = client.ws.next() => (Direction::ClientToUpstream, item),
        item = upstream.ws.next() => (Direction::UpstreamToClient, item),
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

/// Ends one leg as `end` says.
async fn finish(ws: &mut HyperWebsocketStream, end: End) {
    match end {
        End::Gone => {}
        End::Closing => drain_messages(ws).await,
        End::Close(close) => {
            if ws.send(Message::Close(Some(close))).await.is_ok() {
                drain_messages(ws).await;
            }
        }
        End::Fail(close) => fail(ws, close).await,
    }
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
    if ws.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    let io = ws.get_mut();
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
    fn new(ws: HyperWebsocketStream, name: &'static str) -> Self {
        Self {
            ws,
            pings: VecDeque::new(),
            name,
            unflushed: false,
        }
    }
}
