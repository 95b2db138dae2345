//! Egress rules: which destinations a proxy may dial, as a tower layer over
//! `Service<tunnel::Request<H>>`, so that it stands between any protocol stage that parses a
//! CONNECT (SOCKS5, HTTP) and the terminal.
//!
//! A denied request is rejected through its handshake with
//! [`Refusal::Denied`](crate::tunnel::Refusal::Denied) (SOCKS5 reply 0x02, HTTP 403) and never
//! reaches the inner service.
//!
//! **Names are resolved here when an address rule must judge them**, and the request is
//! rewritten to the address that passed, so the terminal dials exactly what was checked: a
//! name that resolves to a public address for the check and to `127.0.0.1` for the dial (DNS
//! rebinding) cannot slip through. The name is kept in the connection's extensions as
//! [`Resolved`].
//!
//! ```no_run
//! use rama::{egress::{EgressLayer, Rules}, proxy, socks5, tcp};
//!
//! # async fn run() -> Result<(), rama::BoxError> {
//! proxy! {
//!     tcp::Server::bind("0.0.0.0:1080")
//!         => socks5::Server::new()
//!         => EgressLayer::new(Rules::public_only())
//!         => target
//! }
//! .await?;
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod future;
mod rules;

pub use self::rules::{Cidr, CidrError, Match, Rules, Verdict};

use self::future::ResponseFuture;
use crate::{BoxError, tunnel};
use std::{
    task::{Context, Poll},
    time::Duration,
};
use tower::{Layer, Service};

/// How long resolving a name for the rules may take unless told otherwise.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name a client asked for, kept in the connection's extensions when [`Egress`] replaced
/// it by the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved(pub Box<str>);

/// Applies [`Rules`] to tunnel requests before the inner service sees them.
///
/// `poll_ready` is the inner service's. `call` takes the readied inner service and leaves a
/// clone in its place (the request may first wait for a name to resolve), so the inner
/// service must be `Clone`.
#[derive(Debug, Clone)]
pub struct Egress<S> {
    inner: S,
    rules: Rules,
    resolve_timeout: Duration,
}

/// The layer of [`Egress`].
#[derive(Debug, Clone)]
pub struct EgressLayer {
    rules: Rules,
    resolve_timeout: Duration,
}

// ===== impl EgressLayer =====

impl EgressLayer {
    /// Applies `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
        }
    }

    /// Bounds resolving a name (default [`DEFAULT_RESOLVE_TIMEOUT`]).
    pub fn resolve_timeout(mut self, timeout: Duration) -> Self {
        self.resolve_timeout = timeout;
        self
    }
}

impl<S> Layer<S> for EgressLayer {
    type Service = Egress<S>;

    fn layer(&self, inner: S) -> Egress<S> {
        Egress {
            inner,
            rules: self.rules.clone(),
            resolve_timeout: self.resolve_timeout,
        }
    }
}

// ===== impl Egress =====

impl<S> Egress<S> {
    /// Applies `rules` in front of `inner`.
    pub fn new(inner: S, rules: Rules) -> Self {
        EgressLayer::new(rules).layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, H> Service<tunnel::Request<H>> for Egress<S>
where
    S: Service<tunnel::Request<H>> + Clone,
    S::Error: Into<BoxError>,
    H: tunnel::Handshake,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: tunnel::Request<H>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(inner, request, &self.rules, self.resolve_timeout)
    }
}

/// `EgressLayer` in a diagram: between a stage that parses CONNECTs and the terminal.
impl crate::stage::Stage for EgressLayer {
    type Takes = crate::stage::kind::TunnelRequest;
    type HandsOn = crate::stage::kind::TunnelRequest;
}
