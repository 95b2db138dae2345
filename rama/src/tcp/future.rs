//! Futures of the TCP server.

use super::stream::Activity;
use crate::{BoxError, error::Chain};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// One connection as the server drives it: the service's future, bounded by the optional
    /// idle and total timeouts, with its outcome logged against the peer address.
    pub struct ConnectionFuture<F> {
        #[pin]
        inner: F,
        peer: SocketAddr,
        // One timer serves both timeouts: it is set to whichever can fire first.
        #[pin]
        timer: Option<Sleep>,
        deadline: Option<Instant>,
        idle: Option<(Duration, Arc<Activity>)>,
    }
}

// ===== impl ConnectionFuture =====

impl<F> ConnectionFuture<F> {
    pub(super) fn new(
        inner: F,
        peer: SocketAddr,
        total: Option<Duration>,
        idle: Option<(Duration, Arc<Activity>)>,
    ) -> Self {
        let now = Instant::now();
        let deadline = total.map(|total| now + total);
        let first_idle_check = idle.as_ref().map(|(idle, _)| now + *idle);
        let wake = match (deadline, first_idle_check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            inner,
            peer,
            timer: wake.map(tokio::time::sleep_until),
            deadline,
            idle,
        }
    }
}

impl<F, T, E> Future for ConnectionFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // A panic in a connection's future (a bug, in rama or in a service) ends that
        // connection alone, as a panicking tokio task ends its task alone: in the default
        // `Local` mode the connections are futures of the server's own, and one that unwound
        // through it took every other connection of its thread with it. Whatever the future
        // held is dropped with it, as the task's would be.
        let inner = this.inner.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(Ok(_))) => {
                tracing::debug!(peer = %this.peer, "connection closed");
                return Poll::Ready(());
            }
            Ok(Poll::Ready(Err(error))) => {
                let error = error.into();
                if crate::error::is_peer_reset(&*error) {
                    // A peer's doing, not the server's failure (a relay has its access line).
                    tracing::debug!(peer = %this.peer, error = %Chain(&*error), "connection reset");
                } else {
                    tracing::warn!(peer = %this.peer, error = %Chain(&*error), "connection failed");
                }
                return Poll::Ready(());
            }
            Ok(Poll::Pending) => {}
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a panic without a message");
                tracing::error!(peer = %this.peer, panic = message, "connection panicked, dropping it");
                return Poll::Ready(());
            }
        }
        while let Some(mut timer) = this.timer.as_mut().as_pin_mut() {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if this.deadline.is_some_and(|deadline| now >= deadline) {
                tracing::info!(peer = %this.peer, "connection reached its total timeout, closing");
                return Poll::Ready(());
            }
            // Only the idle check can have fired: close if nothing moved for the whole
            // period, else sleep until the period after the last activity.
            let idle_until = match this.idle.as_ref() {
                Some((idle, activity)) => {
                    let idle_until = activity.last() + *idle;
                    if now >= idle_until {
                        tracing::info!(peer = %this.peer, ?idle, "connection idle, closing");
                        return Poll::Ready(());
                    }
                    Some(idle_until)
                }
                None => None,
            };
            let wake = match (*this.deadline, idle_until) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now),
            };
            timer.reset(wake);
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for ConnectionFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionFuture")
            .field("peer", &self.peer)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
