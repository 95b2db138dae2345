//! The response timeout of bodies that stream, both ways.
//!
//! [`Client`](super::Client)'s response timeout bounds the wait for a response head, and an
//! upstream answers an upload after it took the body: a fixed deadline would bound the whole
//! upload (any upload longer than 60 s failed with `504` while its bytes moved). nginx bounds
//! the time between two writes to the upstream and between two reads from it; so does this.
//! For a request body ([`Upload`]) the timeout runs from the upload's last move (a piece of
//! body from the client, or taken by the upstream), and from its end for the response head.
//! When it passes while the upload waits for the client, the client is the one that stalled:
//! the request body failed (`408` from the proxies), not the upstream. A response body
//! ([`ReadTimeout`] on hyper's path; rama's own HTTP/1.1 body does the same on its
//! connection's timer) fails when it waits that long for the upstream's next bytes: only the
//! time it waits counts, not the time its receiver takes between two asks.

use super::Body;
use crate::BoxError;
use http_body::{Frame, SizeHint};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// Where a streaming upload stands. Atomics, not cells: the request's future is `Send`, and
/// the upload and the wait for the response head share this.
pub(crate) struct Upload {
    timeout: Duration,
    start: Instant,
    /// Nanoseconds from `start` to the last move.
    moved: AtomicU64,
    on_client: AtomicBool,
    finished: AtomicBool,
    /// Why the body failed (the client's doing: malformed, cut short): the error itself,
    /// since the upstream's client passes on only that its body failed.
    failure: Mutex<Option<BoxError>>,
}

/// What a deadline that passed means for an [`Upload`].
pub(crate) enum Verdict {
    /// The upload moved since it was set: the next deadline.
    Later(Instant),
    /// The client sent no more of the body for the timeout.
    Stalled,
    /// The upstream took no more of it, or did not answer, for the timeout.
    TimedOut,
}

impl Upload {
    /// An upload that starts now, waiting for the client's first piece.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            start: Instant::now(),
            moved: AtomicU64::new(0),
            on_client: AtomicBool::new(true),
            finished: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// The upload moved; `on_client`: it now waits for the client's next piece (else for the
    /// upstream to take the one it has).
    pub(crate) fn moved(&self, on_client: bool) {
        let since = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.moved.store(since, Ordering::Relaxed);
        self.on_client.store(on_client, Ordering::Relaxed);
    }

    /// The whole body went: from now the wait is for the response head.
    pub(crate) fn finished(&self) {
        self.moved(false);
        self.finished.store(true, Ordering::Relaxed);
    }

    /// Why the body failed, if it did: what failed the request then is the client's doing,
    /// whatever the upstream's client made of it.
    pub(crate) fn take_failure(&self) -> Option<BoxError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// When the timeout passes if nothing moves.
    pub(crate) fn deadline(&self) -> Instant {
        self.start + Duration::from_nanos(self.moved.load(Ordering::Relaxed)) + self.timeout
    }

    /// What the passing of `deadline` means.
    pub(crate) fn verdict(&self, deadline: Instant) -> Verdict {
        let next = self.deadline();
        if next > deadline {
            Verdict::Later(next)
        } else if !self.finished.load(Ordering::Relaxed) && self.on_client.load(Ordering::Relaxed) {
            Verdict::Stalled
        } else {
            Verdict::TimedOut
        }
    }

    /// The error of [`Verdict::Stalled`].
    pub(crate) fn stalled(&self) -> BoxError {
        Box::new(Stalled::new(self.timeout))
    }
}

/// The client sent no more of the request body for this long.
#[derive(Debug)]
pub(crate) struct Stalled(Duration);

impl Stalled {
    /// The client sent no more of the body for `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self(timeout)
    }
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the client sent no more of the request body for {:?}",
            self.0
        )
    }
}

impl std::error::Error for Stalled {}

/// The upstream sent nothing of a response body for this long.
#[derive(Debug)]
pub(crate) struct Silent(pub(crate) Duration);

impl fmt::Display for Silent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the upstream sent nothing of the body for {:?}", self.0)
    }
}

impl std::error::Error for Silent {}

/// What hyper's client gets of a request body's failure; the failure itself stays in the
/// [`Upload`].
#[derive(Debug)]
struct BodyFailed;

impl fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body failed")
    }
}

impl std::error::Error for BodyFailed {}

/// A request body that tells its [`Upload`] how it moves, and whether it failed, for a client
/// that pulls it (hyper's: it asks for the next piece once it has sent the last).
pub(crate) struct Tracked {
    body: Body,
    upload: Arc<Upload>,
    /// A piece went out since the last ask.
    delivered: bool,
}

impl Tracked {
    pub(crate) fn new(body: Body, upload: Arc<Upload>) -> Self {
        Self {
            body,
            upload,
            delivered: false,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if std::mem::take(&mut self.delivered) {
            self.upload.moved(true);
        }
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        match poll {
            Poll::Ready(Some(Ok(_))) => {
                self.delivered = true;
                self.upload.moved(false);
            }
            Poll::Ready(None) => self.upload.finished(),
            Poll::Ready(Some(Err(error))) => {
                *self
                    .upload
                    .failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error);
                return Poll::Ready(Some(Err(Box::new(BodyFailed))));
            }
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that fails when it waits `timeout` for its next frame. The timer is made
/// the first time the body has nothing ready (most small answers never wait).
pub(crate) struct ReadTimeout {
    body: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the timer runs for the current wait.
    waiting: bool,
}

impl ReadTimeout {
    pub(crate) fn new(body: Body, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            sleep: None,
            waiting: false,
        }
    }
}

impl http_body::Body for ReadTimeout {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame);
        }
        let deadline = tokio::time::Instant::now() + this.timeout;
        let sleep = match &mut this.sleep {
            Some(sleep) if !this.waiting => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            Some(sleep) => sleep,
            None => this
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        this.waiting = true;
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(Box::new(Silent(this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
