//! The future of [`Egress`](super::Egress).

use super::{
    Resolved, Rules, Verdict,
    error::{Denied, ResolveError},
};
use crate::{
    Address, BoxError, Host,
    tcp::{self, Lookup},
    tunnel,
};
use pin_project_lite::pin_project;
use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::time::Sleep;
use tower::Service;

pin_project! {
    /// Resolves a name when the rules need its address, then calls the inner service with the
    /// address that passed, or rejects the request.
    pub struct ResponseFuture<S, H>
    where
        S: Service<tunnel::Request<H>>,
        H: tunnel::Handshake,
    {
        inner: Option<S>,
        request: Option<tunnel::Request<H>>,
        rules: Rules,
        #[pin]
        state: State<S::Future, H::Reject>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Resolving { lookup: Lookup, #[pin] deadline: Sleep },
        Calling { #[pin] call: F },
        Rejecting { #[pin] reject: R, error: Option<BoxError> },
    }
}

impl<S, H> ResponseFuture<S, H>
where
    S: Service<tunnel::Request<H>>,
    H: tunnel::Handshake,
{
    pub(super) fn new(
        mut inner: S,
        request: tunnel::Request<H>,
        rules: &Rules,
        resolve_timeout: Duration,
    ) -> Self {
        let destination = request.destination();
        let port = destination.port();
        let verdict = match destination.host() {
            Host::Ip(ip) => rules.verdict(None, Some(*ip), port),
            Host::Name(name) => rules.verdict(Some(name), None, port),
        };
        let (state, inner, request) = match verdict {
            Verdict::Allow => (
                State::Calling {
                    call: inner.call(request),
                },
                None,
                None,
            ),
            Verdict::Deny => (deny(request), None, None),
            Verdict::NeedsAddress => {
                let lookup = match destination.host() {
                    Host::Name(name) => tcp::lookup(name, port),
                    Host::Ip(_) => unreachable!("an address is always judged"),
                };
                let state = State::Resolving {
                    lookup,
                    deadline: tokio::time::sleep(resolve_timeout),
                };
                (state, Some(inner), Some(request))
            }
        };
        Self {
            inner,
            request,
            rules: rules.clone(),
            state,
        }
    }
}

/// Rejects `request` as denied by the rules.
fn deny<H: tunnel::Handshake, F>(request: tunnel::Request<H>) -> State<F, H::Reject> {
    reject(request, tunnel::Refusal::Denied, |destination| {
        Box::new(Denied::new(destination))
    })
}

fn reject<H: tunnel::Handshake, F>(
    request: tunnel::Request<H>,
    refusal: tunnel::Refusal,
    error: impl FnOnce(Address) -> BoxError,
) -> State<F, H::Reject> {
    let (destination, handshake, info) = request.into_parts();
    tracing::debug!(peer = %info.peer_addr(), %destination, %refusal, "egress: refusing");
    State::Rejecting {
        reject: handshake.reject(refusal),
        error: Some(error(destination)),
    }
}

impl<S, H> Future for ResponseFuture<S, H>
where
    S: Service<tunnel::Request<H>>,
    S::Error: Into<BoxError>,
    H: tunnel::Handshake,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling { call } => return call.poll(cx).map_err(Into::into),
                StateProj::Rejecting { reject, error } => {
                    // The refusal is what matters; a client gone before it hears it adds
                    // nothing.
                    let _ = ready!(reject.poll(cx));
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::Resolving { lookup, deadline } => {
                    let resolved = match Pin::new(lookup).poll(cx) {
                        Poll::Ready(resolved) => resolved.map_err(Some),
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            Err(None)
                        }
                    };
                    let mut request = this.request.take().expect("resolving holds the request");
                    let destination = request.destination().clone();
                    let Host::Name(name) = destination.host() else {
                        unreachable!("only names are resolved")
                    };
                    match resolved {
                        Err(source) => {
                            let refusal = if source.is_none() {
                                tunnel::Refusal::TimedOut
                            } else {
                                tunnel::Refusal::HostUnreachable
                            };
                            reject(request, refusal, |destination| {
                                Box::new(ResolveError::new(destination, source))
                            })
                        }
                        Ok(addrs) => {
                            let allowed = addrs.into_iter().find(|addr| {
                                this.rules.verdict(Some(name), Some(addr.ip()), addr.port())
                                    == Verdict::Allow
                            });
                            match allowed {
                                Some(addr) => {
                                    request.set_destination(addr.into());
                                    request
                                        .info_mut()
                                        .extensions_mut()
                                        .insert(Resolved(name.clone()));
                                    let mut inner = this.inner.take().expect("one call");
                                    State::Calling {
                                        call: inner.call(request),
                                    }
                                }
                                None => deny(request),
                            }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, H> fmt::Debug for ResponseFuture<S, H>
where
    S: Service<tunnel::Request<H>>,
    H: tunnel::Handshake,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
