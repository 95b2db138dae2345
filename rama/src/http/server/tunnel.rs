//! The end of an HTTP/2 `CONNECT` stream, told to its tunnel's relay (RFC 9113 8.5: a reset
//! stream closes the TCP connection to the target).
//!
//! hyper turns a `CONNECT` stream answered `2xx` into an `Upgraded`, and spawns a task that
//! sends the tunnel's bytes to the client and watches the stream for a reset
//! (`SendStream::poll_reset`): a client's `RST_STREAM`, or the connection gone (`h2` fails its
//! streams then), ends that task at once. The `Upgraded` the relay holds learns of it only
//! when written to, or read past the data `h2` still holds for it; a relay blocked on an
//! upstream that does not read does neither (see `io::ResetSignal`). hyper's `Upgraded`
//! exposes no stream handle, so the task's end is the signal: the bridge marks the stream's
//! task when the service answers the `CONNECT` ([`watch`]), and hyper spawns the sending task from
//! that same poll, right after it hands out the `Upgraded`; the connection's executor gives
//! the mark to that task, which raises the relay's [`ResetSignal`] when it ends.
//!
//! The task also ends, without a reset, once the relay shut the tunnel's client side down (the
//! upstream ended first): the relay ignores the signal from then on (`Relay::with_reset`).
//! What costs the others: one look at the current task per task hyper spawns (an HTTP/2
//! stream), nothing per request on HTTP/1.1 and nothing per byte.

use super::stall;
use crate::io::ResetSignal;
use std::{
    future::{Future, poll_fn},
    pin::pin,
    task::Poll,
};

/// Called by the bridge when the service answered an HTTP/2 `CONNECT` with `2xx` (`101` to a
/// WebSocket), from the stream's task, as it returns the answer: the end of the tunnel's
/// sending half, which hyper spawns next, raises `signal`. Outside a connection's task it
/// does nothing, and nothing will raise the signal.
pub(super) fn watch(signal: ResetSignal) {
    stall::mark_tunnel(signal);
}

/// `task`, as hyper's executor runs it: the sending half of a tunnel when the task spawning
/// it was marked by [`watch`], raising that tunnel's signal when it ends (completed or
/// dropped with the connection).
///
/// Once the relay failed (the upstream reset its connection: the signal is aborted), the
/// task is dropped at its next poll (the relay letting go of the `Upgraded` wakes it) rather
/// than polled: polled, it would end the stream with `END_STREAM`, which tells the client
/// the tunnel finished; dropped with the `Upgraded`'s receiving half gone too, `h2` resets
/// the stream (`CANCEL`: RFC 9113 8.5 asks for `CONNECT_ERROR`, which hyper's handles have
/// no way to send).
pub(super) fn spawned<F>(task: F) -> super::conn::LocalTask
where
    F: Future<Output = ()> + 'static,
{
    match stall::take_tunnel() {
        None => Box::pin(task),
        Some(signal) => Box::pin(async move {
            let _raise = RaiseOnDrop(signal.clone());
            let mut task = pin!(task);
            poll_fn(|cx| {
                if signal.is_aborted() {
                    Poll::Ready(())
                } else {
                    task.as_mut().poll(cx)
                }
            })
            .await;
        }),
    }
}

/// Raises its signal when dropped: with the task that holds it, however it ends.
struct RaiseOnDrop(ResetSignal);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}
