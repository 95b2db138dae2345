//! The send timeout of an HTTP/2 stream: a client that stops taking a response it asked for
//! (its flow-control window left shut, or its socket unread while other streams move) has
//! that stream reset, as nginx's `send_timeout` resets it. Without it such a stream held its
//! upstream exchange (an upstream connection, a file descriptor) for as long as the client
//! kept the connection, which a `PING` now and then keeps for ever.
//!
//! hyper asks a response body for more only once the stream has room to send it, so a stream
//! whose client takes nothing is simply never polled: nothing inside it can time out. What
//! can be seen is the body's side of it: [`Held`] notes when it handed hyper something (the
//! head, or a frame) and hyper did not come back for more; the connection's idle check,
//! once a period, resets the streams that waited a whole period ([`Slot::kill`]), by ending
//! their tasks ([`Task`]): hyper's stream handles dropped, `h2` sends `RST_STREAM`.
//!
//! The slots also carry the count of streams the client cancelled after the service had
//! them ([`cancelled`]), which the connection reads for rapid reset, and the mark of a stream
//! that answered an HTTP/2 `CONNECT` ([`mark_tunnel`], see `tunnel`).

use crate::io::ResetSignal;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    cell::{Cell, RefCell},
    future::Future,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

thread_local! {
    /// The slot of the connection task being polled: how a response body made inside an
    /// HTTP/2 stream's task finds that task.
    static CURRENT: Cell<Option<Rc<Slot>>> = const { Cell::new(None) };
    /// Slots of ended tasks, for the next ones: an allocation per HTTP/2 stream was one more
    /// that glibc's per-thread cache misses with hundreds of streams in flight.
    static SPARE: RefCell<Vec<Rc<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// How many spare slots a thread keeps.
const SPARES: usize = 1024;

/// What a connection's tasks share with it.
#[derive(Default)]
pub(super) struct Ledger {
    /// The idle check's generation, one more each period.
    pub(super) generation: Cell<u64>,
    /// How many of the connection's requests were dropped unanswered while the service had
    /// them: a client's `RST_STREAM` (see [`cancelled`]).
    pub(super) cancelled: Cell<usize>,
    /// The connection's peer, for what its tasks log.
    pub(super) peer: Cell<Option<SocketAddr>>,
}

/// Counts a request the service had and that was dropped unanswered, against the
/// connection whose task is dropping it. Outside a task (hyper's HTTP/1.1, where the client
/// closing the connection is the only way to drop one) it counts nowhere.
pub(super) fn cancelled() {
    let current = CURRENT.take();
    if let Some(slot) = &current {
        let cancelled = &slot.ledger.cancelled;
        cancelled.set(cancelled.get() + 1);
    }
    CURRENT.set(current);
}

/// Marks the task being polled (an HTTP/2 stream) as one that answered a `CONNECT`: the next
/// task it spawns takes `signal` (see [`take_tunnel`]). Outside a connection's task, nothing.
pub(super) fn mark_tunnel(signal: ResetSignal) {
    let current = CURRENT.take();
    if let Some(slot) = &current {
        slot.tunnel.set(Some(signal));
    }
    CURRENT.set(current);
}

/// The signal [`mark_tunnel`] left on the task being polled, taken.
pub(super) fn take_tunnel() -> Option<ResetSignal> {
    let current = CURRENT.take();
    let signal = current.as_ref().and_then(|slot| slot.tunnel.take());
    CURRENT.set(current);
    signal
}

/// What the connection knows of one of its tasks.
pub(super) struct Slot {
    /// The connection's ledger (shared by its slots).
    ledger: Rc<Ledger>,
    /// The generation at which the task's response body last handed hyper something that
    /// hyper did not come back after; `None` while it waits on its own source, or has ended.
    held_since: Cell<Option<u64>>,
    /// The task's waker, from when the body last handed something: to end the task, it has
    /// to be polled once more.
    waker: RefCell<Option<Waker>>,
    killed: Cell<bool>,
    /// Set while the task (an HTTP/2 stream) has answered a `CONNECT` and hyper has not yet
    /// spawned that tunnel's sending half from it (see `tunnel`).
    tunnel: Cell<Option<ResetSignal>>,
}

impl Slot {
    /// Notes that the body handed hyper something (with `waker`, its task's).
    fn hold(&self, waker: &Waker) {
        self.held_since.set(Some(self.ledger.generation.get()));
        let mut stored = self.waker.borrow_mut();
        match stored.as_ref() {
            Some(stored) if stored.will_wake(waker) => {}
            _ => *stored = Some(waker.clone()),
        }
    }

    /// Whether the body has waited on the client since before the previous period began.
    pub(super) fn stalled(&self) -> bool {
        self.held_since
            .get()
            .is_some_and(|since| since + 1 < self.ledger.generation.get())
    }

    /// Ends the task at its next poll, and wakes it for that.
    pub(super) fn kill(&self) {
        self.killed.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// A task of the connection (an HTTP/2 stream, a tunnel, what a service spawned), with its
/// slot; while it is polled, its slot is the thread's current one.
pub(super) struct Task {
    slot: Rc<Slot>,
    future: Pin<Box<dyn Future<Output = ()>>>,
}

impl Task {
    pub(super) fn new(future: Pin<Box<dyn Future<Output = ()>>>, ledger: &Rc<Ledger>) -> Self {
        let spare = SPARE.with_borrow_mut(Vec::pop).and_then(|mut slot| {
            // A spare nothing else holds (as `Drop` keeps them): this task's alone.
            Rc::get_mut(&mut slot)?.ledger.clone_from(ledger);
            Some(slot)
        });
        let slot = spare.unwrap_or_else(|| {
            Rc::new(Slot {
                ledger: ledger.clone(),
                held_since: Cell::new(None),
                waker: RefCell::new(None),
                killed: Cell::new(false),
                tunnel: Cell::new(None),
            })
        });
        Self { slot, future }
    }

    pub(super) fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // The future first: a response body inside it holds the slot too; and as the current
        // task, for what it drops unanswered to be counted (see [`cancelled`]).
        // (A zero-sized future: no allocation.)
        let previous = CURRENT.replace(Some(self.slot.clone()));
        self.future = Box::pin(std::future::pending());
        CURRENT.set(previous);
        let slot = &self.slot;
        // A stream that answered a `CONNECT` and ended before hyper spawned from it: nothing
        // took the mark, and the slot's next task must not.
        slot.tunnel.take();
        if Rc::strong_count(slot) == 1 {
            slot.held_since.set(None);
            slot.waker.take();
            slot.killed.set(false);
            SPARE.with_borrow_mut(|spare| {
                if spare.len() < SPARES {
                    spare.push(slot.clone());
                }
            });
        }
    }
}

impl Future for Task {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.killed.get() {
            return Poll::Ready(());
        }
        let previous = CURRENT.replace(Some(self.slot.clone()));
        let poll = self.future.as_mut().poll(cx);
        CURRENT.set(previous);
        poll
    }
}

/// Marks no task as current while a connection is polled, and restores the outer one after
/// (an HTTP server inside a tunnel runs inside the outer connection's task: its responses
/// are not that task's).
pub(super) struct Outside {
    previous: Option<Rc<Slot>>,
}

impl Outside {
    pub(super) fn enter() -> Self {
        Self {
            previous: CURRENT.take(),
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        CURRENT.set(self.previous.take());
    }
}

pin_project! {
    /// A response body that tells its task's [`Slot`] when it waits on hyper (and so on the
    /// client). Outside a task (hyper's HTTP/1.1, which runs on the connection's own future)
    /// it tells no one.
    pub(crate) struct Held<B> {
        #[pin]
        body: B,
        slot: Option<Rc<Slot>>,
    }
}

impl<B: Body> Held<B> {
    /// `body`, handed to hyper with its head now (by the task polled with `cx`).
    pub(super) fn new(body: B, cx: &Context<'_>) -> Self {
        let current = CURRENT.take();
        CURRENT.set(current.clone());
        let slot = current.filter(|_| !body.is_end_stream());
        if let Some(slot) = &slot {
            slot.hold(cx.waker());
        }
        Self { body, slot }
    }
}

impl<B: Body> Body for Held<B>
where
    B::Error: Into<crate::BoxError>,
{
    type Data = B::Data;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, crate::BoxError>>> {
        let this = self.project();
        let poll = this.body.poll_frame(cx);
        let Some(slot) = this.slot else {
            return poll.map(|frame| frame.map(|frame| frame.map_err(Into::into)));
        };
        let Poll::Ready(frame) = poll else {
            // Waiting on its own source, not on the client.
            slot.held_since.set(None);
            return Poll::Pending;
        };
        match frame {
            Some(Ok(frame)) => {
                slot.hold(cx.waker());
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                slot.held_since.set(None);
                let error = error.into();
                // hyper resets the stream and says nothing above `debug`; on HTTP/1.1 the
                // connection's end is logged (an upstream that cut its body short, say).
                let peer = crate::http::forward::Peer(slot.ledger.peer.get());
                tracing::warn!(%peer, error = %crate::error::Chain(&*error), "http2: the response body failed, resetting the stream");
                Poll::Ready(Some(Err(error)))
            }
            None => {
                slot.held_since.set(None);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_body_waiting_on_hyper_through_a_whole_period_is_stalled() {
        let ledger = Rc::new(Ledger::default());
        let slot = Rc::new(Slot {
            ledger: ledger.clone(),
            held_since: Cell::new(None),
            waker: RefCell::new(None),
            killed: Cell::new(false),
            tunnel: Cell::new(None),
        });
        let waker = Waker::noop();
        slot.hold(waker);
        assert!(!slot.stalled());
        ledger.generation.set(1);
        assert!(!slot.stalled(), "held for less than a whole period");
        ledger.generation.set(2);
        assert!(slot.stalled());
        // Hyper came back: no longer waiting on the client.
        slot.held_since.set(None);
        assert!(!slot.stalled());
    }
}
