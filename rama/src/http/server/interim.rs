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
//! whose upstream sends none: the wait checks one flag per wake-up.

use super::super::h1::codec::{self, Framing, ResponseFraming};
use ::http::{HeaderMap, StatusCode};
use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicBool, Ordering},
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
}

impl Interim {
    /// Keeps a `1xx` head (`status` with `headers`, which come without the hop-by-hop fields)
    /// for the client, if the own path serves it; `100 Continue` (which the own path never has
    /// a request for: those with `Expect` are hyper's) and `101` are not passed on.
    pub(crate) fn offer(&self, status: StatusCode, headers: &HeaderMap) {
        if !self.armed.load(Ordering::Relaxed)
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
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// Whether the own path serves the connection (and so takes what is offered).
    pub(super) fn arm(&self, armed: bool) {
        self.armed.store(armed, Ordering::Relaxed);
        if !armed {
            self.take(&mut Vec::new());
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
}
