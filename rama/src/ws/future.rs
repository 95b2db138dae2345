//! The response futures of the WebSocket stages.

use crate::http::Body;
use ::http::Response;
use pin_project_lite::pin_project;
use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

/// The response future of [`Serve`](super::Serve): its answer is known at once (the session
/// runs on the connection's task set).
#[derive(Debug)]
pub struct Ready {
    response: Option<Response<Body>>,
}

pin_project! {
    /// The response future of [`RelayService`](super::RelayService): the inner service's for a
    /// plain request, the opening of the upstream WebSocket for an upgrade.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            future: F,
        },
        // Boxed: an `async fn` dialing, handshaking and spawning; once per session, not per
        // request, so the allocation is noise next to the dial.
        Upgrade {
            future: Pin<Box<dyn Future<Output = Response<Body>>>>,
        },
    }
}

// ===== impl Ready =====

impl Ready {
    pub(super) fn new(response: Response<Body>) -> Self {
        Self {
            response: Some(response),
        }
    }
}

impl Future for Ready {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(self
            .response
            .take()
            .expect("ws::future::Ready polled after it completed")))
    }
}

// ===== impl ResponseFuture =====

impl<F> ResponseFuture<F> {
    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(super) fn upgrade(future: Pin<Box<dyn Future<Output = Response<Body>>>>) -> Self {
        Self {
            kind: Kind::Upgrade { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Upgrade { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
