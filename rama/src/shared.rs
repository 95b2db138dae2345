//! A ready-aware shared cell: one service, called from the futures of several connections.
//!
//! A stage that must finish asynchronous work (a TLS handshake, peeking at the first bytes)
//! before it can call the service behind it cannot call that service from its own `call`, and
//! rama never clones services; a stage that fans one connection out into many calls (HTTP/2
//! requests) cannot either. Instead the stage keeps the inner service in a [`Shared`] cell
//! and each connection's future drives `poll_ready` and then `call` on it, under one short lock
//! that is never held across an `.await`.
//!
//! Many services remember only the last waker their `poll_ready` saw (a concurrency limit's
//! semaphore does). With several futures waiting on one service, the others would never be
//! woken. The cell therefore keeps the wakers of everyone that saw `Pending`, and whoever next
//! sees `Ready`, or stops waiting by being dropped, wakes them all to poll again. When the inner
//! service is always ready (the common case) no waker is ever stored.
//!
//! `Arc<Mutex<_>>` rather than `Rc<RefCell<_>>`: it serves both of the server's modes with one
//! type. On a current-thread server the lock is never contended, and a service that is not
//! `Send` keeps working because nothing requires the cell to be `Send` unless the server
//! spawns.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};
use tower::Service;

/// One service shared by the futures of many connections. See the [module docs](self).
pub(crate) struct Shared<S> {
    cell: Arc<Mutex<Cell<S>>>,
}

struct Cell<S> {
    service: S,
    waiters: Vec<Waker>,
}

impl<S> Shared<S> {
    pub(crate) fn new(service: S) -> Self {
        Self {
            cell: Arc::new(Mutex::new(Cell {
                service,
                waiters: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cell<S>> {
        // A panic inside the inner service must not take every later connection with it.
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes everyone waiting for readiness: called by a waiter that goes away, so that a
    /// wake-up the inner service sent to it is not lost.
    pub(crate) fn wake_waiters(&self) {
        // `try_lock`: a waiter dropped from inside the inner service's own call (the lock is
        // held on this very thread) must not deadlock; whoever holds the lock wakes the
        // waiters when its poll sees readiness.
        let waiters = match self.cell.try_lock() {
            Ok(mut cell) => std::mem::take(&mut cell.waiters),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                std::mem::take(&mut poisoned.into_inner().waiters)
            }
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
        }
    }
}

impl<S> Shared<S> {
    /// Polls the inner service's readiness, registering `cx` among the waiters when it is not
    /// ready, waking the others when it is.
    pub(crate) fn poll_ready<R>(&self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Service<R>,
    {
        let mut cell = self.lock();
        let poll = cell.service.poll_ready(cx);
        Self::after_poll(&mut cell, &poll, cx);
        poll
    }

    /// Waits for readiness and calls the inner service with the request in `request`, all
    /// under one lock; `request` is taken only when the call happens.
    pub(crate) fn poll_call<R>(
        &self,
        cx: &mut Context<'_>,
        request: &mut Option<R>,
    ) -> Poll<Result<S::Future, S::Error>>
    where
        S: Service<R>,
    {
        let mut cell = self.lock();
        let poll = cell.service.poll_ready(cx);
        Self::after_poll(&mut cell, &poll, cx);
        match poll {
            Poll::Ready(Ok(())) => {
                let request = request.take().expect("poll_call after the call");
                Poll::Ready(Ok(cell.service.call(request)))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn after_poll<T>(cell: &mut Cell<S>, poll: &Poll<T>, cx: &Context<'_>) {
        if poll.is_pending() {
            if !cell.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                cell.waiters.push(cx.waker().clone());
            }
        } else if !cell.waiters.is_empty() {
            // Readiness moved on: everyone else polls again and re-registers if need be.
            cell.waiters.drain(..).for_each(Waker::wake);
        }
    }
}

/// One call through a [`Shared`] service, waiting for readiness: the request waits here until
/// the service is ready. Dropped while waiting, it wakes the other waiters, so that a wake-up
/// the service sent to it reaches someone who still cares.
pub(crate) struct Call<S, R> {
    shared: Shared<S>,
    request: Option<R>,
    waiting: bool,
}

impl<S, R> Call<S, R> {
    pub(crate) fn new(shared: Shared<S>, request: R) -> Self {
        Self {
            shared,
            request: Some(request),
            waiting: false,
        }
    }
}

impl<S: Service<R>, R> Call<S, R> {
    /// Ready, then call; `Pending` while the service is not ready.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<S::Future, S::Error>> {
        let poll = self.shared.poll_call(cx, &mut self.request);
        self.waiting = poll.is_pending();
        poll
    }
}

impl<S, R> Drop for Call<S, R> {
    fn drop(&mut self) {
        if self.waiting {
            self.shared.wake_waiters();
        }
    }
}

impl<S, R> fmt::Debug for Call<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        future::poll_fn,
        sync::atomic::{AtomicUsize, Ordering},
    };
    use tower::limit::ConcurrencyLimit;

    /// A service that is ready once per `release`, and remembers one waker only, like a
    /// semaphore.
    struct OneWaker {
        permits: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Service<u8> for OneWaker {
        type Response = u8;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<u8, Self::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.permits.load(Ordering::SeqCst) > 0 {
                Poll::Ready(Ok(()))
            } else {
                *self.waker.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        }

        fn call(&mut self, req: u8) -> Self::Future {
            self.permits.fetch_sub(1, Ordering::SeqCst);
            std::future::ready(Ok(req))
        }
    }

    #[tokio::test]
    async fn every_waiter_is_served_when_the_service_remembers_one_waker() {
        let permits = Arc::new(AtomicUsize::new(0));
        let waker = Arc::new(Mutex::new(None::<Waker>));
        let shared = Shared::new(OneWaker {
            permits: permits.clone(),
            waker: waker.clone(),
        });
        let mut tasks = Vec::new();
        for i in 0..3u8 {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut request = Some(i);
                let future = poll_fn(|cx| shared.poll_call(cx, &mut request)).await;
                future.unwrap().await.unwrap()
            }));
        }
        tokio::task::yield_now().await;
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            permits.fetch_add(1, Ordering::SeqCst);
            if let Some(w) = waker.lock().unwrap().take() {
                w.wake();
            }
        }
        let mut served = Vec::new();
        for task in tasks {
            served.push(
                tokio::time::timeout(std::time::Duration::from_secs(5), task)
                    .await
                    .expect("a waiter was never woken")
                    .unwrap(),
            );
        }
        served.sort();
        assert_eq!(served, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_concurrency_limit_behind_the_cell_holds() {
        let shared = Shared::new(ConcurrencyLimit::new(
            tower::service_fn(|x: u8| async move { Ok::<_, std::convert::Infallible>(x) }),
            1,
        ));
        let mut first = Some(1u8);
        let held = poll_fn(|cx| shared.poll_call(cx, &mut first))
            .await
            .unwrap();
        let mut second = Some(2u8);
        let waiting = poll_fn(|cx| Poll::Ready(shared.poll_call(cx, &mut second))).await;
        assert!(waiting.is_pending(), "the limit let a second call through");
        assert_eq!(held.await.unwrap(), 1);
        let next = poll_fn(|cx| shared.poll_call(cx, &mut second))
            .await
            .unwrap();
        assert_eq!(next.await.unwrap(), 2);
    }
}
