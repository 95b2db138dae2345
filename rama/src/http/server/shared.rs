//! The ready-aware cell behind [`Server`](super::Server): one inner service, called for every
//! request of a connection (many at once on HTTP/2) and for every connection of the server.
//!
//! Everything that touches it runs on the server's task (the accept loop polls
//! `poll_ready`, a connection's future polls its requests' futures), so an `Rc<RefCell<_>>`
//! suffices and the inner service never needs `Send` or `Clone`. A borrow lasts for one
//! `poll_ready` + `call` and is never held across an `.await`.
//!
//! Many services remember only the last waker their `poll_ready` saw (a semaphore does), so
//! the cell keeps the wakers of every request that saw `Pending` and wakes them all when
//! anyone sees `Ready`, or when a waiting request is dropped.

use std::{
    cell::RefCell,
    rc::Rc,
    task::{Context, Poll, Waker},
};
use tower::Service;

pub(crate) struct Shared<S> {
    cell: Rc<RefCell<Cell<S>>>,
}

struct Cell<S> {
    service: S,
    waiters: Vec<Waker>,
}

impl<S> Shared<S> {
    pub(crate) fn new(service: S) -> Self {
        Self {
            cell: Rc::new(RefCell::new(Cell {
                service,
                waiters: Vec::new(),
            })),
        }
    }

    /// The inner service's readiness; `cx` is remembered while it is not ready.
    pub(crate) fn poll_ready<R>(&self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Service<R>,
    {
        let mut cell = self.cell.borrow_mut();
        let poll = cell.service.poll_ready(cx);
        cell.after_poll(poll.is_pending(), cx);
        poll
    }

    /// Ready, then call with what is in `request` (taken only when the call happens).
    pub(crate) fn poll_call<R>(
        &self,
        cx: &mut Context<'_>,
        request: &mut Option<R>,
    ) -> Poll<Result<S::Future, S::Error>>
    where
        S: Service<R>,
    {
        let mut cell = self.cell.borrow_mut();
        let poll = cell.service.poll_ready(cx);
        cell.after_poll(poll.is_pending(), cx);
        match poll {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) => match request.take() {
                Some(request) => Poll::Ready(Ok(cell.service.call(request))),
                // Never happens: the caller polls once more only while it holds a request.
                None => Poll::Pending,
            },
        }
    }

    /// A waiter gave up: hand any wake-up it may have swallowed to the others.
    pub(crate) fn wake_waiters(&self) {
        // `try_borrow_mut`: a request dropped from inside the inner service's own call must
        // not panic; the waiters are then woken by whoever holds the borrow.
        let waiters = match self.cell.try_borrow_mut() {
            Ok(mut cell) => std::mem::take(&mut cell.waiters),
            Err(_) => return,
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl<S> Cell<S> {
    fn after_poll(&mut self, pending: bool, cx: &Context<'_>) {
        if pending {
            if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                self.waiters.push(cx.waker().clone());
            }
        } else if !self.waiters.is_empty() {
            self.waiters.drain(..).for_each(Waker::wake);
        }
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
        }
    }
}
