//! One timer per connection for the deadlines that follow one another on it: the header-read
//! deadline of each request a server connection waits for, the response deadline of each
//! request sent on a pooled upstream connection.
//!
//! A fresh tokio `Sleep` per deadline costs an allocation, an insert into and a removal from
//! the runtime's timer wheel under its lock, and often a write to the runtime's eventfd (the
//! driver is unparked whenever the new deadline is the earliest it knows). Per request, that
//! was a tenth of the reverse proxy's CPU. Here the connection keeps one `Sleep`; a deadline
//! only moves it when it fires early (for an earlier deadline that is no longer awaited) or
//! when the deadline is earlier than the one it is armed for. With deadlines that only grow,
//! that is once per timeout period, not once per request.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::time::Sleep;

/// The timer of one connection. One deadline is awaited at a time, from the connection's own
/// task (the `Sleep` keeps the waker of its last poll); cloning shares the timer.
#[derive(Clone, Default)]
pub(crate) struct ConnTimer {
    armed: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

/// A deadline on a [`ConnTimer`].
pub(crate) struct ConnSleep {
    deadline: Instant,
    armed: Arc<Mutex<Option<Pin<Box<Sleep>>>>>,
}

impl ConnTimer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Resolves once `deadline` has passed.
    pub(crate) fn sleep_until(&self, deadline: Instant) -> ConnSleep {
        ConnSleep {
            deadline,
            armed: self.armed.clone(),
        }
    }

    /// Runs `future` until `deadline` (none: no bound); `Err(())` when the deadline came first.
    pub(crate) fn bound<F: Future>(&self, deadline: Option<Instant>, future: F) -> Bounded<F> {
        Bounded {
            future,
            sleep: deadline.map(|deadline| self.sleep_until(deadline)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ConnTimer::bound`]. A plain struct rather than an `async fn`: the
    /// state machine of one held `future` twice (as the argument and as the awaited local),
    /// and a response's whole exchange is bounded by it.
    pub(crate) struct Bounded<F> {
        #[pin]
        future: F,
        sleep: Option<ConnSleep>,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The future first: an answer that is ready wins over a deadline passed meanwhile.
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match this.sleep {
            Some(sleep) => Pin::new(sleep).poll(cx).map(Err),
            None => Poll::Pending,
        }
    }
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        let timer = armed.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) if timer.deadline() < deadline => {
                // It fired for an earlier deadline: move it to this one.
                timer.as_mut().reset(deadline);
                timer.as_mut().poll(cx)
            }
            poll => poll,
        }
    }
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ConnTimer::sleep_until(self, deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(mut sleep) => sleep.deadline = new_deadline,
            None => *sleep = hyper::rt::Timer::sleep_until(self, new_deadline),
        }
    }
}

impl hyper::rt::Sleep for ConnSleep {}

#[cfg(test)]
mod tests {
    use super::ConnTimer;
    use std::time::{Duration, Instant};

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_waits_for_its_own_time_after_an_earlier_one_was_dropped() {
        let timer = ConnTimer::new();
        let start = Instant::now();
        // Arm the shared timer for 1 s, then give that deadline up.
        let early = timer.bound(
            Some(start + Duration::from_secs(1)),
            std::future::pending::<()>(),
        );
        drop(tokio::time::timeout(Duration::from_millis(10), early).await);
        let late = tokio::time::Instant::now();
        timer.sleep_until(start + Duration::from_secs(5)).await;
        let waited = late.elapsed();
        assert!(
            waited >= Duration::from_millis(4990),
            "woke after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_forward() {
        let timer = ConnTimer::new();
        let start = tokio::time::Instant::now();
        let far = Instant::now() + Duration::from_secs(60);
        drop(tokio::time::timeout(Duration::from_millis(1), timer.sleep_until(far)).await);
        timer
            .sleep_until(Instant::now() + Duration::from_secs(2))
            .await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
            "woke after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bound_answers_the_future_or_the_deadline() {
        let timer = ConnTimer::new();
        let soon = Some(Instant::now() + Duration::from_millis(50));
        assert_eq!(timer.bound(soon, async { 7 }).await, Ok(7));
        assert_eq!(
            timer.bound(soon, std::future::pending::<u8>()).await,
            Err(())
        );
        assert_eq!(timer.bound(None, async { 8 }).await, Ok(8));
    }
}
