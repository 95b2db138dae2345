//! Wake-ups a connection gives itself while it is being polled, kept inside that poll.
//!
//! Why: an HTTP/2 stream runs inside its connection's poll, after hyper's part of it. When the
//! stream finishes an answer it hands the frames to hyper's connection, which wakes the
//! connection to write them. Passed on to the server, that wake-up puts the connection at the
//! back of the server's queue, the answer waits a whole pass to be written, and the server's
//! pass ends early: `FuturesUnordered` yields after two of its futures woke themselves, so
//! with HTTP/2 a pass held about two connections and its writes went out in small bursts
//! (see `io::batch`). Kept here, the connection polls itself again at once, up to
//! [`ROUNDS`] times, and the answer leaves in the pass in which the upstream's answer came.
//!
//! Measured on h2c (h2load 64 x 10 through the reverse proxy, 6 alternating rounds, server
//! threads under `SCHED_BATCH`): 68.0k → 69.6k requests/s, p99 27.8 → 24.0 ms, CPU per request
//! 15.9 → 15.6 µs. Under the default policy a connection's poll now writes 1.1 times on
//! average, against 0.7 before: the rest were polls that found nothing to do.

use futures_util::task::AtomicWaker;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Wake, Waker},
};

/// How many times one poll of a connection runs while it keeps waking itself; past that the
/// wake-up goes to the server, so that one busy connection does not hold up the others.
pub(super) const ROUNDS: usize = 4;

/// The waker a connection polls its parts with (see the module's doc).
pub(super) struct SelfWake {
    state: Arc<State>,
    waker: Waker,
}

struct State {
    /// Whether the connection is being polled: a wake-up then only marks `woken`.
    polling: AtomicBool,
    woken: AtomicBool,
    /// The server's waker, registered by every poll.
    outer: AtomicWaker,
}

impl Wake for State {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        // Read after the mark: a poll that ended in between either saw the mark or is seen
        // here as ended, so no wake-up is lost (at worst the server gets one it did not need).
        if !self.polling.load(Ordering::SeqCst) {
            self.outer.wake();
        }
    }
}

impl SelfWake {
    pub(super) fn new() -> Self {
        let state = Arc::new(State {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            outer: AtomicWaker::new(),
        });
        let waker = Waker::from(state.clone());
        Self { state, waker }
    }

    /// Starts a poll under `cx`: wake-ups are kept until [`SelfWake::end`]. The context to
    /// poll the connection's parts with is made from [`SelfWake::waker`].
    pub(super) fn begin(&self, cx: &Context<'_>) {
        self.state.outer.register(cx.waker());
        self.state.woken.store(false, Ordering::SeqCst);
        self.state.polling.store(true, Ordering::SeqCst);
    }

    pub(super) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Whether a part woke the connection since the last call: poll again.
    pub(super) fn take_woken(&self) -> bool {
        self.state.woken.swap(false, Ordering::SeqCst)
    }

    /// Ends the poll; a wake-up still kept goes to the server.
    pub(super) fn end(&self) {
        self.state.polling.store(false, Ordering::SeqCst);
        if self.take_woken() {
            self.state.outer.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SelfWake;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Context, Wake, Waker},
    };

    /// The server's waker: counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn server() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_wake_up_inside_the_poll_is_kept_and_asks_for_another_round() {
        let (count, waker) = server();
        let wake = SelfWake::new();
        wake.begin(&Context::from_waker(&waker));
        wake.waker().wake_by_ref();
        assert!(wake.take_woken());
        assert!(!wake.take_woken());
        wake.end();
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wake_up_left_at_the_end_of_the_poll_goes_to_the_server() {
        let (count, waker) = server();
        let wake = SelfWake::new();
        wake.begin(&Context::from_waker(&waker));
        wake.waker().wake_by_ref();
        wake.end();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_up_between_polls_goes_to_the_server_once() {
        let (count, waker) = server();
        let wake = SelfWake::new();
        wake.begin(&Context::from_waker(&waker));
        wake.end();
        wake.waker().wake_by_ref();
        // The server's waker is spent until the next poll registers it again.
        wake.waker().wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // And a poll begun after it starts clean.
        wake.begin(&Context::from_waker(&waker));
        assert!(!wake.take_woken());
        wake.end();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
