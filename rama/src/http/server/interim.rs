//! Informational responses (`103 Early Hints`, `102 Processing`, ...) an upstream sends ahead
//! of its final response, on their way to the client of the server's own HTTP/1.1 path (RFC
//! 9110 15.2: a proxy forwards them, unless it asked for them itself).
//!
//! Neither tower's `Service` nor `http::Response` has a place for a response before the
//! response, so they go beside it: the connection's [`ConnFacts`](super::ConnFacts), which
//! every request the server hands on carries and the client takes to its upstream, holds an
//! [`Interim`]; rama's own HTTP/1.1 client, reading past a `1xx` head, looks the facts up (on
//! that head only) and leaves the head there, encoded, and the own server path writes what is
//! there while it waits for the final response. Nothing is looked up or written for a request
//! whose upstream sends none: the wait checks one flag per wake-up. hyper's HTTP/1.1 client
//! (an upstream over TLS, or one a request is routed to) reads them past as well, and tells
//! a callback the request carries ([`relay_through_hyper`]) of each, from the task of its
//! own connection: an offer from there wakes the server's wait.

use super::{
    super::{
        h1::codec::{self, Framing, ResponseFraming},
        headers,
    },
    ConnFacts,
};
use ::http::{HeaderMap, Request, StatusCode};
use futures_util::task::AtomicWaker;
use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::Context,
};

/// At most this many bytes of informational heads wait for a client, in the connection's
/// [`Interim`] and again in what the own path has taken out to write: past that the client is
/// not reading them, and an upstream that sends `103`s without end must not grow the
/// proxy's memory with it. Further heads are dropped (they are hints; the final response
/// still goes). A head's own limit.
const MAX_WAITING: usize = 64 * 1024;

/// The informational heads waiting to be written to a connection's client.
#[derive(Debug, Default)]
pub(crate) struct Interim {
    /// The own HTTP/1.1 path serves the connection: someone will take the heads. (Not on
    /// hyper's paths: HTTP/2, or HTTP/1.1 after a hand-over, where heads would only pile up.)
    armed: AtomicBool,
    /// `heads` holds something: checked on every wake-up of the wait, so a flag rather than
    /// the lock.
    waiting: AtomicBool,
    heads: Mutex<Vec<u8>>,
    /// Heads may be offered from another task (hyper's connection): the wait registers in
    /// `wait` for them. Set for the rest of the connection by the first such request.
    remote: AtomicBool,
    wait: AtomicWaker,
}

impl Interim {
    /// Keeps a `1xx` head (`status` with `headers`, which come without the hop-by-hop fields)
    /// for the client, if the own path serves it; `100 Continue` (which the own path never has
    /// a request for: those with `Expect` are hyper's) and `101` are not passed on.
    pub(crate) fn offer(&self, status: StatusCode, headers: &HeaderMap) {
        if !self.is_armed()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return;
        }
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        if heads.len() >= MAX_WAITING {
            return;
        }
        let framing = ResponseFraming {
            body: Framing::Empty,
            close: false,
            keep_alive: false,
        };
        codec::encode_response_head(status, headers, framing, None, &mut heads);
        drop(heads);
        // Before the wake, whose ordering makes it seen by a wait that registers after it.
        self.waiting.store(true, Ordering::Relaxed);
        self.wait.wake();
    }

    /// Whether the own path serves the connection (and so takes what is offered).
    pub(super) fn arm(&self, armed: bool) {
        self.armed.store(armed, Ordering::Relaxed);
        if !armed {
            self.take(&mut Vec::new());
            // The waker is the serving task's, which these facts must not keep alive.
            self.remote.store(false, Ordering::Relaxed);
            drop(self.wait.take());
        }
    }

    /// Has an offer from another task wake the task of `cx`, when such offers may come: call
    /// before [`take`](Self::take). A load, for a connection whose upstreams are rama's own.
    #[inline]
    pub(super) fn watch(&self, cx: &Context<'_>) {
        if self.remote.load(Ordering::Relaxed) {
            self.wait.register(cx.waker());
        }
    }

    /// Moves the waiting heads to the end of `out` (unless `out` holds [`MAX_WAITING`] bytes
    /// already: the client is not taking them); whether there were any. Inlined: it runs
    /// several times per request, and a load is all it is for one without informational heads.
    #[inline]
    pub(super) fn take(&self, out: &mut Vec<u8>) -> bool {
        if !self.waiting.load(Ordering::Relaxed) {
            return false;
        }
        self.take_waiting(out);
        true
    }

    /// Whether the own path serves the connection.
    fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    #[cold]
    fn take_waiting(&self, out: &mut Vec<u8>) {
        if out.len() >= MAX_WAITING {
            return;
        }
        let mut heads = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        out.append(&mut heads);
        self.waiting.store(false, Ordering::Relaxed);
    }
}

/// Has hyper's HTTP/1.1 client, which `request` is about to go through, offer the `1xx` heads
/// its upstream sends to the request's client connection, as rama's own client does (nothing
/// when the request came from no server of rama's, or from a connection the own path does not
/// serve: no one would take them). Over HTTP/2 hyper tells no one of them.
pub(crate) fn relay_through_hyper<B>(request: &mut Request<B>) {
    let Some(facts) = request.extensions().get::<ConnFacts>() else {
        return;
    };
    if !facts.interim().is_armed() {
        return;
    }
    facts.interim().remote.store(true, Ordering::Relaxed);
    let facts = facts.clone();
    hyper::ext::on_informational(request, move |head| {
        // hyper's map has every field of the head; the own client's never held the
        // hop-by-hop ones.
        let mut fields = head.headers().clone();
        headers::remove_hop_by_hop(&mut fields);
        facts.interim().offer(head.status(), &fields);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::{HeaderValue, header};

    #[test]
    fn heads_a_client_does_not_take_stay_bounded() {
        let interim = Interim::default();
        interim.arm(true);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static("</style.css>; rel=preload"),
        );
        let mut early = Vec::new();
        // An upstream that sends hints without end, to a client that reads none of them: the
        // server takes them out each time it wakes, and never gets to write them.
        for _ in 0..10_000 {
            interim.offer(StatusCode::EARLY_HINTS, &headers);
            interim.take(&mut early);
        }
        let waiting = interim.heads.lock().unwrap().len();
        let head = early.len() / early.windows(4).filter(|w| w == b"\r\n\r\n").count();
        assert!(early.len() < MAX_WAITING + head, "{}", early.len());
        assert!(waiting < MAX_WAITING + head, "{waiting}");
        assert!(early.starts_with(b"HTTP/1.1 103 Early Hints\r\n"));
        // Once the client takes them, the next hints go again.
        early.clear();
        interim.take(&mut early);
        assert!(!early.is_empty());
        early.clear();
        interim.offer(StatusCode::EARLY_HINTS, &headers);
        interim.take(&mut early);
        assert!(early.starts_with(b"HTTP/1.1 103"));
    }

    /// Counts its wakes.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_offer_from_elsewhere_wakes_the_wait_and_a_disarmed_interim_lets_its_waker_go() {
        let interim = Interim::default();
        interim.arm(true);
        let wakes = std::sync::Arc::new(Wakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let cx = Context::from_waker(&waker);
        // Offers from the serving task itself: nothing registers, nothing wakes.
        interim.watch(&cx);
        interim.offer(StatusCode::EARLY_HINTS, &HeaderMap::new());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert_eq!(std::sync::Arc::strong_count(&wakes), 2);
        // Once offers may come from elsewhere, each wakes the wait that watched.
        interim.remote.store(true, Ordering::Relaxed);
        interim.watch(&cx);
        interim.offer(StatusCode::EARLY_HINTS, &HeaderMap::new());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        interim.watch(&cx);
        assert_eq!(std::sync::Arc::strong_count(&wakes), 3);
        interim.arm(false);
        assert_eq!(std::sync::Arc::strong_count(&wakes), 2);
        assert!(!interim.take(&mut Vec::new()));
    }
}
